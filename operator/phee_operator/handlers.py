"""kopf handlers: thin triggers over `Reconciler`, which reads actual state every time.

Create/update/resume handlers react to spec changes; a timer re-applies every object now and
then (kopf's change handlers never fire for drift); events of the children (StatefulSets and
Deployments the operator labelled) refresh the owner's status as soon as pods become ready.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from phee_operator.common import LABEL_ENGINE, LABEL_HUB, LABEL_MANAGED_BY
from phee_operator.connect import HttpConnect
from phee_operator.kube import Kube, KubeError, Rejected, Retryable
from phee_operator.metrics import RECONCILES, observe
from phee_operator.model import GROUP, MANAGED_BY, VERSION
from phee_operator.reconcile import Reconciler
from phee_operator.settings import OperatorSettings

log = logging.getLogger("phee_operator")
ENGINES = (GROUP, VERSION, "paymentengines")
HUBS = (GROUP, VERSION, "paymenthubs")
_CHILD_FILTER = {LABEL_MANAGED_BY: MANAGED_BY}


def _post_event(body: dict[str, Any], etype: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, body), type=etype, reason=reason, message=message[:1000])


def configure(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf settings the operator relies on (called from the startup handler)."""
    # Progress and the last-handled spec live on the object, under our own prefix.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Without timeouts a watch silently stuck behind a dead connection never recovers.
    settings.watching.server_timeout = ours.watch_server_s
    settings.watching.client_timeout = ours.watch_client_s
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.posting.level = logging.INFO
    # Leadership comes from the Lease (leader.py); kopf's peering is not a lock.
    settings.peering.standalone = True
    settings.execution.max_workers = 8


def _reconciler(memo: Any) -> Reconciler:
    rec: Reconciler = memo.reconciler
    return rec


async def _run(what: str, coro: Any) -> Any:
    """Await a reconcile, mapping our errors onto kopf's retry semantics."""
    with observe(what):
        try:
            return await coro
        except Retryable as err:
            RECONCILES.labels(what, "retry").inc()
            raise kopf.TemporaryError(str(err), delay=2) from err
        except Rejected as err:
            RECONCILES.labels(what, "rejected").inc()
            raise kopf.PermanentError(str(err)) from err
        except KubeError as err:
            RECONCILES.labels(what, "error").inc()
            raise kopf.TemporaryError(str(err), delay=10) from err


def register(ours: OperatorSettings) -> None:
    """Register every handler (in a function, so importing this module has no side effects)."""

    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        configure(settings, ours)
        memo.kube = Kube.from_kubeconfig(ours.kubeconfig)
        memo.reconciler = Reconciler(
            memo.kube,
            _post_event,
            connect=HttpConnect(ours.connect_timeout_s),
            connect_url=ours.connect_url,
        )

    @kopf.on.cleanup()
    async def cleanup(memo: Any, **_: Any) -> None:
        await memo.kube.close()

    @kopf.on.login()
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if ours.kubeconfig:
            return kopf.login_with_kubeconfig(**kwargs)
        return kopf.login_with_service_account(**kwargs)

    # -- engines -------------------------------------------------------------------------------
    @kopf.on.resume(*ENGINES)
    @kopf.on.create(*ENGINES)
    @kopf.on.update(*ENGINES)
    async def engine_changed(
        name: str, namespace: str | None, memo: Any, **_: Any
    ) -> dict[str, str]:
        phase = await _run(
            "engine",
            _reconciler(memo).engine(namespace or "default", name, apply=True, announce=True),
        )
        return {"phase": phase}

    @kopf.timer(*ENGINES, interval=ours.resync_s, initial_delay=ours.resync_s)
    async def engine_resync(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        await _run("engine", _reconciler(memo).engine(namespace or "default", name, apply=True))

    @kopf.on.delete(*ENGINES)
    async def engine_deleted(
        name: str, namespace: str | None, spec: kopf.Spec, memo: Any, **_: Any
    ) -> None:
        await _run(
            "engine",
            _reconciler(memo).engine_deleted(namespace or "default", name, spec.get("hubRef")),
        )

    # -- hubs ----------------------------------------------------------------------------------
    @kopf.on.resume(*HUBS)
    @kopf.on.create(*HUBS)
    @kopf.on.update(*HUBS)
    async def hub_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        rec = _reconciler(memo)
        await _run("hub", rec.hub(namespace or "default", name, apply_all=True))
        # Engines read the hub's spec (image, Kafka, fspId), and ones refused for a missing hub
        # can be built now.
        for engine in await rec.hub_engines(namespace or "default", name):
            await _run("engine", rec.engine(namespace or "default", engine, apply=True))

    @kopf.timer(*HUBS, interval=ours.resync_s, initial_delay=ours.resync_s)
    async def hub_resync(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
        await _run("hub", _reconciler(memo).hub(namespace or "default", name, apply_all=True))

    # -- children ------------------------------------------------------------------------------
    @kopf.on.event("apps", "v1", "statefulsets", labels=_CHILD_FILTER)
    @kopf.on.event("apps", "v1", "deployments", labels=_CHILD_FILTER)
    async def child_event(
        event: kopf.RawEvent, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
    ) -> None:
        rec = _reconciler(memo)
        # A child someone deleted is put back at once, not at the next resync.
        heal = event.get("type") == "DELETED"
        try:
            if LABEL_ENGINE in labels:
                await rec.engine(namespace or "default", labels[LABEL_ENGINE], apply=heal)
            elif LABEL_HUB in labels:
                await rec.hub(namespace or "default", labels[LABEL_HUB], apply_all=heal)
        except KubeError as err:  # event handlers are not retried; the next event or resync is
            log.warning("status refresh after a child event failed: %s", err)
