"""`phee site up`: the local multi-engine site as real processes on this machine.

One Kafka, N Operaton engines (each over its own PostgreSQL), one Kafka Connect worker streaming
every engine's history into its own topics (Debezium), OpenSearch for the back office,
Prometheus scraping every engine node and service, and the payment stack (reference AMS, switch
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
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from harness import local_backoffice as backoffice_local
from harness import stack as stack_mod
from harness.components import Running, connect, get, manager
from harness.components.base import http_json
from harness.components.operaton import ENGINE_DB, RunningEngine, start_engine
from harness.components.prometheus import set_target_groups
from harness.exported import exported_records
from harness.services import stop_service
from phee import cdc

#: what the site runs: the servers it starts, and the FSPIOP documents every service of ours
#: reads (`harness.services`); the Java runtimes come with the servers. Each engine keeps its
#: state in its own PostgreSQL; our services keep theirs in SQLite (no MariaDB), no Kubernetes,
#: no Testing Toolkit.
SITE_COMPONENTS: tuple[str, ...] = (
    "kafka",
    "kafka-connect",
    "postgresql",
    "operaton",
    "opensearch",
    "prometheus",
    "api-snippets",
)
#: the history table whose records the site counts per engine (one per process instance change)
COUNTED_TABLE = "act_hi_procinst"


@dataclass
class Site:
    """The running parts of a local site, in start order."""

    kafka: Running
    engines: dict[str, RunningEngine]
    connect: Running
    opensearch: Running
    prometheus: Running
    order: list[Running] = field(default_factory=list)


def announce(run: Running) -> None:
    """One line as each part becomes ready, so a start shows its progress."""
    label = run.extra.get("engine", run.name)
    print(f"  ready: {label:<16} {run.name} {run.version} in {run.ready_s:.1f} s", flush=True)


def engine_database(engine: RunningEngine) -> cdc.EngineDatabase:
    """Where Debezium reads the engine's history (the engine's own PostgreSQL)."""
    return cdc.EngineDatabase("127.0.0.1", engine.sql_port, ENGINE_DB, "postgres")


def engine_targets(engines: dict[str, RunningEngine]) -> list[dict[str, Any]]:
    """Prometheus target groups: every node of every engine (Spring's actuator)."""
    return [
        {
            "targets": [f"127.0.0.1:{node.port}"],
            "labels": {
                "engine": name,
                "node": str(node.index),
                "__metrics_path__": "/actuator/prometheus",
            },
        }
        for name, engine in engines.items()
        for node in engine.nodes
    ]


def start(workdir: Path, engine_names: list[str]) -> Site:
    """Start Kafka, then the engines, Kafka Connect, OpenSearch and Prometheus side by side,
    then register each engine's change-data-capture connector.

    Whatever started is stopped again if any part fails, so a failed `up` leaves nothing behind.
    """
    started: list[Running] = []
    engines: dict[str, RunningEngine] = {}
    try:
        print("starting kafka ...", flush=True)
        kafka = get("kafka").start(workdir)
        started.append(kafka)
        announce(kafka)
        print(
            f"starting {', '.join(engine_names)}, kafka-connect, opensearch, prometheus ...",
            flush=True,
        )
        with ThreadPoolExecutor(max_workers=len(engine_names) + 3) as pool:
            engine_futures = {
                name: pool.submit(start_engine, workdir, name) for name in engine_names
            }
            others: dict[str, Future[Running]] = {
                "connect": pool.submit(
                    get("kafka-connect").start, workdir, bootstrap=kafka.endpoint("bootstrap")
                ),
                "opensearch": pool.submit(get("opensearch").start, workdir),
                "prometheus": pool.submit(get("prometheus").start, workdir),
            }
            errors: list[BaseException] = []
            pending: list[Future[Any]] = [*engine_futures.values(), *others.values()]
            for future in as_completed(pending):
                try:
                    done = future.result()
                except Exception as err:  # noqa: BLE001 - collected, the first is re-raised
                    errors.append(err)
                    continue
                if isinstance(done, RunningEngine):
                    engines[done.name] = done
                    run = done.running()
                    run.extra["engine"] = done.name
                    announce(run)
                else:
                    started.append(done)
                    announce(done)
            if errors:
                raise errors[0]
        site = Site(
            kafka,
            {name: engines[name] for name in engine_names},
            others["connect"].result(),
            others["opensearch"].result(),
            others["prometheus"].result(),
            started,
        )
        for name, engine in site.engines.items():
            connect.register_engine(site.connect, name, engine_database(engine))
            print(f"  cdc: {name} history -> Kafka topics {name}.public.act_hi_*", flush=True)
        set_target_groups(site.prometheus, engine_targets(site.engines))
        return site
    except BaseException:
        stop_all(started, engines)
        raise


def stop_all(started: list[Running], engines: dict[str, RunningEngine]) -> None:
    """Stop in reverse start order; the engines after Kafka Connect (which reads them)."""
    for run in reversed(started[1:]):
        get(run.name).stop(run)
    for engine in engines.values():
        engine.stop()
    for run in started[:1]:
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
            site.kafka.endpoint("bootstrap"), cdc.topic_for(name, COUNTED_TABLE), caught_up
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
    # Ctrl-C raises KeyboardInterrupt even when this process was started with SIGINT ignored
    # (a shell's background job, nohup, some CI runners): Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
            engine_targets(site.engines)
            + [
                {
                    "targets": [run.endpoint("http").removeprefix("http://")],
                    "labels": {"service": run.name},
                }
                for run in [*payment_stack.order, *back_office]
            ],
        )
        print(f"site up in {time.monotonic() - t0:.1f} s; parts:")
        engine_runs = [e.running() for e in site.engines.values()]
        for run, engine in zip(engine_runs, site.engines, strict=True):
            run.extra["engine"] = engine
        for run in [*site.order, *engine_runs, *payment_stack.order, *back_office]:
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
            topic = cdc.topic_for(name, COUNTED_TABLE)
            print(f"  {name}: {records} records on Kafka topic {topic}")
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
        stop_all(site.order, site.engines)
        signal.signal(signal.SIGTERM, previous)
        print("site stopped")
    return 0
