"""Benchmark: completed payer payments per second and end-to-end latency on one engine.

The whole stack runs on this machine as real processes: one Operaton engine (its PostgreSQL and
its node), the engine's workers and channel API, the callback router, the reference AMS and the
switch double. Payments are offered at a fixed rate (open loop, so a slow system cannot slow the
offered load down) for a fixed time; only payments that end COMMITTED count. Latency is the
engine's own record: from the channel request to the recorded final state. Where the time goes
is shown as CPU seconds per payment for each process, read from /proc before and after the run.

    uv run python benchmarks/payments.py --rate 20 --duration 30 [--workers 2] [--max-open 12]

A warm-up (300 payments by default, at the offered rate up to 15/s) is sent and not counted, so
the figure is the steady state rather than the JVMs compiling their hot paths. Operaton's JIT
compiler needs minutes of load to settle (about 3,000 payments at 9/s on 2 cores); with
`--jit-settle MAX_S` the warm-up goes on until the engine's compiler threads are nearly idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from harness import stack
from harness.components import Running
from harness.components.operaton import ENGINE_DB, start_engine
from phee.httpclient import async_client

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its live children and its reaped children.

    PostgreSQL's backends are children of the postmaster: counting only the reaped ones
    would miss every pooled connection that lives through the run.
    """
    fields = _stat(pid)
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    total = utime + stime + cutime + cstime
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            cf = _stat(int(child.name))
        except OSError:
            continue
        if int(cf[1]) == pid:
            total += int(cf[11]) + int(cf[12])
    return total / TICKS


#: pg_stat_statements in the engine's PostgreSQL (`--statements`)
STATEMENTS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_planning": "on",
}
TOP_STATEMENTS = """select calls, total_exec_time, total_plan_time,
                          left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
                   from pg_stat_statements
                   where dbid = (select oid from pg_database where datname = %s)
                   order by total_exec_time + total_plan_time desc limit %s"""


def _sql(port: int, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in the engine's database; its rows (if it returns any)."""
    conninfo = f"host=127.0.0.1 port={port} user=postgres dbname={ENGINE_DB}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def machine_speed() -> float:
    """CPU seconds of a fixed pure-Python loop: this shared machine's speed drifts by a third
    from hour to hour, so every run prints it (compare runs by it, not by the clock)."""
    t0 = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.process_time() - t0


async def offer(channel: str, rate: float, duration: float) -> tuple[list[str], int]:
    """Send payments at `rate` per second for `duration` seconds; return accepted ids, refusals."""
    accepted: list[str] = []
    refused = 0
    # The load generator shares the two cores: it sends over aiohttp, as the services do.
    async with async_client(base_url=channel, timeout=30, max_connections=200) as http:

        async def one(i: int) -> None:
            nonlocal refused
            body = stack.transfer_request(
                stack.payer_party(i % 50), stack.payee_party((i + 1) % 50), f"{1 + i % 9}.25"
            )
            resp = await http.post(
                "/channel/transfer", json=body, headers={"Platform-TenantId": stack.TENANT}
            )
            if resp.status_code == 202:
                accepted.append(str(resp.json()["transactionId"]))
            else:
                refused += 1

        tasks = []
        start = time.monotonic()
        total = int(rate * duration)
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load, not synchronisation
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return accepted, refused


async def outcomes(channel: str, ids: list[str], deadline_s: float) -> dict[str, dict[str, str]]:
    """Poll each payment's status until final (after the load, so polling does not load the run)."""
    final: dict[str, dict[str, str]] = {}
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient(base_url=channel, timeout=30) as http:
        while len(final) < len(ids) and time.monotonic() < end:
            for tx in [t for t in ids if t not in final]:
                resp = await http.get(
                    f"/channel/transfer/{tx}", headers={"Platform-TenantId": stack.TENANT}
                )
                body = resp.json()
                if body.get("final"):
                    final[tx] = body
            if len(final) < len(ids):
                await asyncio.sleep(1)
    return final


def jit_seconds(pid: int) -> float:
    """CPU seconds the JVM `pid`'s JIT compiler threads have used so far (from /proc).

    Not `jstat -compiler`: its Time is the compilations' elapsed time, which on a busy machine
    counts the time they waited for a core."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        if "CompilerThre" in comm:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def settle_jit(channel: str, rate: float, pids: list[int], max_s: float) -> list[str]:
    """Keep offering warm-up payments in 15 s rounds until the engine nodes' JIT compilers
    use under 0.5 s of CPU per round (about 3% of a core), or `max_s` has passed."""
    sent: list[str] = []
    deadline = time.monotonic() + max_s
    while True:
        before = sum(jit_seconds(pid) for pid in pids)
        ids, _ = asyncio.run(offer(channel, rate, 15.0))
        sent += ids
        compiling = sum(jit_seconds(pid) for pid in pids) - before
        print(
            f"  JIT compiler threads: {compiling:.1f} s of CPU in the last 15 s of warm-up",
            flush=True,
        )
        if compiling < 0.5:
            print(f"JIT settled after {len(sent)} more warm-up payments")
            return sent
        if time.monotonic() > deadline:
            print(f"JIT still compiling after {max_s:.0f} s: measuring anyway")
            return sent


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="payments offered per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of offered load")
    parser.add_argument(
        "--warmup",
        type=int,
        default=300,
        help="payments sent first and not counted: the JVMs compile their hot paths meanwhile",
    )
    parser.add_argument(
        "--warmup-rate",
        type=float,
        default=None,
        help="payments/s of the warm-up (default: three quarters of --rate, at most 15): the "
        "warm-up warms the JIT; a warm-up at or past capacity would start the measured run "
        "behind a backlog",
    )
    parser.add_argument(
        "--jit-settle",
        type=float,
        default=0.0,
        metavar="MAX_S",
        help="after --warmup, keep warming up (at the warm-up rate, in 15 s rounds) until the "
        "engine's JIT compiler is nearly idle, for at most MAX_S seconds (0: do not wait). "
        "Operaton's JIT takes minutes of load to settle; a production engine is warm",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes on the engine")
    parser.add_argument("--nodes", type=int, default=1, help="engine nodes over its database")
    parser.add_argument(
        "--max-open",
        type=int,
        default=0,
        help="the workers' PHEE_ENGINE_MAX_OPEN_PAYMENTS: the channel refuses (503) new "
        "payments while this many are open (0: no limit); refusals are counted, not retried",
    )
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        metavar="N",
        help="also print the engine database's N costliest statements of the measured window "
        "(pg_stat_statements, reset when the window starts: a warm engine's plans and stats, "
        "not the first minute's before autovacuum has analysed anything)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="phee-bench-") as tmp:
        workdir = Path(tmp)
        engine = start_engine(
            workdir, "engine-a", args.nodes, pg_settings=STATEMENTS if args.statements else None
        )
        payments = None
        try:
            payments = stack.start(
                workdir,
                {"engine-a": engine},
                workers_per_engine=args.workers,
                payers=50,
                payees=50,
                extra_engine_env={"PHEE_ENGINE_MAX_OPEN_PAYMENTS": str(args.max_open)},
            )
            channel = payments.channel("engine-a")
            procs: list[Running] = [
                engine.postgres,
                *(node.run for node in engine.nodes if node.run is not None),
                *payments.order,
            ]
            warm_rate = args.warmup_rate or min(15.0, 0.75 * args.rate)
            print(f"machine speed before: {machine_speed():.2f} s per calibration loop")
            warm, _ = asyncio.run(offer(channel, warm_rate, args.warmup / warm_rate))
            if args.jit_settle > 0:
                nodes = [node.run.pid for node in engine.nodes if node.run is not None]
                warm += settle_jit(channel, warm_rate, nodes, args.jit_settle)
            asyncio.run(outcomes(channel, warm, 180))

            if args.statements:
                _sql(engine.sql_port, "create extension if not exists pg_stat_statements")
                _sql(engine.sql_port, "select pg_stat_statements_reset()")
            cpu_before = {r.name: cpu_seconds(r.pid) for r in procs}
            t0 = time.time()
            ids, refused = asyncio.run(offer(channel, args.rate, args.duration))
            final = asyncio.run(outcomes(channel, ids, 180))
            cpu = {r.name: cpu_seconds(r.pid) - cpu_before[r.name] for r in procs}
            costliest = (
                _sql(engine.sql_port, TOP_STATEMENTS, (ENGINE_DB, args.statements))
                if args.statements
                else []
            )
        finally:
            if payments is not None:
                payments.stop()
            engine.stop()

    print(f"machine speed after: {machine_speed():.2f} s per calibration loop")
    committed = [f for f in final.values() if f["status"] == "COMMITTED"]
    latencies = sorted(_ts(f["updatedAt"]) - _ts(f["createdAt"]) for f in committed)
    window = max(_ts(f["updatedAt"]) for f in committed) - t0 if committed else float("nan")
    offered = int(args.rate * args.duration)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"offered {offered} payments at {args.rate:.0f}/s for {args.duration:.0f} s; "
        f"accepted {len(ids)}, refused {refused} (limit of open payments: "
        f"{args.max_open or 'none'})"
    )
    others = {s: sum(1 for f in final.values() if f["status"] == s) for s in ("ABORTED", "FAILED")}
    print(
        f"final: {len(committed)} COMMITTED, {others['ABORTED']} ABORTED, "
        f"{others['FAILED']} FAILED, "
        f"{len(ids) - len(final)} not final"
    )
    reasons: dict[str, int] = {}
    for f in final.values():
        if f["status"] != "COMMITTED":
            reasons[str(f.get("reason"))[:120]] = reasons.get(str(f.get("reason"))[:120], 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {n} not committed: {reason}")
    if latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(f"completed payments/s: {len(committed) / window:.1f} (over {window:.1f} s)")
        print(
            f"latency: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
        )
    n = max(len(committed), 1)
    per_payment = sum(cpu.values()) * 1000 / n
    print("CPU per completed payment (where the time goes):")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<18} {seconds * 1000 / n:7.1f} ms  ({seconds:6.1f} s total)")
    print(
        f"  {'all':<18} {per_payment:7.1f} ms  "
        f"(so 2 cores bound us near {2000 / max(per_payment, 1e-9):.0f} payments/s)"
    )
    if costliest:
        print("engine database, costliest statements of the window (per completed payment):")
        print("  calls  exec ms  plan ms  statement")
        for calls, exec_ms, plan_ms, text in costliest:
            print(f"  {calls / n:5.2f} {exec_ms / n:8.2f} {plan_ms / n:8.2f}  {text}")


if __name__ == "__main__":
    main()
