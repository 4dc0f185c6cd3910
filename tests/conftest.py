"""Shared test harness: real components as session fixtures, tier markers, leak and skip checks.

Every component a test asks for is started once per session by the component manager on free
loopback ports; a component that cannot start errors the tests that need it, with its log tail.
At the end the run prints each started component's version and fails if any process it started
is still alive, or if any test was skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.components import Running, get
from harness.components.artifacts import ApiSnippets
from harness.components.base import pid_alive, stop_pid
from harness.components.operaton import RunningEngine, start_engine

#: every component started in this session (name, version, pid, seconds to ready)
STARTED: list[Running] = []

_TIER_BY_DIR = {"unit": "unit", "integration": "integration", "k8s": "k8s", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder, so `-m unit` etc. select a tier."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for folder, marker in _TIER_BY_DIR.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, marker))


def start_component(name: str, workdir: Path, **options: object) -> Running:
    """Fetch (if needed) and start a component, remembering it for the end-of-run checks."""
    comp = get(name)
    comp.fetch()
    run = comp.start(workdir, **options)
    STARTED.append(run)
    return run


@pytest.fixture(scope="session", autouse=True)
def fspiop_schemas() -> None:
    """Point FSPIOP validation at the pinned OpenAPI documents, as the harness does for a
    service (in-process apps in the tests read the same setting)."""
    os.environ.update(ApiSnippets().schemas_env())


@pytest.fixture(scope="session")
def components_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("components")


def _session_component(name: str, workdir: Path, **options: object) -> Iterator[Running]:
    run = start_component(name, workdir, **options)  # each makes its own subdirectory
    try:
        yield run
    finally:
        get(name).stop(run)


@pytest.fixture(scope="session")
def postgresql(components_dir: Path) -> Iterator[Running]:
    yield from _session_component("postgresql", components_dir)


@pytest.fixture(scope="session")
def mariadb(components_dir: Path) -> Iterator[Running]:
    yield from _session_component("mariadb", components_dir)


@pytest.fixture(scope="session")
def prometheus(components_dir: Path) -> Iterator[Running]:
    yield from _session_component("prometheus", components_dir)


@pytest.fixture(scope="session")
def kafka(components_dir: Path) -> Iterator[Running]:
    yield from _session_component("kafka", components_dir)


@pytest.fixture(scope="session")
def engine_a(components_dir: Path) -> Iterator[RunningEngine]:
    """One Operaton engine ("engine-a"): its PostgreSQL and one node."""
    engine = start_engine(components_dir, "engine-a")
    STARTED.append(engine.running())
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def opensearch(components_dir: Path) -> Iterator[Running]:
    yield from _session_component("opensearch", components_dir)


@pytest.fixture(scope="session")
def ttk(components_dir: Path) -> Iterator[Running]:
    yield from _session_component("ttk", components_dir)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if STARTED:
        terminalreporter.section("components started")
        for run in STARTED:
            terminalreporter.write_line(
                f"{run.name:<14} {run.version:<24} pid {run.pid:<7} ready in {run.ready_s:5.1f} s"
            )
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped and not os.environ.get("PHEE_ALLOW_SKIPS"):
        terminalreporter.section("skipped tests are not allowed")
        for rep in skipped:
            terminalreporter.write_line(f"SKIPPED {rep.nodeid}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a started process outlived its fixture, or when a test was skipped."""
    pids_file = os.environ.get("PHEE_PIDS_FILE")
    if pids_file:  # lets an outer test check this session's processes from outside
        Path(pids_file).write_text(json.dumps([asdict(run) for run in STARTED]))
    leaked = [run for run in STARTED if pid_alive(run.pid)]
    for run in leaked:
        stop_pid(run.pid, grace_s=5)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if leaked:
        names = ", ".join(f"{r.name} (pid {r.pid})" for r in leaked)
        print(f"\nERROR: processes outlived the test session: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if skipped and not os.environ.get("PHEE_ALLOW_SKIPS"):
        print(f"\nERROR: {len(skipped)} test(s) skipped; real components must run, not skip")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
