"""MariaDB from Debian's `mariadb-server-core`, one throwaway server per start."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from harness.components import versions
from harness.components.base import Running, StartError, free_port, fresh_dir, tail, tcp_open
from harness.components.debian import DebianComponent

_V = versions.MARIADB


class MariaDB(DebianComponent):
    name = "mariadb"
    version = _V
    packages = (
        f"mariadb-server-core={_V}",
        f"mariadb-client-core={_V}",  # my_print_defaults, used by mariadb-install-db
        "liburing2=2.3-3",
        "libaio1=0.3.113-4",
    )
    binaries = ("usr/sbin/mariadbd",)
    start_deadline_s = 60.0

    def start(self, workdir: Path, **options: Any) -> Running:
        workdir = fresh_dir(workdir / self.name)
        data = workdir / "mariadb-data"
        log = workdir / "mariadb.log"
        usr = self.root / "usr"
        env = self.lib_env()
        init = subprocess.run(
            [
                str(usr / "bin" / "mariadb-install-db"),
                "--no-defaults",
                f"--basedir={usr}",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
        )
        (workdir / "mariadb-install.log").write_text(init.stdout + init.stderr)
        if init.returncode != 0:
            raise StartError(
                f"mariadb-install-db failed ({init.returncode}):\n"
                f"{tail(workdir / 'mariadb-install.log')}"
            )
        password = secrets.token_hex(8)
        init_sql = workdir / "init.sql"
        init_sql.write_text(
            "CREATE DATABASE IF NOT EXISTS phee;\n"
            f"CREATE USER IF NOT EXISTS 'phee'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'phee'@'127.0.0.1' WITH GRANT OPTION;\n"
        )
        # Unix socket paths are limited to ~107 bytes; pytest's tmp paths can be longer.
        sock_dir = Path(tempfile.mkdtemp(prefix="phee-mdb-"))
        port = free_port()
        cmd = [
            str(usr / "sbin" / "mariadbd"),
            "--no-defaults",
            f"--basedir={usr}",
            f"--datadir={data}",
            f"--socket={sock_dir / 'mariadb.sock'}",
            f"--pid-file={workdir / 'mariadb.pid'}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-name-resolve",
            f"--log-error={log}",
            f"--lc-messages-dir={usr / 'share' / 'mysql'}",
            f"--init-file={init_sql}",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=200",
        ]

        def ready() -> bool:
            return "ready for connections" in log.read_text(errors="replace") and tcp_open(port)

        return self._launch_and_wait(
            cmd,
            workdir=workdir,
            ready=ready,
            env=env,
            log_name="mariadb.log",
            endpoints={"url": f"mysql+pymysql://phee:{password}@127.0.0.1:{port}/phee"},
            ports={"sql": port},
            extra={"socket_dir": str(sock_dir)},
        )

    def stop(self, running: Running) -> None:
        super().stop(running)
        shutil.rmtree(running.extra.get("socket_dir", ""), ignore_errors=True)
