"""PostgreSQL from Debian's `postgresql-15`, one throwaway cluster per start."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from harness.components import versions
from harness.components.base import Running, StartError, free_port, fresh_dir, tail, tcp_open
from harness.components.debian import DebianComponent, as_unprivileged

_BIN = "usr/lib/postgresql/15/bin"


class PostgreSQL(DebianComponent):
    name = "postgresql"
    version = versions.POSTGRESQL
    packages = (f"postgresql-15={versions.POSTGRESQL}",)
    binaries = (f"{_BIN}/postgres", f"{_BIN}/initdb")
    start_deadline_s = 60.0
    # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
    stop_signal = signal.SIGINT

    def start(self, workdir: Path, **options: Any) -> Running:
        """Options: `settings`, extra server settings (`{"wal_level": "logical"}` for CDC)."""
        settings: dict[str, str] = dict(options.pop("settings", None) or {})
        if options:
            raise TypeError(f"unknown PostgreSQL options: {sorted(options)}")
        workdir = fresh_dir(workdir / self.name)
        data = workdir / "pgdata"
        log = workdir / "postgresql.log"
        bin_dir = self.root / _BIN
        init = subprocess.run(
            as_unprivileged(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            ),
            capture_output=True,
            text=True,
            env=None,
            check=False,
        )
        log.write_text(init.stdout + init.stderr)
        if init.returncode != 0:
            raise StartError(f"postgresql initdb failed ({init.returncode}):\n{tail(log)}")
        port = free_port()
        cmd = as_unprivileged(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-F",  # -F: no fsync, this cluster is for tests
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "log_min_messages=warning",
                *(arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")),
            ]
        )

        def ready() -> bool:
            text = log.read_text(errors="replace")
            return "ready to accept connections" in text and tcp_open(port)

        return self._launch_and_wait(
            cmd,
            workdir=workdir,
            ready=ready,
            log_name="postgresql.log",
            endpoints={"url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"},
            ports={"sql": port},
            extra={"settings": settings} if settings else {},
        )
