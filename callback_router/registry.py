"""The engine registry file (a `contract.EngineRegistry` as JSON), read live, written atomically.

The operator (or the local site) owns the file; the router re-reads it whenever it changes, and
writes engine state changes from its admin API back to it with write-to-temp + rename, so a
reader never sees half a file and a router restart keeps the last states.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from phee.contract import EngineInfo, EngineRegistry, EngineState

log = logging.getLogger(__name__)


class UnknownEngine(KeyError):
    """No engine of that name in the registry."""


class RegistryStore:
    """The current registry; `get()` costs one `stat` and reloads after an outside change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._registry: EngineRegistry | None = None

    def load(self) -> EngineRegistry:
        """Read the file now; a missing or invalid file is an error (the router cannot route)."""
        with self._lock:
            return self._reload()

    def _reload(self) -> EngineRegistry:
        st = os.stat(self.path)
        registry = EngineRegistry.model_validate_json(self.path.read_bytes())
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self._registry = registry
        return registry

    @property
    def loaded(self) -> bool:
        return self._registry is not None

    def get(self) -> EngineRegistry:
        """The registry, re-read if the file changed; a broken new file keeps the old one."""
        with self._lock:
            return self._fresh()

    def _fresh(self) -> EngineRegistry:
        if self._registry is None:
            return self._reload()
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                return self._reload()
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            log.error("engine registry %s unreadable, keeping the last one: %s", self.path, exc)
        return self._registry

    def set_state(self, name: str, state: EngineState) -> EngineInfo:
        """Change one engine's state and persist the whole registry atomically.

        Starts from the file as it is now, so an outside edit (a new gateway) is kept.
        """
        with self._lock:
            current = self._fresh()
            if current.by_name(name) is None:
                raise UnknownEngine(name)
            engines = [
                e.model_copy(update={"state": state}) if e.name == name else e
                for e in current.engines
            ]
            updated = EngineRegistry(engines=engines)
            self._write(updated)
            changed = updated.by_name(name)
            assert changed is not None
            return changed

    def _write(self, registry: EngineRegistry) -> None:
        data = registry.model_dump_json(indent=2).encode()
        fd, tmp = tempfile.mkstemp(prefix=".registry-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        st = os.stat(self.path)
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self._registry = registry
