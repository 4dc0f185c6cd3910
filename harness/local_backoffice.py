"""The back office in the local site: the importer and the operations API as local processes.

`phee site up` starts them beside the engines (SQLite in the site's work directory, the site's
Kafka and OpenSearch) and, after the sample payments, asks the operations API what it holds,
as an operator's tool would: with a service-account API key, over HTTP.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from backoffice.auth.keystore import create_api_key
from backoffice.db import Database
from harness.components import Running
from harness.services import Started, start_service

TENANT = "default"


def start(
    workdir: Path,
    kafka: Running,
    opensearch: Running,
    engines: list[str],
    on_ready: Callable[[Running], None] | None = None,
) -> tuple[list[Running], dict[str, str]]:
    """Start the importer, then the API; returns them and the environment they share (with a
    fresh audit key)."""
    home = workdir / "backoffice"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PHEE_BACKOFFICE_DATABASE_URL": f"sqlite:///{home / 'backoffice.db'}",
        "PHEE_BACKOFFICE_KAFKA_BOOTSTRAP": kafka.endpoint("bootstrap"),
        "PHEE_BACKOFFICE_OPENSEARCH_URL": opensearch.endpoint("http"),
        "PHEE_BACKOFFICE_ENGINES": json.dumps(engines),
        "PHEE_BACKOFFICE_TENANTS": json.dumps([TENANT]),
        "PHEE_BACKOFFICE_AUDIT_KEY": secrets.token_urlsafe(32),
    }
    started = Started(on_ready)
    try:
        started.add(
            start_service(
                "bo-importer", "backoffice", home / "importer", env=env, args=["importer"]
            )
        )
        started.add(start_service("bo-api", "backoffice", home / "api", env=env, args=["api"]))
    except BaseException:
        started.stop_all()
        raise
    return list(started), env


def report(
    api: Running, env: dict[str, str], expected: int, deadline_s: float = 60.0
) -> Counter[str]:
    """Transfers by status as the operations API shows them, once all `expected` are in."""
    db = Database(env["PHEE_BACKOFFICE_DATABASE_URL"])
    try:
        key = create_api_key(db, tenant=TENANT, role="operator", name="phee site up").key
    finally:
        db.close()
    headers = {"X-API-Key": key, "Platform-TenantId": TENANT}
    end = time.monotonic() + deadline_s
    statuses: Counter[str] = Counter()
    with httpx.Client(base_url=api.endpoint("http"), headers=headers, timeout=10) as http:
        while time.monotonic() < end:
            statuses = Counter()
            cursor: str | None = None
            while True:
                params: dict[str, str | int] = {"limit": 500}
                if cursor:
                    params["cursor"] = cursor
                page = http.get("/api/v1/transfers", params=params)
                page.raise_for_status()
                body = page.json()
                statuses.update(t["status"] for t in body["items"])
                cursor = body.get("nextCursor")
                if not cursor:
                    break
            final = sum(n for s, n in statuses.items() if s != "IN_PROGRESS")
            if final >= expected:
                return statuses
            time.sleep(0.5)
    raise TimeoutError(f"the back office holds {dict(statuses)}, expected {expected} final")
