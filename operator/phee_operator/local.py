"""Run the operator as a local process against any cluster (tests, benchmarks, a developer).

In a cluster the operator runs as its Deployment's service account; here it gets the same
identity through a token kubeconfig (`kubectl create token phee-operator`), so whatever works
locally works with exactly the RBAC in operator/deploy/rbac.yaml.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from phee.components.base import Running, launch, stop_pid, wait_until

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy"
NAMESPACE = "phee-system"
SERVICE_ACCOUNT = "phee-operator"


def token_kubeconfig(admin_kubeconfig: Path, token: str, dest: Path) -> Path:
    """A kubeconfig with the admin one's cluster (server, CA) and a bearer token as the user."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {
                "name": SERVICE_ACCOUNT,
                "context": {
                    "cluster": cluster["name"],
                    "user": SERVICE_ACCOUNT,
                    "namespace": NAMESPACE,
                },
            }
        ],
        "current-context": SERVICE_ACCOUNT,
    }
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)
    return dest


def service_account_kubeconfig(kubectl: str, admin_kubeconfig: Path, dest: Path) -> Path:
    """Install the operator's RBAC (operator/deploy) and return a kubeconfig acting as it."""

    def run(*args: str) -> str:
        proc = subprocess.run(
            [
                kubectl,
                f"--kubeconfig={admin_kubeconfig}",
                f"--cache-dir={dest.parent / 'kubectl-cache'}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    run("apply", "-k", str(DEPLOY_DIR))
    token = run("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=12h").strip()
    return token_kubeconfig(admin_kubeconfig, token, dest)


def start_operator(
    workdir: Path,
    kubeconfig: Path,
    *,
    identity: str = "local-operator",
    env: Mapping[str, str] | None = None,
    deadline_s: float = 60.0,
) -> Running:
    """Start `python -m phee_operator`; return once its log says it leads (or, for a standby
    started while another leads, once it says it waits)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"operator-{identity}.log"
    start = time.monotonic()
    proc = launch(
        [sys.executable, "-m", "phee_operator"],
        log_path=log_path,
        cwd=workdir,
        env={
            "PHEE_OPERATOR_KUBECONFIG": str(kubeconfig),
            "PHEE_OPERATOR_LEASE_NAMESPACE": NAMESPACE,
            "PHEE_OPERATOR_IDENTITY": identity,
            **(env or {}),
        },
    )

    def started() -> bool:
        text = log_path.read_text(errors="replace")
        return f"{identity} leads" in text or f"{identity} is standby" in text

    try:
        wait_until(
            started,
            what=f"operator {identity}",
            deadline_s=deadline_s,
            log_path=log_path,
            proc=proc,
        )
    except BaseException:
        stop_pid(proc.pid, grace_s=2.0)
        raise
    return Running(
        name="phee-operator",
        version="local",
        pid=proc.pid,
        workdir=str(workdir),
        log_path=str(log_path),
        ready_s=round(time.monotonic() - start, 2),
        extra={"identity": identity},
    )
