"""Leader election on a coordination.k8s.io Lease: two replicas run, one reconciles.

kopf's peering only pauses operators that see each other; it is not a lock. A Lease is: the
API server's optimistic concurrency (resourceVersion) makes taking it atomic, and a leader that
cannot renew in time stops reconciling before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger("phee_operator.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def expired(spec: LeaseSpec | None, now: dt.datetime) -> bool:
    """True when nobody holds the lease or its holder missed its renewal deadline."""
    if spec is None or not spec.holderIdentity or spec.renewTime is None:
        return True
    duration = dt.timedelta(seconds=spec.leaseDurationSeconds or 0)
    return bool(spec.renewTime + duration < now)


class LeaderElector:
    """Acquire, hold and renew one Lease for `identity`."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float,
        renew_every_s: float,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.renew_every_s = renew_every_s

    def _spec(self, acquired: dt.datetime | None, transitions: int) -> LeaseSpec:
        now = _now()
        return LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.duration_s),
            acquireTime=acquired or now,
            renewTime=now,
            leaseTransitions=transitions,
        )

    async def try_acquire(self) -> bool:
        """One attempt: create the lease, renew our own, or take over an expired one."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            new = Lease(
                metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(None, 0),
            )
            try:
                await self.client.create(new)
            except ApiError as create_err:
                if create_err.status.code == 409:  # someone else created it first
                    return False
                raise
            return True
        spec = lease.spec
        mine = spec is not None and spec.holderIdentity == self.identity
        if not mine and not expired(spec, _now()):
            return False
        transitions = (spec.leaseTransitions or 0) if spec else 0
        lease.spec = self._spec(
            spec.acquireTime if mine and spec else None, transitions + (0 if mine else 1)
        )
        try:
            # replace carries the resourceVersion we read: a concurrent writer makes it fail
            await self.client.replace(lease)
        except ApiError as err:
            if err.status.code == 409:
                return False
            raise
        return True

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until we lead (True) or `stop` is set (False)."""
        announced = False
        while stop is None or not stop.is_set():
            try:
                if await self.try_acquire():
                    log.info("%s leads (lease %s/%s)", self.identity, self.namespace, self.name)
                    return True
            except (ApiError, httpx2.HTTPError) as err:
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            if not announced:
                log.info("%s is standby; another replica leads", self.identity)
                announced = True
            await asyncio.sleep(self.renew_every_s)  # poll interval between attempts
        return False

    async def hold(self, lost: asyncio.Event) -> None:
        """Renew until renewing fails for a whole lease duration; then set `lost` and return."""
        last_ok = asyncio.get_running_loop().time()
        while not lost.is_set():
            await asyncio.sleep(self.renew_every_s)  # renewal period, not a synchronisation
            try:
                if await self.try_acquire():
                    last_ok = asyncio.get_running_loop().time()
                    continue
                log.error("%s lost the lease to another replica", self.identity)
                lost.set()
                return
            except (ApiError, httpx2.HTTPError) as err:
                log.warning("lease renewal failed: %s", err)
            # Stop a margin before the lease can expire, so two leaders never overlap.
            if asyncio.get_running_loop().time() - last_ok > self.duration_s - self.renew_every_s:
                log.error("%s could not renew the lease in time; stepping down", self.identity)
                lost.set()
                return

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so the standby takes over at once."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is not None and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.renewTime = None
                await self.client.replace(lease)
        except (ApiError, httpx2.HTTPError) as err:
            log.warning("could not release the lease: %s", err)
