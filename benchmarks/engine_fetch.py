"""Engine CPU per fetchAndLock by the number of topics asked for (a design question, issue 11).

The payer benchmark's profile of Operaton (docs/benchmarks.md) put 12% of the engine's time in
the fetchAndLock query for the worker's 14 topics, most of it MyBatis building the dynamic SQL
per topic. This measures that cost alone: one engine (PostgreSQL + one node), no task to find,
and blocks of immediate (non-waiting) fetches that ask for all the worker's topics, the payer's
only, or one topic. The blocks are interleaved, so the machine's drift hits every variant alike;
compare the ratios.

    uv run --frozen python benchmarks/engine_fetch.py [--blocks 6] [--fetches 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import payments as bench  # benchmarks/payments.py (this script's folder is on sys.path)
from pydantic import SecretStr

from engine_workers import tasks_payee, tasks_payer
from engine_workers.registration import Tasks
from engine_workers.runtime import Runtime
from engine_workers.settings import EngineSettings
from harness.components.operaton import start_engine
from phee.engine import EngineClient
from phee.engine.client import TopicRequest

PAYER_TOPICS = {
    "fspiop-party-lookup",
    "fspiop-quote",
    "fspiop-transfer",
    "fspiop-transfer-status",
    "fspiop-settle",
    "phee-outcome",
}


def worker_topics(workdir: Path) -> list[TopicRequest]:
    """The topics, lock durations and variables the real worker process asks for."""
    settings = EngineSettings(
        store_url=f"sqlite:///{workdir / 'store.db'}",
        ilp_secret=SecretStr("benchmark-only-secret"),
        router_admin_token=SecretStr("benchmark-only-token"),
    )
    rt = Runtime.from_settings(settings)
    tasks = Tasks(retries=settings.retries)
    tasks_payer.register(tasks, rt)
    tasks_payee.register(tasks, rt)
    variables, locks = tasks.fetch_variables(), tasks.lock_ms()
    asyncio.run(rt.close())
    return [
        TopicRequest(t, locks.get(t, settings.lock_ms), variables.get(t)) for t in tasks.handlers()
    ]


async def block(client: EngineClient, topics: list[TopicRequest], fetches: int) -> None:
    for _ in range(fetches):
        found = await client.fetch_and_lock(
            "bench", topics, max_tasks=8, async_response_timeout_ms=0
        )
        assert found == [], "the benchmark engine has no tasks"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=6, help="blocks per variant")
    parser.add_argument("--fetches", type=int, default=200, help="fetches per block")
    parser.add_argument("--warmup", type=int, default=2000, help="fetches first, not counted")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="phee-bench-") as tmp:
        workdir = Path(tmp)
        every = worker_topics(workdir)
        variants = {
            f"all {len(every)} topics": every,
            f"payer's {len(PAYER_TOPICS)}": [t for t in every if t.topic in PAYER_TOPICS],
            "one topic": [t for t in every if t.topic == "fspiop-quote"],
        }
        engine = start_engine(workdir, "engine-a")
        try:
            node = engine.nodes[0].run
            assert node is not None
            pids = {"operaton": node.pid, "postgresql": engine.postgres.pid}
            client = EngineClient(engine.rest_urls[0], timeout_s=30)

            async def run() -> dict[str, dict[str, float]]:
                spent = {name: dict.fromkeys([*pids, "wall"], 0.0) for name in variants}
                await block(client, every, args.warmup)  # the JIT compiles the fetch path
                for _ in range(args.blocks):
                    for name, topics in variants.items():
                        before = {p: bench.cpu_seconds(pid) for p, pid in pids.items()}
                        t0 = time.monotonic()
                        await block(client, topics, args.fetches)
                        spent[name]["wall"] += time.monotonic() - t0
                        for p, pid in pids.items():
                            spent[name][p] += bench.cpu_seconds(pid) - before[p]
                await client.close()
                return spent

            print(f"machine speed before: {bench.machine_speed():.2f} s per calibration loop")
            spent = asyncio.run(run())
            print(f"machine speed after: {bench.machine_speed():.2f} s per calibration loop")
        finally:
            engine.stop()

    n = args.blocks * args.fetches
    print(f"{n} immediate fetches per variant, no task to find, blocks interleaved")
    base = spent[next(iter(variants))]
    for name, s in spent.items():
        per = {k: v * 1000 / n for k, v in s.items()}
        ratio = (s["operaton"] + s["postgresql"]) / (base["operaton"] + base["postgresql"])
        print(
            f"  {name:<16} Operaton {per['operaton']:.2f} ms, PostgreSQL "
            f"{per['postgresql']:.2f} ms, wall {per['wall']:.2f} ms per fetch; "
            f"CPU {ratio:.2f} x the first"
        )


if __name__ == "__main__":
    main()
