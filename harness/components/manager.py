"""Fetch, start detached, stop and report components for the CLI.

Started components outlive the CLI call (they run in their own session); each one's `Running`
record is kept as JSON under the state directory so that `stop` and `status` find it by PID.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness.components import progress
from harness.components.base import ComponentError, Running, state_root
from harness.components.registry import FETCHABLE, NAMES, get, get_fetchable, ordered


@dataclass(frozen=True)
class FetchResult:
    name: str
    version: str
    downloaded: bool
    seconds: float


@dataclass(frozen=True)
class CacheEntry:
    name: str
    version: str
    cached: bool
    path: Path
    size_mb: float


def fetch(names: list[str] | tuple[str, ...]) -> list[FetchResult]:
    """Fetch each component (all when `names` is empty) unless cached, one after the other.

    A download prints its own progress and end line (`progress`); a cached one gets its end
    line here, so every component asked for ends with one line: downloaded or cached.
    """
    wanted = set(names or FETCHABLE)
    artifacts = {name: get_fetchable(name) for name in wanted}  # unknown names fail here
    results = []
    for name in [n for n in FETCHABLE if n in wanted]:
        comp = artifacts[name]
        start = time.monotonic()
        downloaded = comp.fetch()
        seconds = time.monotonic() - start
        if not downloaded:
            progress.reporter().done(
                name, comp.version, "cached", seconds, progress.megabytes(comp.cache_dir)
            )
        results.append(FetchResult(name, comp.version, downloaded, round(seconds, 2)))
    return results


def _state_file(name: str) -> Path:
    return state_root() / f"{name}.json"


def running() -> list[Running]:
    """Components started by the CLI, alive or not (status shows which)."""
    found = []
    root = state_root()
    if root.is_dir():
        for path in sorted(root.glob("*.json")):
            found.append(Running.from_json(path.read_text()))
    return found


def start(names: list[str]) -> list[Running]:
    """Start components detached, each with a fresh data directory under the state directory."""
    started: list[Running] = []
    by_name = {r.name: r for r in running() if r.alive}
    for name in ordered(names or list(NAMES)):
        if name in by_name:
            raise ComponentError(f"{name} already runs (pid {by_name[name].pid}); stop it first")
        comp = get(name)
        comp.fetch()
        workdir = state_root() / name
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        options: dict[str, str] = {}
        if name == "kafka-connect":
            if "kafka" not in by_name:
                raise ComponentError("kafka-connect needs a running kafka: start kafka too")
            options["bootstrap"] = by_name["kafka"].endpoint("bootstrap")
        run = comp.start(workdir, **options)
        _state_file(name).write_text(run.to_json())
        by_name[name] = run
        started.append(run)
    return started


def stop(names: list[str]) -> list[Running]:
    """Stop CLI-started components (all when `names` is empty), in reverse start order."""
    wanted = set(ordered(names)) if names else None
    stopped = []
    for run in reversed(running()):
        if wanted is not None and run.name not in wanted:
            continue
        get(run.name).stop(run)
        _state_file(run.name).unlink(missing_ok=True)
        stopped.append(run)
    return stopped


def cache_entries() -> list[CacheEntry]:
    """Every known component with its pinned version, whether it is cached, and its size."""
    entries = []
    for name in FETCHABLE:
        comp = get_fetchable(name)
        size = 0
        if comp.cache_dir.exists():
            size = sum(f.stat().st_size for f in comp.cache_dir.rglob("*") if f.is_file())
        entries.append(CacheEntry(name, comp.version, comp.is_cached(), comp.cache_dir, size / 1e6))
    return entries
