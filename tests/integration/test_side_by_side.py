"""Two test sessions at once: no fixed ports, and no process outlives either session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.components import Running
from harness.components.base import pid_alive

ROOT = Path(__file__).resolve().parents[2]


def test_two_sessions_side_by_side_leave_no_process(tmp_path: Path) -> None:
    sessions = []
    for i in range(2):
        pids_file = tmp_path / f"pids-{i}.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--basetemp",
                str(tmp_path / f"session-{i}"),
                "tests/integration/test_kafka.py::test_consumer_group_resumes_after_last_commit",
                "tests/integration/test_sql.py::test_round_trip_with_insert_or_ignore[postgresql]",
            ],
            cwd=ROOT,
            env={**os.environ, "PHEE_PIDS_FILE": str(pids_file)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sessions.append((proc, pids_file))
    started: list[Running] = []
    for proc, pids_file in sessions:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out
        assert "2 passed" in out, out
        runs = [Running(**r) for r in json.loads(pids_file.read_text())]
        assert sorted(r.name for r in runs) == ["kafka", "postgresql"]
        started.extend(runs)
    # Each session chose its own ports ...
    ports = [port for run in started for port in run.ports.values()]
    assert len(ports) == len(set(ports))
    # ... and once both sessions ended, nothing they started is alive.
    alive = [(r.name, r.pid) for r in started if pid_alive(r.pid)]
    assert alive == []
