"""The process lifecycle every component relies on, with throwaway processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.components.base import (
    Component,
    Running,
    StartError,
    free_ports,
    launch,
    pid_alive,
    stop_pid,
    tail,
)
from tests.support import poll


class _Scripted(Component):
    """A "server" that is a Python one-liner, to exercise start failures."""

    name = "scripted"
    version = "0"
    start_deadline_s = 2.0

    def __init__(self, code: str) -> None:
        self.code = code

    def _fetch(self) -> None:
        raise AssertionError("nothing to fetch")

    def start(self, workdir: Path, **options: Any) -> Running:
        return self._launch_and_wait(
            [sys.executable, "-c", self.code], workdir=workdir, ready=lambda: False
        )


def test_a_server_that_exits_fails_with_its_log_tail(tmp_path: Path) -> None:
    comp = _Scripted("print('bind: address already in use', flush=True); raise SystemExit(3)")
    with pytest.raises(StartError) as info:
        comp.start(tmp_path)
    message = str(info.value)
    assert "exited with code 3" in message
    assert "bind: address already in use" in message


def test_a_server_that_never_gets_ready_fails_and_is_killed(tmp_path: Path) -> None:
    comp = _Scripted("import os,time; print('pid', os.getpid(), flush=True); time.sleep(600)")
    with pytest.raises(StartError, match="not ready within 2 s") as info:
        comp.start(tmp_path)
    pid = int(str(info.value).split("pid ")[-1].split()[0])
    assert not pid_alive(pid)


def test_stop_kills_the_process_and_its_children(tmp_path: Path) -> None:
    log = tmp_path / "group.log"
    # A wrapper shell that starts a child and ignores SIGTERM: SIGKILL after the grace must come.
    proc = launch(["sh", "-c", "trap '' TERM; sleep 600 & echo child $!; wait"], log_path=log)
    child = poll(
        lambda: int(tail(log).split()[1]) if "child" in tail(log) else None,
        what="the child pid",
        deadline_s=10,
    )
    assert pid_alive(proc.pid)
    assert pid_alive(child)
    stop_pid(proc.pid, grace_s=0.5)
    assert not pid_alive(proc.pid)
    poll(lambda: True if not pid_alive(child) else None, what="the child to die", deadline_s=5)


def test_free_ports_are_distinct_loopback_ports() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(1024 < p < 65536 for p in ports)


def test_running_round_trips_through_json() -> None:
    run = Running("kafka", "3.9.1", 123, "/w", "/w/k.log", 1.5, {"bootstrap": "127.0.0.1:1"})
    again = Running.from_json(run.to_json())
    assert again == run
    assert again.endpoint("bootstrap") == "127.0.0.1:1"


def test_launch_of_a_missing_binary_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="cannot execute /nonexistent/server"):
        launch(["/nonexistent/server"], log_path=tmp_path / "x.log")


def test_pid_alive_treats_a_zombie_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    poll(
        lambda: (
            True
            if Path(f"/proc/{proc.pid}/stat").read_text().split(")")[1].split()[0] == "Z"
            else None
        ),
        what="the child to become a zombie",
        deadline_s=10,
    )
    assert not pid_alive(proc.pid)
    proc.wait()
