"""Process lifecycle shared by every real component: ports, launch, readiness, stop.

A component is a real server (Operaton, Kafka, ...) fetched once into the cache and started as a
local process on 127.0.0.1. Everything here is deliberately boring: start in a new session so
that a Ctrl-C in the caller does not race our own shutdown, log to a file so that a failed start
can quote the tail, and stop by PID with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Required, TypedDict, Unpack

from harness.components import progress

LOG_TAIL_LINES = 60


class ComponentError(RuntimeError):
    """A component could not be fetched, started or stopped."""


class FetchError(ComponentError):
    """Downloading or building a pinned component failed."""


class StartError(ComponentError):
    """A component did not become ready; the message carries the tail of its log."""


def cache_root() -> Path:
    """Root of the download cache, outside the repository (``PHEE_CACHE`` overrides)."""
    root = os.environ.get("PHEE_CACHE") or str(Path.home() / ".cache" / "phee")
    return Path(root)


def state_root() -> Path:
    """Where the CLI records components it started, so `stop` and `status` find them."""
    override = os.environ.get("PHEE_STATE")
    return Path(override) if override else cache_root() / "run"


def fresh_dir(path: Path) -> Path:
    """A component's own run directory; refusing a used one keeps old data out of a new run."""
    if path.exists() and any(path.iterdir()):
        raise StartError(f"{path} already exists and is not empty; pass a fresh workdir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A port the kernel says is free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Several distinct free ports (held open together so they cannot repeat)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return None


def http_json(url: str, timeout: float = 2.0) -> Any:
    """GET a loopback URL and decode its JSON body; raises OSError/ValueError on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read().decode())


def pid_alive(pid: int) -> bool:
    """True while the process exists and any of its threads is not a zombie.

    A process whose main thread has exited shows as a zombie leader while other threads still
    run and hold its sockets (node does this on shutdown), so every thread is checked.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        # The state follows the parenthesised command name; Z is a zombie.
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
    return False


def launch(
    cmd: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, stdout and stderr to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with log_path.open("ab") as log:
        try:
            return subprocess.Popen(
                list(cmd),
                cwd=str(cwd) if cwd else None,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise StartError(f"cannot execute {cmd[0]}: {err}") from err


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    deadline_s: float,
    log_path: Path,
    proc: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.2,
) -> float:
    """Poll `check` until it is true; return the seconds it took.

    Fails early when the process exits, and always quotes the log tail, so that a component
    that cannot start fails the run loudly instead of timing out silently.
    """
    start = time.monotonic()
    deadline = start + deadline_s
    while True:
        with contextlib.suppress(Exception):  # a probe that fails just means "not yet"
            if check():
                return time.monotonic() - start
        if proc is not None and proc.poll() is not None:
            raise StartError(
                f"{what} exited with code {proc.returncode} before it was ready; "
                f"log {log_path}:\n{tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise StartError(
                f"{what} was not ready within {deadline_s:.0f} s; log {log_path}:\n{tail(log_path)}"
            )
        time.sleep(interval_s)


def stop_pid(pid: int, grace_s: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> None:
    """Signal the process (and its session's group), then SIGKILL after the grace period."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Children left in the group (a wrapper's JVM, say) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    end = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < end:
        _reap(pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class Running:
    """A started component: enough to reach, report and stop it (also from another process)."""

    name: str
    version: str
    pid: int
    workdir: str
    log_path: str
    ready_s: float
    endpoints: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    instance: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Running:
        return cls(**json.loads(text))

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)

    def endpoint(self, key: str) -> str:
        try:
            return self.endpoints[key]
        except KeyError as err:
            raise ComponentError(f"{self.name} has no endpoint {key!r}") from err


class Artifact(abc.ABC):
    """Something pinned that is downloaded once into the cache (a server, or files we read)."""

    name: str
    version: str

    @property
    def cache_dir(self) -> Path:
        # Debian epochs ("1:10.11") would break PATH-like variables (LD_LIBRARY_PATH, classpaths).
        return cache_root() / self.name / self.version.replace(":", "_")

    @property
    def _marker(self) -> Path:
        return self.cache_dir / ".fetched"

    def is_cached(self) -> bool:
        return self._marker.exists()

    def fetch(self) -> bool:
        """Download into the cache unless already there; True when something was downloaded.

        A download reports its progress (a start line, heartbeats, an end line; see
        `progress`); a cached artifact prints nothing here.
        """
        if self.is_cached():
            return False
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with progress.fetching(self.name, self.version, self.cache_dir):
            self._fetch()
            self._marker.write_text(f"{self.name} {self.version}\n")
        return True

    @abc.abstractmethod
    def _fetch(self) -> None:
        """Put everything needed under `self.cache_dir`."""


class Component(Artifact):
    """A pinned real server: fetch it once into the cache, start it fresh, stop it."""

    #: seconds a start may take before it counts as failed (cold JVMs on 2 cores are slow)
    start_deadline_s: float = 120.0
    #: seconds between the stop signal and SIGKILL
    stop_grace_s: float = 20.0
    #: the signal that asks this server for a clean but prompt shutdown
    stop_signal: signal.Signals = signal.SIGTERM

    @abc.abstractmethod
    def start(self, workdir: Path, **options: Any) -> Running:
        """Start on loopback, free ports, fresh data under `workdir`; return once ready."""

    def stop(self, running: Running) -> None:
        stop_pid(running.pid, self.stop_grace_s, self.stop_signal)

    def _launch_and_wait(self, cmd: Sequence[str], **options: Unpack[Launch]) -> Running:
        """Launch this component and wait until it is ready (see `launch_and_wait`)."""
        return launch_and_wait(
            cmd, name=self.name, version=self.version, deadline_s=self.start_deadline_s, **options
        )


class Launch(TypedDict, total=False):
    """What a launch needs besides the command, its name and its deadline."""

    #: the process's own directory (its log goes there); required
    workdir: Required[Path]
    #: true once the process is ready (polled; an exception counts as "not yet"); required
    ready: Required[Callable[[], bool]]
    #: added to this process's environment
    env: Mapping[str, str]
    #: working directory (default: workdir)
    cwd: Path
    endpoints: dict[str, str]
    ports: dict[str, int]
    extra: dict[str, Any]
    #: log file name in workdir (default: `<name>.log`)
    log_name: str


def launch_and_wait(
    cmd: Sequence[str], *, name: str, version: str, deadline_s: float, **options: Unpack[Launch]
) -> Running:
    """The one launcher: start `cmd` in its own session logging to `workdir/<log_name>`, wait for
    `ready`, and on any failure kill what was started before raising (with the log tail)."""
    workdir = options["workdir"]
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / options.get("log_name", f"{name}.log")
    start = time.monotonic()
    proc = launch(cmd, log_path=log_path, cwd=options.get("cwd", workdir), env=options.get("env"))
    try:
        wait_until(
            options["ready"],
            what=f"{name} {version}",
            deadline_s=deadline_s,
            log_path=log_path,
            proc=proc,
        )
    except BaseException:
        stop_pid(proc.pid, grace_s=2.0)
        raise
    return Running(
        name=name,
        version=version,
        pid=proc.pid,
        workdir=str(workdir),
        log_path=str(log_path),
        ready_s=round(time.monotonic() - start, 2),
        endpoints=options.get("endpoints", {}),
        ports=options.get("ports", {}),
        extra=options.get("extra", {}),
    )
