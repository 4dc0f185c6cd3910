"""`phee site up` as a newcomer runs it: the site comes up, proves itself, and Ctrl-C stops it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import pytest

from harness.components.base import pid_alive, stop_pid
from tests.support import poll


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _kill_leftovers(out: str) -> None:
    """The parts a killed site started run in sessions of their own: end them, so a failed
    run does not leave a whole site running under the tests after it."""
    for pid in (int(p) for p in re.findall(r" pid (\d+) ", out)):
        stop_pid(pid, 5.0)


@pytest.mark.timeout(420)
def test_site_up_proves_each_engine_and_stops_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "site", "up", "--engines", "2", "--payments", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # started as a shell's background job is (SIGINT ignored): Ctrl-C must still stop it
        preexec_fn=_ignore_sigint,
    )
    lines: list[str] = []

    def _read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=_read, daemon=True)
    reader.start()
    try:
        poll(
            lambda: True if any("Ctrl-C stops it" in line for line in lines) else None,
            what="the site to report it is running",
            deadline_s=240,
            interval_s=0.5,
        )
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # the CLI prints its threads' stacks
            poll(
                lambda: True if any("most recent call first" in line for line in lines) else None,
                what="the hung site's stacks",
                deadline_s=10,
            )
            pytest.fail("the site did not stop within 120 s of Ctrl-C:\n" + "".join(lines))
        assert code == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            _kill_leftovers("".join(lines))
    reader.join(timeout=10)
    out = "".join(lines)
    assert re.search(r"payments: 20 COMMITTED, 0 ABORTED, 0 FAILED in [\d.]+ s", out), out
    assert len(re.findall(r"\n  engine-[ab] +\S+  COMMITTED", out)) == 20, out
    for engine in ("engine-a", "engine-b"):
        assert re.search(
            rf"{engine}: \d+ records on Kafka topic {engine}\.public\.act_hi_procinst", out
        ), out
        assert f"{engine} up=1" in out
    for service in ("reference-ams", "switch-double", "callback-router", "bo-importer", "bo-api"):
        assert f"{service} up=1" in out
    # the sample payments, as the back office's operations API shows them
    assert "back office (operations API): 20 COMMITTED" in out, out
    assert "site stopped" in out
    pids = [int(p) for p in re.findall(r" pid (\d+) ", out)]
    # kafka, two engines, kafka-connect, opensearch, prometheus, ams, switch, router, two
    # engines' workers, the back office's importer and operations API
    assert len(pids) == 13
    # each part said when it was ready, so a start shows its progress
    assert len(re.findall(r"^  ready: ", out, re.MULTILINE)) == 13, out
    assert [p for p in pids if pid_alive(p)] == []
