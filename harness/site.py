"""`phee site up`: the local multi-engine site as real processes on this machine.

One Kafka, N Zeebe engines each exporting to its own topic, OpenSearch for the back office,
Prometheus scraping every engine and service, and the payment stack (reference AMS, switch
double, callback router, each engine's workers and channel API), and the back office (importer
and operations API on SQLite). It sends sample payments through the engines, prints their final
states, what reached Kafka and what the back office holds, then runs until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from harness import local_backoffice as backoffice_local
from harness import stack as stack_mod
from harness.components import Running, get, manager
from harness.components.base import http_json
from harness.components.prometheus import set_target_groups
from harness.engine_smoke import exported_records
from harness.services import stop_service
from phee.zeebe_export import topic_for

#: what the site runs: the servers it starts, and the FSPIOP documents every service of ours
#: reads (`harness.services`); the Java runtime comes with the servers. Its services keep their
#: data in SQLite, so no PostgreSQL or MariaDB; no Kubernetes, no Testing Toolkit.
SITE_COMPONENTS: tuple[str, ...] = ("kafka", "zeebe", "opensearch", "prometheus", "api-snippets")


@dataclass
class Site:
    """The running parts of a local site, in start order."""

    kafka: Running
    engines: dict[str, Running]
    opensearch: Running
    prometheus: Running
    order: list[Running] = field(default_factory=list)


def announce(run: Running) -> None:
    """One line as each part becomes ready, so a start shows its progress."""
    label = run.extra.get("engine", run.name)
    print(f"  ready: {label:<16} {run.name} {run.version} in {run.ready_s:.1f} s", flush=True)


def start(workdir: Path, engine_names: list[str]) -> Site:
    """Start Kafka, then the engines, OpenSearch and Prometheus side by side.

    Whatever started is stopped again if any part fails, so a failed `up` leaves nothing behind.
    """
    started: list[Running] = []
    try:
        # Every component makes its own subdirectory (Zeebe's is named after the engine).
        print("starting kafka ...", flush=True)
        kafka = get("kafka").start(workdir)
        started.append(kafka)
        announce(kafka)
        print(f"starting {', '.join(engine_names)}, opensearch, prometheus ...", flush=True)
        with ThreadPoolExecutor(max_workers=len(engine_names) + 2) as pool:
            engine_futures = {
                name: pool.submit(
                    get("zeebe").start,
                    workdir,
                    engine=name,
                    kafka_bootstrap=kafka.endpoint("bootstrap"),
                )
                for name in engine_names
            }
            search_future = pool.submit(get("opensearch").start, workdir)
            prom_future = pool.submit(get("prometheus").start, workdir)
            futures = [*engine_futures.values(), search_future, prom_future]
            errors = []
            for future in as_completed(futures):
                try:
                    started.append(future.result())
                    announce(started[-1])
                except Exception as err:  # noqa: BLE001 - collected, the first is re-raised
                    errors.append(err)
            if errors:
                raise errors[0]
        engines = {name: f.result() for name, f in engine_futures.items()}
        site = Site(kafka, engines, search_future.result(), prom_future.result(), started)
        set_target_groups(
            site.prometheus,
            [
                {
                    "targets": [run.endpoint("monitoring").removeprefix("http://")],
                    "labels": {"engine": name, "__metrics_path__": "/actuator/prometheus"},
                }
                for name, run in engines.items()
            ],
        )
        return site
    except BaseException:
        stop_all(started)
        raise


def stop_all(started: list[Running]) -> None:
    """Stop in reverse start order (engines before the Kafka they export to)."""
    for run in reversed(started):
        get(run.name).stop(run)


async def exported(site: Site) -> dict[str, int]:
    """Records each engine exported to its own Kafka topic so far (read to the end)."""
    report: dict[str, int] = {}
    for name in site.engines:
        counted: list[int] = []

        def caught_up(records: Sequence[dict[str, object]], seen: list[int] = counted) -> bool:
            grew = len(records) > (seen[-1] if seen else -1)
            seen.append(len(records))
            return bool(records) and not grew

        records = await exported_records(
            site.kafka.endpoint("bootstrap"), topic_for(name), caught_up
        )
        report[name] = len(records)
    return report


def prometheus_sees(site: Site, wanted: list[str], deadline_s: float = 60.0) -> dict[str, float]:
    """Poll Prometheus until every wanted target (engine or service label) has `up` 1."""
    url = f"{site.prometheus.endpoint('http')}/api/v1/query?query=up"
    end = time.monotonic() + deadline_s
    ups: dict[str, float] = {}
    while time.monotonic() < end:
        result = http_json(url)["data"]["result"]
        ups = {
            r["metric"].get("engine") or r["metric"].get("service", "?"): float(r["value"][1])
            for r in result
        }
        if all(ups.get(name) == 1.0 for name in wanted):
            return ups
        time.sleep(0.5)
    raise RuntimeError(f"Prometheus did not see every target up within {deadline_s} s: {ups}")


def sample_payments(payments: stack_mod.PaymentStack, count: int) -> list[dict[str, str]]:
    """Send `count` payments round robin over the engines' channel APIs; wait for each result."""
    engines = sorted(payments.workers)
    sent: list[tuple[str, str, httpx.Client]] = []
    clients = {e: httpx.Client(base_url=payments.channel(e), timeout=10) for e in engines}
    try:
        for i in range(count):
            engine = engines[i % len(engines)]
            body = stack_mod.transfer_request(
                stack_mod.payer_party(i % 10), stack_mod.payee_party((i + 1) % 10), f"{1 + i % 7}.5"
            )
            resp = clients[engine].post(
                "/channel/transfer", json=body, headers={"Platform-TenantId": stack_mod.TENANT}
            )
            resp.raise_for_status()
            sent.append((engine, str(resp.json()["transactionId"]), clients[engine]))
        results = []
        for engine, tx, client in sent:
            final = stack_mod.wait_final(client, tx, 120)
            results.append(
                {
                    "engine": engine,
                    "transactionId": tx,
                    "status": final["status"],
                    "reason": final["reason"] or "",
                }
            )
        return results
    finally:
        for client in clients.values():
            client.close()


def fetch() -> None:
    """Fetch what the site runs and nothing else, with progress, before anything starts."""
    print(f"site: fetching {', '.join(SITE_COMPONENTS)} (cached ones take no time)")
    manager.fetch(SITE_COMPONENTS)


def up(workdir: Path, engines: int, payments: int, duration_s: float | None) -> int:
    """Start the site, prove it with sample payments, run until Ctrl-C/SIGTERM or duration."""
    names = [f"engine-{chr(ord('a') + i)}" for i in range(engines)]
    fetch()
    stop_event = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    t0 = time.monotonic()
    try:
        site = start(workdir, names)
    except BaseException:
        signal.signal(signal.SIGTERM, previous)
        raise
    payment_stack: stack_mod.PaymentStack | None = None
    back_office: list[Running] = []
    try:
        print("starting the payment stack (reference AMS, switch double, router, workers) ...")
        payment_stack = stack_mod.start(workdir, site.engines, on_ready=announce)
        print("starting the back office (importer, operations API) ...", flush=True)
        back_office, bo_env = backoffice_local.start(
            workdir, site.kafka, site.opensearch, list(site.engines), on_ready=announce
        )
        set_target_groups(
            site.prometheus,
            [
                {
                    "targets": [run.endpoint("monitoring").removeprefix("http://")],
                    "labels": {"engine": name, "__metrics_path__": "/actuator/prometheus"},
                }
                for name, run in site.engines.items()
            ]
            + [
                {
                    "targets": [run.endpoint("http").removeprefix("http://")],
                    "labels": {"service": run.name},
                }
                for run in [*payment_stack.order, *back_office]
            ],
        )
        print(f"site up in {time.monotonic() - t0:.1f} s; parts:")
        for run in [*site.order, *payment_stack.order, *back_office]:
            ends = " ".join(f"{k}={v}" for k, v in sorted(run.endpoints.items()))
            label = run.extra.get("engine", run.name)
            print(f"  {label:<16} {run.name:<16} {run.version:<22} pid {run.pid:<7} {ends}")
        print(f"sending {payments} sample payments ...")
        t1 = time.monotonic()
        results = sample_payments(payment_stack, payments)
        for r in results:
            print(f"  {r['engine']:<9} {r['transactionId']}  {r['status']:<9} {r['reason']}")
        counts = {
            s: sum(1 for r in results if r["status"] == s)
            for s in ("COMMITTED", "ABORTED", "FAILED")
        }
        print(
            f"payments: {counts['COMMITTED']} COMMITTED, {counts['ABORTED']} ABORTED, "
            f"{counts['FAILED']} FAILED in {time.monotonic() - t1:.1f} s"
        )
        report = asyncio.run(exported(site))
        for name, records in report.items():
            print(f"  {name}: {records} records on Kafka topic {topic_for(name)}")
        held = backoffice_local.report(back_office[1], bo_env, len(results))
        print(
            "  back office (operations API): "
            + ", ".join(f"{n} {s}" for s, n in sorted(held.items()))
        )
        parts = [*payment_stack.order, *back_office]
        ups = prometheus_sees(site, [*site.engines, *(r.name for r in parts)])
        print("  prometheus: " + ", ".join(f"{k} up={v:.0f}" for k, v in sorted(ups.items())))
        if duration_s is None:
            print("site is running; Ctrl-C stops it", flush=True)
        else:
            print(f"site is running; it stops in {duration_s:g} s (or at Ctrl-C)", flush=True)
        stop_event.wait(timeout=duration_s)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the site ...")
        for run in reversed(back_office):
            stop_service(run)
        if payment_stack is not None:
            payment_stack.stop()
        stop_all(site.order)
        signal.signal(signal.SIGTERM, previous)
        print("site stopped")
    return 0
