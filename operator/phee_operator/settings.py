"""Settings of the operator, from `PHEE_OPERATOR_*` environment variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from phee.service import ComponentSettings

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class OperatorSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="PHEE_OPERATOR_", extra="ignore")

    #: kubeconfig file; unset = the pod's service account (in-cluster)
    kubeconfig: str | None = None
    #: namespaces to watch; empty = the whole cluster
    namespaces: list[str] = Field(default_factory=list)
    #: where the leader Lease lives (default: the pod's own namespace)
    lease_namespace: str = ""
    lease_name: str = "phee-operator"
    #: who holds the lease (default: the pod name, else host and pid)
    identity: str = ""
    #: a leader that has not renewed for this long is replaced
    lease_duration_s: float = Field(default=15.0, gt=1)
    renew_every_s: float = Field(default=5.0, gt=0)
    #: full reconcile of every engine and hub this often (heals drift a watch did not show)
    resync_s: float = Field(default=60.0, gt=0)
    #: watch request timeouts: the server ends a watch after `watch_server_s`, and a silent
    #: connection is dropped after `watch_client_s` (kopf's defaults wait forever)
    watch_server_s: int = Field(default=300, ge=10)
    watch_client_s: int = Field(default=330, ge=15)
    #: port of /metrics, also the liveness probe (a standby answers too; kopf's own liveness
    #: endpoint exists only while it runs, which would restart every standby); 0 = none
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: the Kafka Connect REST API for connector registration; unset = each hub's in-cluster
    #: Service (http://<hub>-connect.<ns>.svc:8083). Set it when the operator runs outside
    #: the cluster (a port-forward, or a Connect reachable from there).
    connect_url: str | None = None
    #: how long one Connect REST call may take (a registration never blocks the engine longer)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    #: the pod's namespace and name, from the downward API (deploy/deployment.yaml)
    pod_namespace: str = Field(default="", validation_alias="POD_NAMESPACE")
    pod_name: str = Field(default="", validation_alias="POD_NAME")

    @model_validator(mode="after")
    def _fill(self) -> OperatorSettings:
        if not self.lease_namespace:
            ns = _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.exists() else "default"
            self.lease_namespace = self.pod_namespace or ns
        if not self.identity:
            self.identity = self.pod_name or f"{socket.gethostname()}-{os.getpid()}"
        if self.renew_every_s >= self.lease_duration_s:
            raise ValueError("renew_every_s must be shorter than lease_duration_s")
        return self
