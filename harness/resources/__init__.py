"""Packaged resources (BPMN processes used by smoke tests and the site's self-check)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(name: str) -> Path:
    """Filesystem path of a packaged resource (the package is installed from a directory)."""
    return Path(str(resources.files(__package__).joinpath(name)))
