"""Prometheus scrapes a prometheus-client endpoint served here; the query API returns the sample."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from harness.components import Running
from harness.components.base import free_port
from harness.components.prometheus import set_targets
from tests.support import poll


def _query(base: str, expr: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        body = json.loads(resp.read())
    assert body["status"] == "success"
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_and_answers_queries(prometheus: Running) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("phee_smoke_value", "A value set by the smoke test", registry=registry)
    gauge.set(42.5)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        set_targets(prometheus, [f"127.0.0.1:{port}"], {"suite": "smoke"})
        base = prometheus.endpoint("http")
        # The first scrape lands some seconds after the target appears: poll, do not sleep.
        result = poll(
            lambda: _query(base, 'phee_smoke_value{suite="smoke"}') or None,
            what="the scraped sample",
            deadline_s=45,
            interval_s=0.5,
        )
        value = result[0]["value"]
        assert isinstance(value, list)
        assert float(value[1]) == 42.5
        up = _query(base, f'up{{instance="127.0.0.1:{port}"}}')
        assert float(up[0]["value"][1]) == 1.0  # type: ignore[index]
    finally:
        server.shutdown()
        thread.join(timeout=5)
