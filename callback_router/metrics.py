"""Prometheus metrics of the router, on a registry of its own (several apps can share a process).

What an SRE needs to see: what the switch sent and what we answered, where each message went
(delivered, buffered in the outbox, dead), how deep the outbox is, and how long routing took.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RouterMetrics:
    """Every metric the router exports under `/metrics`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.inbound = Counter(
            "phee_router_inbound_requests",
            "FSPIOP requests by resource, method and outcome (HTTP status or FSPIOP error code)",
            ["resource", "method", "outcome"],
            registry=r,
        )
        self.deliveries = Counter(
            "phee_router_deliveries",
            "Messages and instances by engine and outcome "
            "(delivered, started, outboxed, redelivered, retry, dead, failed)",
            ["engine", "outcome"],
            registry=r,
        )
        self.resends = Counter(
            "phee_router_resends",
            "Requests to an engine to send a callback again (duplicate POST, GET /transfers), "
            "by resource and outcome (resent, in-flight, no-engine, unreachable)",
            ["resource", "outcome"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "phee_router_outbox_depth", "Messages accepted but not yet delivered", registry=r
        )
        self.outbox_dead = Gauge(
            "phee_router_outbox_dead", "Messages given up on (reported, kept)", registry=r
        )
        self.routing_seconds = Histogram(
            "phee_router_routing_seconds",
            "Time from a valid request to the message being safe (published or outboxed)",
            ["resource", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.unroutable = Counter(
            "phee_router_unroutable",
            "Valid messages no engine owns (logged, answered, not delivered)",
            ["resource", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "phee_router_duplicate_requests",
            "POSTs seen before under the same id: same content (resend) or modified (3106)",
            ["resource", "kind"],
            registry=r,
        )
        self.error_callbacks = Counter(
            "phee_router_error_callbacks",
            "Error callbacks the router sent to the switch itself, by code and outcome",
            ["code", "outcome"],
            registry=r,
        )
