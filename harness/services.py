"""Our own HTTP services (router, reference AMS, switch double, ...) as local processes.

Every service is a module with a `main()` that serves a FastAPI app (`phee.service.serve`) on
127.0.0.1:`PHEE_PORT`. `start_service` launches it exactly like a component (own session, log
file, readiness polled on `/readyz`, stop by PID), so tests and the local site treat our services
and the real components alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.components.artifacts import ApiSnippets
from harness.components.base import Running, free_port, http_status, launch_and_wait, stop_pid

SERVICE_VERSION = "phee-0.1.0"


def start_service(
    name: str,
    module: str,
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    deadline_s: float = 30.0,
    args: Sequence[str] = (),
    port: int | None = None,
) -> Running:
    """Run `python -m module *args` on a free port (or `port`, to restart a service where its
    clients know it); return once `/readyz` answers 200.

    Every service gets the FSPIOP schemas' location; secrets come from `env` (the harness
    passes them explicitly, never through the development mode).
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    return launch_and_wait(
        [sys.executable, "-m", module, *args],
        name=name,
        version=SERVICE_VERSION,
        workdir=workdir,
        ready=lambda: http_status(f"{base}/readyz") == 200,
        deadline_s=deadline_s,
        env={**ApiSnippets().schemas_env(), **(env or {}), "PHEE_PORT": str(port)},
        endpoints={"http": base},
        ports={"http": port},
    )


def stop_service(running: Running, grace_s: float = 15.0) -> None:
    """SIGTERM (uvicorn drains in-flight requests), SIGKILL after the grace period."""
    stop_pid(running.pid, grace_s)


class Started(list[Running]):
    """The parts a start sequence has started so far, in order: `add` tells `on_ready` about
    each (the site prints it), `stop_all` stops them in reverse (a failed start leaves nothing)."""

    def __init__(self, on_ready: Callable[[Running], None] | None = None) -> None:
        super().__init__()
        self.on_ready = on_ready

    def add(self, run: Running) -> Running:
        self.append(run)
        if self.on_ready is not None:
            self.on_ready(run)
        return run

    def stop_all(self) -> None:
        for run in reversed(self):
            stop_service(run)
