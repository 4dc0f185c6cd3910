"""CPU per payment in the reference AMS: one block and one book, over SQLite, in this process.

In the whole-stack benchmark (payments.py) the AMS spends its CPU on two calls per payment,
block then book. This measures that cost alone, with nothing else on the machine counted:
CPU time of this process (time.process_time: every thread, user and system) per block+book
pair, so other load on the machine changes the wall time but hardly the figure.

Two layers, measured in interleaved blocks so drift hits both alike:
- `ledger`: `Ledger.block` then `Ledger.book`, called directly over a temp SQLite file;
- `app`: the FastAPI app (`create_app`) called as uvicorn calls it (an ASGI scope and one body
  message; no HTTP client, no HTTP parsing), with JSON logs at INFO to a discarded stream as
  the service has them: the same work plus validation, routing, the thread pool, the metrics
  and the log lines.

    uv run --frozen python benchmarks/ams_ops.py [--payments 2000] [--blocks 4] [--payers 20]

To measure another commit's AMS with this same script, put that commit's tree first on the path:

    git archive <commit> | tar -x -C /tmp/ams-old
    PYTHONPATH=/tmp/ams-old uv run --frozen python benchmarks/ams_ops.py

The figure moves with other load on the machine (shared caches, clock); compare runs made
alternately, and the `min` column (the quietest block) before the median.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message

from doubles.reference_ams.app import create_app
from doubles.reference_ams.db import make_engine
from doubles.reference_ams.ledger import Ledger
from doubles.reference_ams.model import Party
from doubles.reference_ams.settings import AmsSettings
from phee.service import ServiceSettings, configure_logging

CURRENCY = "USD"
AMOUNT = "1.23"


def payers(count: int) -> list[Party]:
    return [Party("MSISDN", f"2567{n:08d}") for n in range(count)]


def open_books(path: Path, parties: list[Party]) -> Ledger:
    ledger = Ledger(make_engine(f"sqlite:///{path}"))
    ledger.create_schema()
    for party in parties:
        ledger.open_account(party, CURRENCY, f"payer {party.identifier}", "1000000000")
    return ledger


class _Discard(io.StringIO):
    def write(self, s: str) -> int:
        return len(s)


def quiet_json_logs() -> None:
    """The service's logging (`configure_logging`: JSON lines at INFO) into a stream nobody
    reads: the lines are still formatted and written, as in the service."""
    real, sys.stderr = sys.stderr, _Discard()
    try:
        configure_logging(ServiceSettings(log_level="INFO", log_format="json"))
    finally:
        sys.stderr = real


def ledger_block(ledger: Ledger, parties: list[Party]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for i in range(n):
            tx = str(uuid.uuid4())
            ledger.block(tx, parties[i % len(parties)], AMOUNT, CURRENCY)
            ledger.book(tx)

    return run


def asgi_call(app: ASGIApp, path: str, body: bytes) -> Callable[[], Awaitable[int]]:
    """A POST as uvicorn hands it to the app (a scope, one body message); returns the status."""
    headers = [(b"host", b"ams"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 40000),
        "state": {},
    }

    async def call() -> int:
        status = 0

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        await app(dict(scope), receive, send)
        return status

    return call


def app_block(ledger: Ledger, parties: list[Party]) -> Callable[[int], None]:
    """Requests straight into the ASGI app, as uvicorn passes them (no HTTP client counted)."""
    app = create_app(AmsSettings(create_schema=False), ledger=ledger)
    loop = asyncio.new_event_loop()

    async def payments(n: int) -> None:
        for i in range(n):
            tx = str(uuid.uuid4())
            party = parties[i % len(parties)]
            body = {
                "payer": {"partyIdType": party.id_type, "partyIdentifier": party.identifier},
                "amount": {"amount": AMOUNT, "currency": CURRENCY},
            }
            blocked = await asgi_call(app, f"/transfers/{tx}/block", json.dumps(body).encode())()
            booked = await asgi_call(app, f"/transfers/{tx}/book", b"")()
            if blocked != 200 or booked != 200:
                raise RuntimeError(f"AMS refused {tx}: block {blocked}, book {booked}")

    def run(n: int) -> None:
        loop.run_until_complete(payments(n))

    return run


def measure(run: Callable[[int], None], n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per payment for `n` payments."""
    cpu, wall = time.process_time(), time.perf_counter()
    run(n)
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--payments", type=int, default=2000, help="payments per layer, counted")
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks per layer")
    parser.add_argument("--warmup", type=int, default=200, help="payments per layer first")
    parser.add_argument("--payers", type=int, default=20, help="payer accounts to spread over")
    args = parser.parse_args()

    quiet_json_logs()
    parties = payers(args.payers)
    with tempfile.TemporaryDirectory(prefix="phee-bench-ams-") as tmp:
        ledgers = {
            "ledger": open_books(Path(tmp) / "ledger.db", parties),
            "app": open_books(Path(tmp) / "app.db", parties),
        }
        runs = {
            "ledger": ledger_block(ledgers["ledger"], parties),
            "app": app_block(ledgers["app"], parties),
        }
        print(f"warming up: {args.warmup} payments per layer", flush=True)
        for run in runs.values():
            run(args.warmup)
        per_block = max(1, args.payments // args.blocks)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for b in range(args.blocks):
            for name, run in runs.items():
                figures[name].append(measure(run, per_block))
            print(f"block {b + 1}/{args.blocks} done", flush=True)
        for name, ledger in ledgers.items():
            check = ledger.check()
            if not check["balanced"]:
                raise RuntimeError(f"{name}: the books do not balance: {check['problems']}")
            ledger.engine.dispose()

    print(f"\n{per_block * args.blocks} payments (block + book) per layer, SQLite, one process")
    print(f"{'layer':8} {'CPU ms/payment':>15} {'min':>7} {'max':>7} {'wall ms/payment':>16}")
    for name, rows in figures.items():
        cpus = [cpu for cpu, _ in rows]
        walls = [wall for _, wall in rows]
        print(
            f"{name:8} {statistics.median(cpus):15.3f} {min(cpus):7.3f} {max(cpus):7.3f}"
            f" {statistics.median(walls):16.3f}"
        )


if __name__ == "__main__":
    main()
