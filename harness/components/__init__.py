"""The component manager: real servers fetched by pinned version, started on loopback.

Use from Python (`get("kafka").start(workdir)`) or as `phee components fetch|start|stop|status`.
"""

from __future__ import annotations

from harness.components.base import (
    Artifact,
    Component,
    ComponentError,
    FetchError,
    Running,
    StartError,
    cache_root,
)
from harness.components.registry import NAMES, get

__all__ = [
    "NAMES",
    "Artifact",
    "Component",
    "ComponentError",
    "FetchError",
    "Running",
    "StartError",
    "cache_root",
    "get",
]
