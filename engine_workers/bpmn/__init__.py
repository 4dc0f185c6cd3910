"""The engines' BPMN processes, deployed by the workers at start (see engine_workers.deploy)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = ("payer-transfer.bpmn", "payee-party-lookup.bpmn", "payee-quote-transfer.bpmn")


def paths() -> list[Path]:
    """Filesystem paths of every process definition."""
    root = resources.files(__package__)
    return [Path(str(root.joinpath(name))) for name in FILES]
