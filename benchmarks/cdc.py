"""Benchmark: change data capture with one Kafka Connect worker and Debezium (decision 0013).

Starts Kafka, PostgreSQL (wal_level=logical) and a Connect worker, makes `--engines` engine
databases with Operaton's history tables, registers one connector per engine, then measures:
- the worker's start time (to REST ready with the Debezium plugin listed) and its RSS idle,
  with the connectors running, and after the load;
- end-to-end latency, commit returned -> record read by a consumer tailing the topic, for
  `--singles` one-row transactions a few milliseconds apart (and Debezium's own share: the
  commit time PostgreSQL reports, `source.ts_ms`, to the event's `ts_ms`);
- records/s for a bulk load: `--bulk` rows in transactions of `--batch`, from the first commit
  to the last record read; and after a crash (SIGKILL) and restart, how many records repeat.

    uv run --frozen python benchmarks/cdc.py [--engines 4] [--singles 200] [--bulk 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from harness.components import Running, get
from harness.components.connect import engine_status, register_engine
from phee import cdc
from phee.kafka import Consumer

SCHEMA = (
    Path(__file__).resolve().parents[1] / "tests" / "resources" / "cdc" / "operaton_history.sql"
)
LOGICAL = {"wal_level": "logical", "max_replication_slots": "20", "max_wal_senders": "20"}
INSERT = (
    "insert into act_hi_procinst (id_, proc_inst_id_, proc_def_id_, start_time_, state_)"
    " values (%s, %s, 'payer:1:x', now(), 'ACTIVE')"
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait(check: Any, what: str, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise SystemExit(f"{what} did not happen within {deadline_s} s")
        time.sleep(0.2)


class Tail:
    """Reads a topic from its start, noting when each row id is first seen, and counts all."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(bootstrap, topics=[topic], max_poll_records=5000)
        self.seen: dict[str, float] = {}
        self.debezium_lag_ms: dict[str, int] = {}
        self.records = 0
        self.count: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.fetch(100)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    self.records += 1
                    key = json.loads(record.key or b"{}")["id_"]
                    value = json.loads(record.value or b"{}")
                    self.count[key] = self.count.get(key, 0) + 1
                    if key not in self.seen:
                        self.seen[key] = now
                        self.debezium_lag_ms[key] = value["ts_ms"] - value["source"]["ts_ms"]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()

    async def until(self, ids: set[str], deadline_s: float = 300) -> None:
        end = time.monotonic() + deadline_s
        while not ids <= self.seen.keys():
            if time.monotonic() > end:
                raise SystemExit(f"{len(ids - self.seen.keys())} rows never arrived")
            await asyncio.sleep(0.01)


async def measure(
    kafka: Running, connect: Running, dbs: dict[str, cdc.EngineDatabase], args: Any
) -> dict[str, Any]:
    engine, db = next(iter(dbs.items()))
    dsn = f"host={db.host} port={db.port} user={db.user} dbname={db.dbname}"
    tail = Tail(kafka.endpoint("bootstrap"), cdc.topic_for(engine, "act_hi_procinst"))
    await tail.start()
    figures: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        # warm up: the first records pay for class loading and producer metadata
        await conn.execute(INSERT, ("warm", "warm"))
        await tail.until({"warm"})
        commits: dict[str, float] = {}
        for i in range(args.singles):
            row = f"single-{i}"
            await conn.execute(INSERT, (row, row))
            commits[row] = time.monotonic()
            await asyncio.sleep(0.02)
        await tail.until(set(commits))
        lat = sorted((tail.seen[r] - t) * 1000 for r, t in commits.items())
        figures["latency_ms"] = {
            "p50": round(statistics.median(lat), 1),
            "p95": round(lat[int(len(lat) * 0.95) - 1], 1),
            "p99": round(lat[int(len(lat) * 0.99) - 1], 1),
            "max": round(lat[-1], 1),
        }
        dbz = sorted(tail.debezium_lag_ms[r] for r in commits)
        figures["commit_to_debezium_ms_p50"] = statistics.median(dbz)

        cpu0, start = cpu_s(connect.pid), time.monotonic()
        ids = [f"bulk-{i}" for i in range(args.bulk)]
        async with conn.cursor() as cur:
            for at in range(0, len(ids), args.batch):
                chunk = ids[at : at + args.batch]
                async with conn.transaction():
                    await cur.executemany(INSERT, [(r, r) for r in chunk])
        committed = time.monotonic() - start
        await tail.until(set(ids))
        took = time.monotonic() - start
        figures["bulk"] = {
            "rows": args.bulk,
            "batch": args.batch,
            "insert_s": round(committed, 2),
            "to_last_record_s": round(took, 2),
            "records_per_s": round(args.bulk / took),
            "connect_cpu_ms_per_record": round((cpu_s(connect.pid) - cpu0) * 1000 / args.bulk, 3),
        }
    await tail.stop()
    return figures


async def repeats_after_crash(
    kafka: Running, connect: Running, db: cdc.EngineDatabase, engine: str, restart: Any
) -> tuple[Running, dict[str, Any]]:
    """Load rows, SIGKILL the worker while it streams them, restart it; count the repeats."""
    dsn = f"host={db.host} port={db.port} user={db.user} dbname={db.dbname}"
    tail = Tail(kafka.endpoint("bootstrap"), cdc.topic_for(engine, "act_hi_procinst"))
    await tail.start()
    ids = [f"crash-{i}" for i in range(5000)]
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        for at in range(0, len(ids), 500):
            async with conn.transaction():
                await cur.executemany(INSERT, [(r, r) for r in ids[at : at + 500]])
    while sum(1 for r in ids if r in tail.seen) < 1000:
        await asyncio.sleep(0.005)
    os.kill(connect.pid, signal.SIGKILL)
    get("kafka-connect").stop(connect)
    arrived_before_crash = sum(1 for r in ids if r in tail.seen)
    start = time.monotonic()
    connect = await asyncio.to_thread(restart)
    await tail.until(set(ids))
    figures = {
        "rows": len(ids),
        "seen_before_kill": arrived_before_crash,
        "restart_to_all_rows_s": round(time.monotonic() - start, 1),
    }
    await asyncio.sleep(3)  # anything still coming
    await tail.stop()
    figures["repeated_records"] = sum(tail.count[r] for r in ids) - len(ids)
    return connect, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--bulk", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="phee-bench-cdc-"))
    kafka_c, pg_c, kc_c = get("kafka"), get("postgresql"), get("kafka-connect")
    for c in (kafka_c, pg_c, kc_c):
        c.fetch()
    started: list[tuple[Any, Running]] = []
    try:
        kafka = kafka_c.start(workdir)
        started.append((kafka_c, kafka))
        pg = pg_c.start(workdir, settings=LOGICAL)
        started.append((pg_c, pg))
        group = "bench-cdc"
        connect = kc_c.start(workdir / "c1", bootstrap=kafka.endpoint("bootstrap"), group_id=group)
        started.append((kc_c, connect))
        print(f"connect ready in {connect.ready_s} s, RSS idle {rss_mb(connect.pid):.0f} MB")
        port = pg.ports["sql"]
        dbs: dict[str, cdc.EngineDatabase] = {}
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True) as admin:
            for i in range(args.engines):
                engine = f"engine-{chr(ord('a') + i)}"
                name = engine.replace("-", "_")
                admin.execute(f"create database {name}")
                db = cdc.EngineDatabase("127.0.0.1", port, name, "postgres")
                with psycopg.connect(
                    f"host=127.0.0.1 port={port} user=postgres dbname={name}", autocommit=True
                ) as conn:
                    conn.execute(SCHEMA.read_text())
                dbs[engine] = db
        t0 = time.monotonic()
        for engine, db in dbs.items():
            register_engine(connect, engine, db)
        for engine in dbs:
            wait(
                lambda e=engine: (s := engine_status(connect, e)) is not None and s.running,
                f"{engine} running",
            )
        print(f"{args.engines} connectors running {time.monotonic() - t0:.1f} s after registration")
        time.sleep(5)  # let the snapshots finish and the heap settle before reading RSS
        print(f"connect RSS with {args.engines} connectors {rss_mb(connect.pid):.0f} MB")
        figures = asyncio.run(measure(kafka, connect, dbs, args))
        print(f"connect RSS after the load {rss_mb(connect.pid):.0f} MB")
        print(json.dumps(figures, indent=2))
        engine, db = next(iter(dbs.items()))
        restarts = iter(range(2, 100))

        def restart() -> Running:
            run = kc_c.start(
                workdir / f"c{next(restarts)}",
                bootstrap=kafka.endpoint("bootstrap"),
                group_id=group,
            )
            started.append((kc_c, run))
            return run

        started.remove((kc_c, connect))
        connect, crash = asyncio.run(repeats_after_crash(kafka, connect, db, engine, restart))
        print("crash:", json.dumps(crash))
    finally:
        for comp, run in reversed(started):
            comp.stop(run)


if __name__ == "__main__":
    main()
