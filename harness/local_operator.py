"""Run the operator as a local process against any cluster (tests, benchmarks, a developer).

In a cluster the operator runs as its Deployment's service account; here it gets the same
identity through a token kubeconfig (`kubectl create token phee-operator`), so whatever works
locally works with exactly the RBAC in operator/deploy/rbac.yaml.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.components.base import Running, launch_and_wait
from harness.kubectl import Kubectl

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "operator" / "deploy"
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


def service_account_kubeconfig(admin: Kubectl, dest: Path) -> Path:
    """Install the operator's RBAC (operator/deploy) and return a kubeconfig acting as it."""
    admin.out("apply", "-k", str(DEPLOY_DIR), timeout_s=120)
    token = admin.out("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=12h")
    return token_kubeconfig(Path(admin.kubeconfig), token.strip(), dest)


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
    log_path = workdir / f"operator-{identity}.log"

    def started() -> bool:
        text = log_path.read_text(errors="replace")
        return f"{identity} leads" in text or f"{identity} is standby" in text

    return launch_and_wait(
        [sys.executable, "-m", "phee_operator"],
        name="phee-operator",
        version="local",
        workdir=workdir,
        ready=started,
        deadline_s=deadline_s,
        env={
            "PHEE_OPERATOR_KUBECONFIG": str(kubeconfig),
            "PHEE_OPERATOR_LEASE_NAMESPACE": NAMESPACE,
            "PHEE_OPERATOR_IDENTITY": identity,
            **(env or {}),
        },
        extra={"identity": identity},
        log_name=log_path.name,
    )
