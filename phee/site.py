"""`phee site up`: the local multi-engine site as real processes on this machine.

First version (foundation): one Kafka, N Zeebe engines each exporting to its own topic,
Elasticsearch for the back office, and Prometheus scraping every engine. Before reporting the
site up it proves each engine works: instances run through a pyzeebe worker, their records
arrive on that engine's topic, and Prometheus sees the engine. Later issues add the router,
workers, back office, reference AMS and switch double here.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from phee.components import Running, get
from phee.components.base import http_json
from phee.components.prometheus import set_target_groups
from phee.components.zeebe import topic_for
from phee.engine_smoke import exported_records, instance_completed, run_instances


@dataclass
class Site:
    """The running parts of a local site, in start order."""

    kafka: Running
    engines: dict[str, Running]
    elasticsearch: Running
    prometheus: Running
    order: list[Running] = field(default_factory=list)


def start(workdir: Path, engine_names: list[str]) -> Site:
    """Start Kafka, then the engines, Elasticsearch and Prometheus side by side.

    Whatever started is stopped again if any part fails, so a failed `up` leaves nothing behind.
    """
    started: list[Running] = []
    try:
        # Every component makes its own subdirectory (Zeebe's is named after the engine).
        kafka = get("kafka").start(workdir)
        started.append(kafka)
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
            es_future = pool.submit(get("elasticsearch").start, workdir)
            prom_future = pool.submit(get("prometheus").start, workdir)
            futures = [*engine_futures.values(), es_future, prom_future]
            errors = []
            for future in futures:
                try:
                    started.append(future.result())
                except Exception as err:  # noqa: BLE001 - collected, the first is re-raised
                    errors.append(err)
            if errors:
                raise errors[0]
        engines = {name: f.result() for name, f in engine_futures.items()}
        site = Site(kafka, engines, es_future.result(), prom_future.result(), started)
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


async def self_check(site: Site, instances: int) -> dict[str, dict[str, float]]:
    """Run instances on every engine and check their export; returns figures per engine."""
    report: dict[str, dict[str, float]] = {}
    for name, engine in site.engines.items():
        start = time.monotonic()
        done = await run_instances(engine.endpoint("gateway"), instances)
        ran_s = time.monotonic() - start
        last = done[-1].process_instance_key
        records = await exported_records(
            site.kafka.endpoint("bootstrap"), topic_for(name), instance_completed(last)
        )
        keys = {c.process_instance_key for c in done}
        exported = {r["value"].get("processInstanceKey") for r in records} & keys
        if exported != keys:
            raise RuntimeError(f"{name}: instances {sorted(keys - exported)} were not exported")
        report[name] = {"instances": len(done), "seconds": ran_s, "records": len(records)}
    return report


def prometheus_sees(site: Site, deadline_s: float = 60.0) -> dict[str, float]:
    """Poll Prometheus until every engine's `up` is 1; return `up` per engine."""
    url = f"{site.prometheus.endpoint('http')}/api/v1/query?query=up"
    end = time.monotonic() + deadline_s
    ups: dict[str, float] = {}
    while time.monotonic() < end:
        result = http_json(url)["data"]["result"]
        ups = {r["metric"].get("engine", "?"): float(r["value"][1]) for r in result}
        if all(ups.get(name) == 1.0 for name in site.engines):
            return ups
        time.sleep(0.5)
    raise RuntimeError(f"Prometheus did not see every engine up within {deadline_s} s: {ups}")


def up(workdir: Path, engines: int, instances: int, duration_s: float | None) -> int:
    """Start the site, prove it, print where everything is, run until Ctrl-C/SIGTERM or duration."""
    names = [f"engine-{chr(ord('a') + i)}" for i in range(engines)]
    for name in ("kafka", "zeebe", "elasticsearch", "prometheus"):
        get(name).fetch()
    stop_event = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    t0 = time.monotonic()
    site = start(workdir, names)
    try:
        print(f"site up in {time.monotonic() - t0:.1f} s; parts:")
        for run in site.order:
            ends = " ".join(f"{k}={v}" for k, v in sorted(run.endpoints.items()))
            label = run.extra.get("engine", run.name)
            print(f"  {label:<14} {run.name} {run.version:<22} pid {run.pid:<7} {ends}")
        report = asyncio.run(self_check(site, instances))
        for name, fig in report.items():
            print(
                f"  {name}: {fig['instances']:.0f} instances completed in {fig['seconds']:.1f} s, "
                f"{fig['records']:.0f} records on Kafka topic {topic_for(name)}"
            )
        ups = prometheus_sees(site)
        print("  prometheus: " + ", ".join(f"{k} up={v:.0f}" for k, v in sorted(ups.items())))
        if duration_s is None:
            print("site is running; Ctrl-C stops it")
        stop_event.wait(timeout=duration_s)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the site ...")
        stop_all(site.order)
        signal.signal(signal.SIGTERM, previous)
        print("site stopped")
    return 0
