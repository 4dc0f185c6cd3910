"""Benchmark: seconds from nothing to Zeebe + Kafka + OpenSearch all ready (warm cache).

Kafka and OpenSearch start side by side; Zeebe starts as soon as Kafka is ready (its exporter
needs Kafka's address). Prints each component's own readiness time and the wall time until all
three are ready, per round, then the median. Usage:

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


def _kafka_then_zeebe(workdir: Path) -> list[Running]:
    kafka = get("kafka").start(workdir)
    zeebe = get("zeebe").start(workdir, engine="bench", kafka_bootstrap=kafka.endpoint("bootstrap"))
    return [kafka, zeebe]


def one_round(workdir: Path) -> tuple[float, list[Running]]:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        chain = pool.submit(_kafka_then_zeebe, workdir)
        search = pool.submit(get("opensearch").start, workdir)
        runs = [*chain.result(), search.result()]
    return time.monotonic() - start, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for name in ("kafka", "zeebe", "opensearch"):
        get(name).fetch()
    cores = os.cpu_count() or 0
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    walls = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="phee-bench-") as tmp:
            wall, runs = one_round(Path(tmp))
            try:
                parts = ", ".join(f"{r.name} {r.version} {r.ready_s:.1f} s" for r in runs)
                print(f"round {i + 1}: all three ready in {wall:.1f} s ({parts})")
                walls.append(wall)
            finally:
                for run in reversed(runs):
                    get(run.name).stop(run)
    print(f"median over {len(walls)} rounds: {statistics.median(walls):.1f} s (goal: 60 s)")


if __name__ == "__main__":
    main()
