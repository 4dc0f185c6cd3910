"""The Kubernetes adapter: the only package that talks to the API server (through lightkube).

Objects go in and out as plain dicts, so the builders and the status code stay pure. Every
write is a server-side apply with the operator's field manager (idempotent: re-applying after a
crash creates nothing twice). Errors are mapped to two of ours: `Retryable` (the API server is
busy, unreachable, or a conflict that a fresh read fixes) and `Rejected` (the object is invalid;
retrying the same thing cannot help).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret, Service
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from phee_operator.model import FIELD_MANAGER, GROUP, VERSION

PaymentEngine = create_namespaced_resource(GROUP, VERSION, "PaymentEngine", "paymentengines")
PaymentHub = create_namespaced_resource(GROUP, VERSION, "PaymentHub", "paymenthubs")
ServiceMonitor = create_namespaced_resource(
    "monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"
)
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"

_RESOURCES: dict[tuple[str, str], Any] = {
    ("v1", "ConfigMap"): ConfigMap,
    ("v1", "Service"): Service,
    ("v1", "Pod"): Pod,
    ("v1", "Secret"): Secret,
    ("apps/v1", "StatefulSet"): StatefulSet,
    ("apps/v1", "Deployment"): Deployment,
    ("policy/v1", "PodDisruptionBudget"): PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): NetworkPolicy,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
    (f"{GROUP}/{VERSION}", "PaymentEngine"): PaymentEngine,
    (f"{GROUP}/{VERSION}", "PaymentHub"): PaymentHub,
}


class KubeError(RuntimeError):
    """A Kubernetes call failed."""


class Retryable(KubeError):
    """Worth another try later: the server was busy, unreachable, or the read was stale."""


class Rejected(KubeError):
    """The API server refused the object itself (invalid, forbidden): retrying cannot help."""


def connect(kubeconfig: str | None, *, timeout_s: float = 10) -> AsyncClient:
    """A client from a kubeconfig file, or the in-cluster service account when None."""
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    return AsyncClient(
        config=config, field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(timeout_s)
    )


def resource(api_version: str, kind: str) -> Any:
    try:
        return _RESOURCES[(api_version, kind)]
    except KeyError:
        raise KubeError(f"the operator does not manage {kind} ({api_version})") from None


def _mapped(err: Exception, what: str) -> KubeError:
    if isinstance(err, ApiError):
        code = err.status.code or 0
        msg = f"{what}: {code} {err.status.reason}: {err.status.message}"
        if code in (409, 429) or code >= 500:
            return Retryable(msg)
        return Rejected(msg)
    return Retryable(f"{what}: {type(err).__name__}: {err}")


def _dict(obj: Any) -> dict[str, Any]:
    out = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return dict(out)


class Kube:
    """A thin async client bound to one field manager."""

    def __init__(self, client: AsyncClient, field_manager: str = FIELD_MANAGER) -> None:
        self.client = client
        self.field_manager = field_manager

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> Kube:
        """From a kubeconfig file, or the in-cluster service account when `path` is None."""
        return cls(connect(path, timeout_s=30))

    async def close(self) -> None:
        await self.client.close()

    async def apply(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply; `force` takes over fields a human changed with kubectl edit (the
        spec in the custom resource is the one place to change a child)."""
        md = manifest["metadata"]
        res = resource(manifest["apiVersion"], manifest["kind"])
        what = f"apply {manifest['kind']} {md.get('namespace')}/{md['name']}"
        try:
            out = await self.client.patch(
                res,
                md["name"],
                dict(manifest),
                namespace=md.get("namespace"),
                patch_type=PatchType.APPLY,
                field_manager=self.field_manager,
                force=True,
                dry_run=dry_run,
            )
        except (ApiError, httpx2.HTTPError) as err:
            raise _mapped(err, what) from err
        return _dict(out)

    async def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create the object unless it exists (never overwrite: for what must be written once,
        such as a generated password). True when this call created it."""
        md = manifest["metadata"]
        res = resource(manifest["apiVersion"], manifest["kind"])
        what = f"create {manifest['kind']} {md.get('namespace')}/{md['name']}"
        try:
            await self.client.create(
                res.from_dict(dict(manifest)), field_manager=self.field_manager
            )
        except ApiError as err:
            if err.status.code == 409:  # already there (created earlier or concurrently)
                return False
            raise _mapped(err, what) from err
        except httpx2.HTTPError as err:
            raise _mapped(err, what) from err
        return True

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            obj = await self.client.get(resource(api_version, kind), name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise _mapped(err, f"get {kind} {namespace}/{name}") from err
        except httpx2.HTTPError as err:
            raise _mapped(err, f"get {kind} {namespace}/{name}") from err
        return _dict(obj)

    async def list(
        self, api_version: str, kind: str, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        res = resource(api_version, kind)
        try:
            return [
                _dict(o)
                async for o in self.client.list(res, namespace=namespace, labels=dict(labels or {}))
            ]
        except ApiError as err:
            if err.status.code == 404:  # the kind itself is not installed (a missing CRD)
                return []
            raise _mapped(err, f"list {kind} in {namespace}") from err
        except httpx2.HTTPError as err:
            raise _mapped(err, f"list {kind} in {namespace}") from err

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        try:
            await self.client.delete(resource(api_version, kind), name, namespace=namespace)
        except ApiError as err:
            if err.status.code == 404:
                return False
            raise _mapped(err, f"delete {kind} {namespace}/{name}") from err
        except httpx2.HTTPError as err:
            raise _mapped(err, f"delete {kind} {namespace}/{name}") from err
        return True

    async def patch_status(
        self, kind: str, name: str, namespace: str, status: dict[str, Any]
    ) -> None:
        """Replace the fields we own in `.status` (a merge patch on the status subresource)."""
        res = resource(f"{GROUP}/{VERSION}", kind)
        try:
            await self.client.patch(
                res.Status,
                name,
                {"status": status},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as err:
            if err.status.code == 404:  # deleted meanwhile: nothing to report on
                return
            raise _mapped(err, f"status of {kind} {namespace}/{name}") from err
        except httpx2.HTTPError as err:
            raise _mapped(err, f"status of {kind} {namespace}/{name}") from err

    async def has_crd(self, name: str) -> bool:
        try:
            await self.client.get(CustomResourceDefinition, name)
        except ApiError as err:
            if err.status.code in (403, 404):
                return False
            raise _mapped(err, f"get CRD {name}") from err
        except httpx2.HTTPError as err:
            raise _mapped(err, f"get CRD {name}") from err
        return True
