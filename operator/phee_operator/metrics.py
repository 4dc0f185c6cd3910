"""Prometheus metrics of the operator (served on `PHEE_OPERATOR_METRICS_PORT`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "phee_operator_reconciles_total", "Reconciles by object kind and outcome", ["kind", "outcome"]
)
RECONCILE_SECONDS = Histogram(
    "phee_operator_reconcile_seconds",
    "Time one reconcile took",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LEADER = Gauge("phee_operator_leader", "1 while this replica holds the leader lease")


@contextlib.contextmanager
def observe(kind: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        raise
    else:
        RECONCILES.labels(kind, "ok").inc()
    finally:
        RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - start)
