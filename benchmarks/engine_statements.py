"""SQL statements per payment in an engine's PostgreSQL, by statement (pg_stat_statements).

Runs the whole payer stack on one engine, offers payments at `--rate` for `--duration` seconds,
waits for them to end, then prints, for the engine's database and the payment store, the
statements per payment and the most frequent statements with their total execution time, and
the slowest ones in full. Usage:

    uv run --frozen python benchmarks/engine_statements.py --rate 8 --duration 40
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import payments as bench  # benchmarks/payments.py (this script's folder is on sys.path)
import psycopg

from harness import stack
from harness.components.operaton import ENGINE_DB, PAYMENTS_DB, start_engine

STATEMENTS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
TOP = """select calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3),
                left(regexp_replace(query, '\\s+', ' ', 'g'), %s)
         from pg_stat_statements
         where dbid = (select oid from pg_database where datname = %s)
         order by {order} desc limit %s"""


def report(port: int, database: str, payments: int, top: int) -> None:
    conninfo = f"host=127.0.0.1 port={port} user=postgres dbname={database}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
        calls, total = conn.execute(
            "select sum(calls), round(sum(total_exec_time)::numeric) from pg_stat_statements "
            "where dbid = (select oid from pg_database where datname = %s)",
            (database,),
        ).fetchone() or (0, 0)
        print(f"== {database}: {calls / payments:.1f} statements per payment, {total} ms executing")
        print("  per payment   total ms    mean ms  statement")
        for n, t, mean, text in conn.execute(TOP.format(order="calls"), (110, database, top)):
            print(f"  {n / payments:11.2f} {t:10} {mean:10}  {text}")
        print("  slowest in all (total execution time):")
        for n, t, mean, text in conn.execute(
            TOP.format(order="total_exec_time"), (400, database, 5)
        ):
            print(f"  {n / payments:11.2f} {t:10} {mean:10}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=8.0, help="payments offered per second")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of offered load")
    parser.add_argument("--top", type=int, default=25, help="statements listed per database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phee-statements-") as tmp:
        workdir = Path(tmp)
        engine = start_engine(workdir, "engine-a", pg_settings=STATEMENTS)
        running = None
        try:
            running = stack.start(
                workdir, {"engine-a": engine}, workers_per_engine=1, payers=50, payees=50
            )
            channel = running.channel("engine-a")
            ids, refused = asyncio.run(bench.offer(channel, args.rate, args.duration))
            final = asyncio.run(bench.outcomes(channel, ids, 180))
            print(f"{len(ids)} payments accepted, {refused} refused, {len(final)} final")
            for database in (ENGINE_DB, PAYMENTS_DB):
                report(engine.sql_port, database, max(len(ids), 1), args.top)
        finally:
            if running is not None:
                running.stop()
            engine.stop()


if __name__ == "__main__":
    main()
