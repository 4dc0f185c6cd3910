"""Prometheus metrics of one switch instance (own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class SwitchMetrics:
    """Requests received, callbacks sent and transfers finished."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "phee_switch_requests",
            "FSPIOP requests received (outcome: accepted or the sync error code)",
            ["resource", "method", "outcome"],
            registry=self.registry,
        )
        self.callbacks = Counter(
            "phee_switch_callbacks",
            "Messages the switch sent (outcome: sent, failed, dropped by a fault, internal)",
            ["resource", "method", "outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "phee_switch_delivery_seconds",
            "Time to deliver one message over HTTP, retries included",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.faults = Counter(
            "phee_switch_faults", "Injected faults applied", ["action"], registry=self.registry
        )
        self.transfers = Counter(
            "phee_switch_transfers",
            "Transfers that reached a final state",
            ["state", "reason"],
            registry=self.registry,
        )
