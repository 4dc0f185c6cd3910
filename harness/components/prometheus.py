"""Prometheus from Debian's `prometheus` package, scraping targets from a file it watches.

Targets live in a file_sd JSON file so that a test can add its own `/metrics` endpoint after the
server started (Prometheus re-reads the file on change; no restart, no fixed ports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.components import versions
from harness.components.base import Running, free_port, fresh_dir, http_status
from harness.components.debian import DebianComponent


class Prometheus(DebianComponent):
    name = "prometheus"
    version = versions.PROMETHEUS
    packages = (f"prometheus={versions.PROMETHEUS}",)
    binaries = ("usr/bin/prometheus",)
    start_deadline_s = 60.0

    def start(self, workdir: Path, **options: Any) -> Running:
        workdir = fresh_dir(workdir / self.name)
        interval = str(options.get("scrape_interval", "1s"))
        targets_file = workdir / "targets.json"
        write_targets(targets_file, list(options.get("targets", [])))
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": interval, "evaluation_interval": interval},
                    "scrape_configs": [
                        {
                            "job_name": "phee",
                            "file_sd_configs": [
                                {"files": [str(targets_file)], "refresh_interval": "1s"}
                            ],
                        }
                    ],
                },
                indent=2,
            )
        )
        port = free_port()
        cmd = [
            str(self.root / "usr" / "bin" / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        base = f"http://127.0.0.1:{port}"
        return self._launch_and_wait(
            cmd,
            workdir=workdir,
            ready=lambda: http_status(f"{base}/-/ready") == 200,
            endpoints={"http": base},
            ports={"http": port},
            extra={"targets_file": str(targets_file)},
        )


TargetGroup = dict[str, Any]


def write_targets(path: Path, targets: list[str], labels: dict[str, str] | None = None) -> None:
    """Replace the scrape targets (`host:port` each) with one group."""
    write_target_groups(path, [{"targets": targets, "labels": labels or {}}])


def write_target_groups(path: Path, groups: list[TargetGroup]) -> None:
    """Replace all target groups; written atomically so Prometheus never reads half a file.

    A group's labels may set `__metrics_path__` (the engine serves `/actuator/prometheus`).
    """
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)


def set_targets(running: Running, targets: list[str], labels: dict[str, str] | None = None) -> None:
    """Point a running Prometheus at new targets."""
    write_targets(Path(running.extra["targets_file"]), targets, labels)


def set_target_groups(running: Running, groups: list[TargetGroup]) -> None:
    """Point a running Prometheus at new target groups."""
    write_target_groups(Path(running.extra["targets_file"]), groups)
