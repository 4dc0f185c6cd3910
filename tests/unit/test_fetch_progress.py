"""Fetch progress: every tool a fetch runs streams to a log and gets a heartbeat; failures quote
the log's tail. Throwaway Python commands play the slow tools; the cache is a temp folder."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.components import fetchers, manager, progress
from harness.components.base import Artifact, FetchError, cache_root, pid_alive
from tests.support import poll

pytestmark = pytest.mark.timeout(60)

#: a "tool" that prints a line every 0.2 s, writes 2 MB into the watched folder on its fourth
#: line, and finishes once the test creates the stop file
SLOW_TOOL = """
import pathlib, sys, time
stop, watched = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
i = 0
while not stop.exists():
    print(f"compiling example.org/pkg{i}", flush=True)
    if i == 3:
        (watched / "blob").write_bytes(b"x" * 2_000_000)
    i += 1
    time.sleep(0.2)
print("all built", flush=True)
"""

HEARTBEAT = re.compile(r"^  \[fake\] (\d+) s, ([\d.]+) MB in \S+, python\S*: (.*)$")


class Lines:
    """The reporter's output, collected from whichever thread writes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[str] = []

    def write(self, text: str) -> None:
        with self._lock:
            self._lines.append(text)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._lines)


@pytest.fixture
def lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lines]:
    monkeypatch.setenv("PHEE_CACHE", str(tmp_path / "cache"))
    collected = Lines()
    with progress.reporting_to(progress.Reporter(collected.write, interval_s=0.2)):
        yield collected


class _Fake(Artifact):
    """An artifact whose fetch runs one command through `fetchers.run`."""

    name = "fake"
    version = "1.0"

    def __init__(self, cmd: list[str], watch: Path | None = None, timeout_s: float = 30) -> None:
        self.cmd = cmd
        self.watch = watch
        self.timeout_s = timeout_s

    def _fetch(self) -> None:
        fetchers.run(self.cmd, what="build fake", watch=self.watch, timeout_s=self.timeout_s)


def test_a_slow_tool_gets_heartbeats_with_elapsed_seconds_size_and_its_last_line(
    tmp_path: Path, lines: Lines
) -> None:
    stop, watched = tmp_path / "stop", tmp_path / "watched"
    watched.mkdir()
    fake = _Fake([sys.executable, "-c", SLOW_TOOL, str(stop), str(watched)], watch=watched)
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(fake.fetch()), daemon=True)
    worker.start()

    def late_beat() -> re.Match[str] | None:
        for line in lines.snapshot():
            beat = HEARTBEAT.match(line)
            if beat and int(beat.group(1)) >= 2 and float(beat.group(2)) >= 2.0:
                return beat
        return None

    beat = poll(late_beat, what="a heartbeat at 2 s with 2 MB", deadline_s=30)
    assert beat.group(3).startswith("compiling example.org/pkg"), beat.group(0)
    stop.touch()
    poll(lambda: not worker.is_alive(), what="the fetch to finish", deadline_s=30)

    assert outcome == [True]
    out = lines.snapshot()
    assert re.match(r"^fake +1\.0 +fetching into \S+/fake/1\.0$", out[0]), out[0]
    assert out[1].startswith("  [fake] python")
    assert "build fake (log " in out[1]
    assert re.match(r"^fake +1\.0 +downloaded +\d+\.\d s +[\d.]+ MB$", out[-1]), out[-1]
    beats = [HEARTBEAT.match(line) for line in out[2:-1]]
    assert beats, out
    assert all(beats), out  # one line per heartbeat, nothing else in between
    seconds = [int(b.group(1)) for b in beats if b]
    assert seconds == sorted(seconds)
    assert seconds[-1] >= 2
    text = (cache_root() / "logs" / "fake" / "build-fake.log").read_text()
    assert "compiling example.org/pkg0\n" in text
    assert text.endswith("all built\n")
    assert fake.is_cached()


def test_a_failing_tool_raises_with_its_log_tail_and_the_fetch_ends_failed(
    tmp_path: Path, lines: Lines
) -> None:
    code = "import sys; [print(f'line {i}') for i in range(100)]; sys.exit(3)"
    fake = _Fake([sys.executable, "-c", code])
    with pytest.raises(FetchError) as info:
        fake.fetch()
    message = str(info.value)
    assert message.startswith("build fake: `")
    assert "exited 3; log " in message
    quoted = message.splitlines()[1:]
    assert quoted == [f"line {i}" for i in range(60, 100)]  # the last 40 lines, in order
    log = Path(message.split("; log ")[1].split(":\n")[0])
    assert log.read_text().count("\n") == 100  # everything went to the log
    assert re.match(r"^fake +1\.0 +FAILED +", lines.snapshot()[-1])
    assert not fake.is_cached()


def test_a_tool_past_its_timeout_is_killed_with_its_children(tmp_path: Path, lines: Lines) -> None:
    # The tool starts a child of its own (as go starts its compilers) and hangs.
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    fake = _Fake([sys.executable, "-c", code], timeout_s=2)
    with pytest.raises(FetchError, match=r"did not finish within 2 s") as info:
        fake.fetch()
    child = int(re.findall(r"child (\d+)", str(info.value))[0])
    poll(lambda: not pid_alive(child), what="the tool's child to be gone", deadline_s=10)


def test_stdout_can_be_kept_apart_from_the_log(tmp_path: Path, lines: Lines) -> None:
    code = "import sys; print('{\"Dir\": \"/x\"}'); print('go: downloading x', file=sys.stderr)"
    out = fetchers.run([sys.executable, "-c", code], what="answer", capture_stdout=True)
    assert out == '{"Dir": "/x"}\n'
    assert fetchers.step_log_path("answer").read_text() == "go: downloading x\n"


def test_a_tool_run_outside_any_fetch_reports_as_its_own(tmp_path: Path, lines: Lines) -> None:
    fetchers.run([sys.executable, "-c", "print('hello')"], what="lonely step")
    out = lines.snapshot()
    assert re.match(r"^python\S* +- +fetching into ", out[0]), out
    assert "lonely step (log " in out[1]
    assert re.match(r"^python\S* +- +done +", out[-1]), out


def test_a_nested_fetch_pauses_the_outer_heartbeat(tmp_path: Path, lines: Lines) -> None:
    stop = tmp_path / "stop"
    inner = _Fake([sys.executable, "-c", SLOW_TOOL, str(stop), str(tmp_path)])

    def stop_after_three_inner_heartbeats() -> None:
        inner_beats = lambda: sum(1 for line in lines.snapshot() if HEARTBEAT.match(line)) >= 3  # noqa: E731
        poll(inner_beats, what="three inner heartbeats", deadline_s=30)
        stop.touch()

    stopper = threading.Thread(target=stop_after_three_inner_heartbeats, daemon=True)
    with progress.fetching("outer", "2.0", tmp_path):
        stopper.start()
        assert inner.fetch()  # in the outer fetch's thread, as a nested fetch runs
    out = lines.snapshot()
    inner_start = next(i for i, line in enumerate(out) if line.startswith("fake "))
    inner_end = next(i for i, line in enumerate(out) if re.match(r"^fake +1\.0 +downloaded", line))
    assert sum(1 for line in out[inner_start:inner_end] if HEARTBEAT.match(line)) >= 3
    assert [line for line in out[inner_start:inner_end] if line.startswith("  [outer]")] == []
    assert re.match(r"^outer +2\.0 +downloaded", out[-1]), out[-1]


def test_readable_tool_lines() -> None:
    maven = (
        "Downloaded from central: https://repo.maven.apache.org/maven2/org/apache/zookeeper/"
        "zookeeper/3.8.4/zookeeper-3.8.4.jar (1.3 MB at 4.5 MB/s)"
    )
    assert progress.readable(maven) == (
        "Downloaded from central: zookeeper-3.8.4.jar (1.3 MB at 4.5 MB/s)"
    )
    assert progress.readable("Progress 23000000 of 46000000") == "downloaded 23.0 of 46.0 MB"
    assert len(progress.readable("k8s.io/" + "x" * 300)) == progress.QUOTE_MAX


def test_last_line_keeps_the_newest_state_of_a_rewritten_line(tmp_path: Path) -> None:
    log = tmp_path / "tool.log"
    log.write_bytes(b"first\nhalf 10%\rhalf 50%\rhalf 90%\n\n")
    assert progress.last_line(log) == "half 90%"
    log.write_bytes(b"\x1b[1;34mINFO\x1b[m Downloading x.jar\n\x1b[0m\x1b[0m\n")  # mvn's colours
    assert progress.last_line(log) == "INFO Downloading x.jar"
    assert progress.last_line(tmp_path / "missing.log") == ""


def test_tool_names() -> None:
    assert fetchers.tool_name(["env", "GOFLAGS=-mod=mod", "/usr/bin/go", "build"]) == "go"
    assert fetchers.tool_name(["/venv/bin/python", "-m", "pip", "install"]) == "pip"
    assert fetchers.tool_name(["java", "-jar", "/tmp/ecj-3.42.0.jar", "-17"]) == "ecj"
    assert fetchers.tool_name(["mvn", "-B"]) == "mvn"


def test_manager_fetch_ends_every_component_with_one_line(
    tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = {
        "fake": _Fake([sys.executable, "-c", "print('built')"]),
        "cached": _Fake([sys.executable, "-c", "raise SystemExit('must not run')"]),
    }
    fakes["cached"].name = "cached"
    fakes["cached"].cache_dir.mkdir(parents=True)
    (fakes["cached"].cache_dir / ".fetched").write_text("cached 1.0\n")
    monkeypatch.setattr(manager, "FETCHABLE", ("fake", "cached", "other"))
    monkeypatch.setattr(manager, "get_fetchable", fakes.__getitem__)

    results = manager.fetch(["cached", "fake"])

    assert [(r.name, r.downloaded) for r in results] == [("fake", True), ("cached", False)]
    ends = [
        line for line in lines.snapshot() if re.match(r"^\S+ +1\.0 +(downloaded|cached) ", line)
    ]
    assert [line.split()[0] for line in ends] == ["fake", "cached"]
    assert ends[1].split()[2] == "cached"
