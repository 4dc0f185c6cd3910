"""Structured logs: one JSON object per line, carrying the transactionId where there is one.

Code that works on one payment binds its id (`with payment_context(tx): ...`, or
`bind_transaction` in a request); every record logged meanwhile, in that task or thread, carries
`transactionId`, whichever module logs it. `configure_logging` is called once by each process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from phee.service.settings import ServiceSettings

_TRANSACTION: ContextVar[str | None] = ContextVar("phee_transaction_id", default=None)

#: loggers so chatty on a busy service that their INFO lines cost more than the work they log
_QUIET = ("httpx", "httpcore", "aiokafka", "kafka", "kopf.objects")


def bind_transaction(transaction_id: str | None) -> None:
    """Tag what this task logs from now on with `transaction_id` (None clears it)."""
    _TRANSACTION.set(transaction_id)


def current_transaction() -> str | None:
    return _TRANSACTION.get()


@contextmanager
def payment_context(transaction_id: object) -> Iterator[None]:
    """Tag what is logged inside the block with `transaction_id` (anything but a non-empty
    string, such as a variable a job did not fetch, tags nothing)."""
    token = _TRANSACTION.set(transaction_id if isinstance(transaction_id, str) else None)
    try:
        yield
    finally:
        _TRANSACTION.reset(token)


class _TransactionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "transactionId"):
            tx = _TRANSACTION.get()
            if tx is not None:
                record.transactionId = tx
        return True


def json_formatter() -> logging.Formatter:
    """ts, level, logger, msg, then transactionId and any `extra` fields; exceptions as text."""
    return JsonFormatter(
        ["asctime", "levelname", "name", "message"],
        rename_fields={"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure_logging(settings: ServiceSettings) -> None:
    """Route every logger (uvicorn's, kopf's, ours) to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_TransactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # uvicorn configures its own handlers unless told not to; make its records reach ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
