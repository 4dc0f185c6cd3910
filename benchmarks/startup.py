"""Benchmark: seconds from nothing to an engine + Kafka + Kafka Connect + OpenSearch all ready.

With a warm cache. The engine (PostgreSQL, then one Operaton node) and OpenSearch start side by
side with Kafka; Kafka Connect starts as soon as Kafka is ready (it keeps its state in Kafka).
Prints each part's own readiness time and the wall time until all are ready, per round, then
the median. Usage:

    uv run python benchmarks/startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.components import Running, get
from harness.components.operaton import RunningEngine, start_engine

PARTS = ("kafka", "kafka-connect", "postgresql", "operaton", "opensearch")


def _kafka_then_connect(workdir: Path) -> list[Running]:
    kafka = get("kafka").start(workdir)
    try:
        connect = get("kafka-connect").start(workdir, bootstrap=kafka.endpoint("bootstrap"))
    except BaseException:
        get("kafka").stop(kafka)
        raise
    return [kafka, connect]


def one_round(workdir: Path) -> tuple[float, list[Running], RunningEngine]:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        chain = pool.submit(_kafka_then_connect, workdir)
        engine = pool.submit(start_engine, workdir, "bench")
        search = pool.submit(get("opensearch").start, workdir)
        runs = [*chain.result(), search.result()]
        started = engine.result()
    return time.monotonic() - start, runs, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name in PARTS:
        get(name).fetch()
    cores = os.cpu_count() or 0
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    walls = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="phee-bench-") as tmp:
            wall, runs, engine = one_round(Path(tmp))
            try:
                parts = ", ".join(f"{r.name} {r.version} {r.ready_s:.1f} s" for r in runs)
                print(
                    f"round {i + 1}: all ready in {wall:.1f} s ({parts}, "
                    f"engine {engine.ready_s[0]:.1f} s)"
                )
                walls.append(wall)
            finally:
                engine.stop()
                for run in reversed(runs):
                    get(run.name).stop(run)
    print(f"median over {len(walls)} rounds: {statistics.median(walls):.1f} s (goal: 60 s)")


if __name__ == "__main__":
    main()
