"""The operations API end to end: a real JWKS over HTTP, the app under uvicorn, real SQLite,
PostgreSQL and MariaDB databases with two tenants seeded row by row, and every endpoint checked
for tenant isolation and authentication."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from backoffice import schema
from backoffice.api.routes import create_app
from backoffice.auth.keystore import create_api_key, revoke_api_key
from backoffice.db import Database
from backoffice.settings import BackofficeSettings
from phee.sql import SqlOptions, make_engine
from tests.support import poll

ISSUER = "https://idp.phee.test/realms/ops"
AUDIENCE = "phee-operations"
KID = "ops-signing-1"
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
TENANT = "Platform-TenantId"


# -- the identity provider: a JWKS served over HTTP -----------------------------------------


@dataclass
class Idp:
    url: str
    key: rsa.RSAPrivateKey
    requests: list[str] = field(default_factory=list)

    def token(
        self,
        *,
        tenant: str = "tenant-a",
        roles: list[str] | None = None,
        sub: str = "alice",
        expires_in: int = 300,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        now = int(time.time())
        body = {
            "sub": sub,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + expires_in,
            "tenant": tenant,
            "roles": ["auditor"] if roles is None else roles,
        }
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": KID, "use": "sig"}
    body = json.dumps({"keys": [jwk]}).encode()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path != "/jwks.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is for failures."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Idp(f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- the database: two tenants seeded directly -----------------------------------------------


def transfer(engine: str, key: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "engine": engine,
        "process_instance_key": str(key),
        "bpmn_process_id": "phee-payer-transfer",
        "direction": "PAYER",
        "transaction_id": None,
        "quote_id": None,
        "transfer_id": None,
        "correlation_id": None,
        "status": "COMMITTED",
        "outcome": None,
        "reason": None,
        "recorded_reason": None,
        "end_state": None,
        "open_incidents": "",
        "error_code": None,
        "error_message": None,
        "payer_id_type": "MSISDN",
        "payer_id": None,
        "payer_dfsp": None,
        "payee_id_type": "MSISDN",
        "payee_id": None,
        "payee_dfsp": None,
        "amount": None,
        "currency": "TZS",
        "started_at": None,
        "completed_at": None,
        "updated_at": T0 + timedelta(days=1),
    }
    row.update(values)
    return row


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


A_TRANSFERS = [
    transfer(
        "engine-a", 101, transaction_id="tx-a1", correlation_id="corr-1", payer_id="255701",
        payer_dfsp="dfsp-a", payee_id="255702", payee_dfsp="dfsp-b", amount=Decimal("10"),
        started_at=hours(0), completed_at=hours(0.01),
    ),
    transfer(
        "engine-b", 203, transaction_id="tx-a1", direction="PAYEE",
        bpmn_process_id="phee-payee-quote-transfer", payer_id="255701", payer_dfsp="dfsp-a",
        payee_id="255702", payee_dfsp="dfsp-b", amount=Decimal("10"),
        started_at=hours(0) + timedelta(seconds=5),
    ),
    transfer(
        "engine-a", 102, transaction_id="tx-a2", status="FAILED", payer_id="255701",
        payer_dfsp="dfsp-a", payee_id="255703", payee_dfsp="dfsp-c", amount=Decimal("250.5"),
        started_at=hours(1), error_code="5100", error_message="payee rejected",
    ),
    transfer(
        "engine-b", 201, transaction_id="tx-a3", direction="PAYEE", payer_id="255704",
        payer_dfsp="dfsp-c", payee_id="255701", payee_dfsp="dfsp-a", amount=Decimal("1000"),
        started_at=hours(2),
    ),
    # the same start time twice: (engine, key) breaks the tie
    transfer(
        "engine-b", 202, transaction_id="tx-a4", status="IN_PROGRESS", payer_id="255705",
        payer_dfsp="dfsp-a", payee_id="255702", payee_dfsp="dfsp-b", amount=Decimal("75.25"),
        started_at=hours(3),
    ),
    transfer(
        "engine-a", 103, transaction_id="tx-a5", status="EXCEPTION", correlation_id="corr-5",
        payer_id="255706", payer_dfsp="dfsp-a", payee_id="255707", payee_dfsp="dfsp-d",
        amount=Decimal("5000"), started_at=hours(3),
    ),
    # not started yet as far as the back office knows: sorts last
    transfer("engine-a", 104, status="IN_PROGRESS"),
    *[
        transfer(
            "engine-c", 300 + i, transaction_id=f"tx-c{i}", status="ABORTED",
            payer_id="255790", payer_dfsp="dfsp-e", payee_id=f"2557{80 + i}",
            payee_dfsp="dfsp-b", amount=Decimal(i), started_at=T0 - timedelta(days=i),
        )
        for i in range(1, 6)
    ],
]  # fmt: skip
B_TRANSFERS = [
    transfer(
        "engine-a", 901, transaction_id="tx-b1", payer_id="255701", payer_dfsp="dfsp-a",
        payee_id="255702", payee_dfsp="dfsp-b", amount=Decimal("10"), correlation_id="corr-1",
        started_at=hours(0.5),
    ),
    transfer(
        "engine-b", 902, transaction_id="tx-b2", status="FAILED", payer_id="255799",
        payer_dfsp="dfsp-z", amount=Decimal("99"), started_at=hours(4),
    ),
]  # fmt: skip


def ident(row: Mapping[str, Any]) -> str:
    return f"{row['engine']}/{row['process_instance_key']}"


def expected_order(rows: list[dict[str, Any]]) -> list[str]:
    started = sorted(
        (r for r in rows if r["started_at"]),
        key=lambda r: (-r["started_at"].timestamp(), r["engine"], r["process_instance_key"]),
    )
    pending = sorted(
        (r for r in rows if not r["started_at"]),
        key=lambda r: (r["engine"], r["process_instance_key"]),
    )
    return [ident(r) for r in started + pending]


def trail_rows(engine: str, key: int, tag: str) -> dict[str, list[dict[str, Any]]]:
    """Steps, variables and one incident (CDC-shaped), inserted out of log order."""
    pid = str(key)
    common = {"engine": engine, "process_instance_key": pid, "op": "c"}
    steps = [
        {**common, "position": f"w{lsn}/{table}/id_={rkey}", "lsn": lsn, "record_key": rkey,
         "source_table": table, "element_id": element, "element_type": etype,
         "element_name": None, "state": state, "started_at": hours(0), "ended_at": None,
         "at": hours(0) + timedelta(seconds=lsn)}
        for lsn, table, rkey, element, etype, state in [
            (12, "act_hi_actinst", f"settle:{pid}", "settle", "serviceTask", "COMPLETED"),
            (10, "act_hi_procinst", pid, "phee-payer-transfer", "process", "ACTIVE"),
            (11, "act_hi_actinst", f"start:{pid}", "start", "startEvent", "COMPLETED"),
        ]
    ]  # fmt: skip
    variables = [
        {**common, "position": f"w21/act_hi_varinst/id_=v21-{pid}", "lsn": 21,
         "record_key": f"v21-{pid}", "scope_key": pid, "name": "status", "value_type": "string",
         "value": f'"{tag}"', "state": "CREATED", "at": hours(0) + timedelta(seconds=21)},
        {**common, "position": f"w20/act_hi_varinst/id_=v20-{pid}", "lsn": 20,
         "record_key": f"v20-{pid}", "scope_key": pid, "name": "amount", "value_type": "string",
         "value": '{"amount": "10", "currency": "TZS"}', "state": "CREATED",
         "at": hours(0) + timedelta(seconds=20)},
    ]  # fmt: skip
    incidents = [
        {**common, "position": f"w30/act_hi_incident/id_=i-{pid}", "lsn": 30,
         "incident_key": f"i-{pid}", "state": "OPEN", "error_type": "failedExternalTask",
         "error_message": f"{tag} broke", "element_id": "settle", "at": hours(0)},
    ]  # fmt: skip
    return {"steps": steps, "variables": variables, "incidents": incidents}


def audit_rows(actor: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "seq": seq,
            "at": hours(seq),
            "actor": actor,
            "action": "step" if seq % 2 else "view_transfer",
            "subject": f"engine-a/{100 + seq}",
            "detail": json.dumps({"n": seq}),
            "source": None,
            "prev_hash": f"{seq - 1:064x}",
            "hash": f"{seq:064x}",
        }
        for seq in range(1, count + 1)
    ]


def seed(db: Database) -> None:
    data = {
        "tenant-a": (A_TRANSFERS, trail_rows("engine-a", 101, "A"), audit_rows("importer-a", 7)),
        "tenant-b": (B_TRANSFERS, trail_rows("engine-b", 902, "B"), audit_rows("importer-b", 3)),
    }
    for tenant, (transfers, trail, audit) in data.items():
        with db.begin() as conn:
            tconn = db.tenant(conn, tenant)
            tconn.execute(schema.transfers.insert(), transfers)
            tconn.execute(schema.steps.insert(), trail["steps"])
            tconn.execute(schema.variables.insert(), trail["variables"])
            tconn.execute(schema.incidents.insert(), trail["incidents"])
            tconn.execute(schema.audit_log.insert(), audit)


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A fresh database (its own SQLite file, or its own database on the session's server)."""
    name = f"backoffice_api_{secrets.token_hex(4)}"
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'backoffice.db'}"
    else:
        server = make_url(request.getfixturevalue(request.param).endpoint("url"))
        admin = make_engine(server, SqlOptions(isolation_level="AUTOCOMMIT"))
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = server.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    try:
        db.migrate_control()
        for tenant in ("tenant-a", "tenant-b"):
            db.provision(tenant)
        seed(db)
        yield db
    finally:
        if admin is not None:
            if db.dialect != "postgresql":  # MariaDB: tenants are databases of their own
                db.drop_tenant_namespaces()
            db.close()
            with admin.connect() as conn:
                force = " WITH (FORCE)" if db.dialect == "postgresql" else ""
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
            admin.dispose()
        db.close()


# -- the app -----------------------------------------------------------------------------------


@dataclass
class Site:
    client: httpx.Client
    db: Database
    idp: Idp
    actions: list[tuple[str, str, str, str, dict[str, Any]]]
    keys: dict[str, str]

    def get(
        self,
        path: str,
        *,
        token: str | None = None,
        tenant: str | None = "tenant-a",
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if tenant is not None:
            sent[TENANT] = tenant
        return self.client.get(path, headers=sent, params=params)

    def ok(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("token", self.idp.token())
        response = self.get(path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def site(database: Database, idp: Idp) -> Iterator[Site]:
    settings = BackofficeSettings(
        database_url=database.url,
        tenants=["tenant-a", "tenant-b", "tenant-c"],  # tenant-c: configured, never provisioned
        audit_key=SecretStr("audit-key-for-tests"),
        jwks_url=idp.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    actions: list[tuple[str, str, str, str, dict[str, Any]]] = []

    def record(tenant: str, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        actions.append((tenant, actor, action, subject, detail))

    keys = {
        "a-auditor": create_api_key(database, tenant="tenant-a", role="auditor", name="a").key,
        "a-operator": create_api_key(database, tenant="tenant-a", role="operator", name="o").key,
    }
    revoked = create_api_key(database, tenant="tenant-a", role="admin", name="gone")
    assert revoke_api_key(database, revoked.key_id)
    keys["revoked"] = revoked.key
    app = create_app(settings, database, on_operator_action=record)
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield Site(client, database, idp, actions, keys)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a loopback port of its own, in a thread; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        poll(
            lambda: True if server.started or not thread.is_alive() else None,
            what="the API server starting",
            deadline_s=30,
            interval_s=0.02,
        )
        assert server.started, "the API server stopped while starting"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def api(site: Site) -> Site:
    site.actions.clear()
    return site


def error_code(response: Any) -> str:
    return str(response.json()["errorInformation"]["errorCode"])


# -- every endpoint: isolation and authentication ---------------------------------------------

#: name -> (tenant A's resource, tenant B's resource)
ENDPOINTS = {
    "search": ("/api/v1/transfers", "/api/v1/transfers?transactionId=tx-b1"),
    "detail": ("/api/v1/transfers/engine-a/101", "/api/v1/transfers/engine-b/902"),
    "transaction": ("/api/v1/transactions/tx-a1", "/api/v1/transactions/tx-b1"),
    "audit": ("/api/v1/audit", "/api/v1/audit?actor=importer-b"),
}
each_endpoint = pytest.mark.parametrize("endpoint", list(ENDPOINTS))


def b_ids_in(body: Any) -> list[str]:
    """Anything of tenant B's that leaked into an answer."""
    text_ = json.dumps(body)
    return [s for s in ("tx-b1", "tx-b2", "901", "902", "importer-b", '"B"') if s in text_]


@each_endpoint
def test_a_sees_only_its_own_data(api: Site, endpoint: str) -> None:
    own, _ = ENDPOINTS[endpoint]
    body = api.ok(own)
    assert body  # something of A's is there
    assert b_ids_in(body) == []


@each_endpoint
def test_b_resources_are_invisible_to_a(api: Site, endpoint: str) -> None:
    _, theirs = ENDPOINTS[endpoint]
    response = api.get(theirs, token=api.idp.token())
    if endpoint in ("detail", "transaction"):
        assert response.status_code == 404
        assert error_code(response) in ("3200", "3207")
    else:  # a search: A's tenant holds nothing that matches B's values
        assert response.status_code == 200
        assert response.json()["items"] == []
        assert response.json()["total"] == 0
    assert api.actions == []


@each_endpoint
def test_a_token_with_tenant_b_header_is_forbidden(api: Site, endpoint: str) -> None:
    own, theirs = ENDPOINTS[endpoint]
    for path in (own, theirs):
        response = api.get(path, token=api.idp.token(), tenant="tenant-b")
        assert response.status_code == 403, response.text
        assert error_code(response) == "3000"
        assert "tenant-b" in response.json()["errorInformation"]["errorDescription"]
    assert api.actions == []


@each_endpoint
@pytest.mark.parametrize(
    "credentials",
    [
        "none",
        "expired",
        "forged",
        "bearer-without-token",
        "not-a-jwt",
        "basic",
        "malformed-api-key",
        "unknown-api-key",
        "revoked-api-key",
    ],
)
def test_bad_credentials_are_401_with_a_challenge(
    api: Site, endpoint: str, credentials: str
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {
        "none": {},
        "expired": {"Authorization": f"Bearer {api.idp.token(expires_in=-300)}"},
        "forged": {"Authorization": f"Bearer {api.idp.token(key=other_key)}"},
        "bearer-without-token": {"Authorization": "Bearer"},
        "not-a-jwt": {"Authorization": "Bearer a.b"},
        "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        "malformed-api-key": {"X-API-Key": "letmein"},
        "unknown-api-key": {"X-API-Key": "phk_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        "revoked-api-key": {"Authorization": f"ApiKey {api.keys['revoked']}"},
    }[credentials]
    own, _ = ENDPOINTS[endpoint]
    response = api.get(own, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="phee-operations"')
    assert error_code(response) == "3000"
    assert api.actions == []


@each_endpoint
def test_an_api_key_of_a_works_for_a_only(api: Site, endpoint: str) -> None:
    own, _ = ENDPOINTS[endpoint]
    key = api.keys["a-auditor"]
    by_header = api.ok(own, token=None, headers={"X-API-Key": key})
    by_authorization = api.ok(own, token=None, headers={"Authorization": f"ApiKey {key}"})
    assert by_header == by_authorization
    assert b_ids_in(by_header) == []
    response = api.get(own, headers={"X-API-Key": key}, tenant="tenant-b")
    assert response.status_code == 403


@each_endpoint
def test_roles_decide_what_may_be_read(api: Site, endpoint: str) -> None:
    own, _ = ENDPOINTS[endpoint]
    operator = api.get(own, token=api.idp.token(roles=["operator"]))
    operator_key = api.get(own, headers={"X-API-Key": api.keys["a-operator"]})
    nobody = api.get(own, token=api.idp.token(roles=["guest"]))
    admin = api.get(own, token=api.idp.token(roles=["admin"]))
    expected = 403 if endpoint == "audit" else 200
    assert (operator.status_code, operator_key.status_code) == (expected, expected)
    assert nobody.status_code == 403
    assert admin.status_code == 200
    if endpoint == "audit":
        assert "auditor" in operator.json()["errorInformation"]["errorDescription"]


@each_endpoint
def test_the_tenant_header_is_required_and_must_be_served(api: Site, endpoint: str) -> None:
    own, _ = ENDPOINTS[endpoint]
    missing = api.get(own, token=api.idp.token(), tenant=None)
    assert (missing.status_code, error_code(missing)) == (400, "3102")
    assert "Platform-TenantId" in missing.json()["errorInformation"]["errorDescription"]
    malformed = api.get(own, token=api.idp.token(tenant="Tenant_A"), tenant="Tenant_A")
    assert (malformed.status_code, error_code(malformed)) == (400, "3101")
    for tenant in ("tenant-c", "tenant-zz"):  # configured but not provisioned; unknown
        unserved = api.get(own, token=api.idp.token(tenant=tenant), tenant=tenant)
        assert (unserved.status_code, error_code(unserved)) == (400, "3100")
        assert "not served" in unserved.json()["errorInformation"]["errorDescription"]
    # credentials come first: no tenant is revealed to a caller without them
    assert api.get(own, tenant="tenant-zz").status_code == 401


def test_the_jwks_was_fetched_over_http(api: Site) -> None:
    api.ok("/api/v1/transfers")
    assert "/jwks.json" in api.idp.requests


def test_an_unreachable_identity_provider_is_503_not_401(database: Database, idp: Idp) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = BackofficeSettings(
        database_url=database.url,
        tenants=["tenant-a"],
        audit_key=SecretStr("audit-key-for-tests"),
        jwks_url=f"http://127.0.0.1:{port}/jwks.json",
        jwt_issuer=ISSUER,
    )
    app = create_app(settings, database)
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        response = client.get(
            "/api/v1/transfers",
            headers={"Authorization": f"Bearer {idp.token()}", TENANT: "tenant-a"},
        )
    assert response.status_code == 503
    assert error_code(response) == "2003"


# -- search -------------------------------------------------------------------------------------

A_ORDER = expected_order(A_TRANSFERS)


def ids(body: Any) -> list[str]:
    return [f"{t['engine']}/{t['processInstanceKey']}" for t in body["items"]]


def test_search_lists_every_transfer_newest_first(api: Site) -> None:
    body = api.ok("/api/v1/transfers", params={"limit": 500})
    assert ids(body) == A_ORDER
    assert body["total"] == len(A_TRANSFERS)
    assert body["nextCursor"] is None
    first = body["items"][A_ORDER.index("engine-a/102")]
    assert first["amount"] == "250.5"
    assert first["errorCode"] == "5100"
    assert datetime.fromisoformat(first["startedAt"]) == hours(1)
    assert A_ORDER[-1] == "engine-a/104"  # not started: last
    assert A_ORDER.index("engine-a/103") < A_ORDER.index("engine-b/202")  # tie by engine


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"party": "255701"}, {"engine-a/101", "engine-b/203", "engine-a/102", "engine-b/201"}),
        ({"party": "255783"}, {"engine-c/303"}),
        ({"dfsp": "dfsp-c"}, {"engine-a/102", "engine-b/201"}),
        ({"dfsp": "dfsp-d"}, {"engine-a/103"}),
        ({"status": "FAILED"}, {"engine-a/102"}),
        ({"status": "IN_PROGRESS"}, {"engine-b/202", "engine-a/104"}),
        ({"minAmount": "250.5"}, {"engine-a/102", "engine-b/201", "engine-a/103"}),
        ({"maxAmount": "3"}, {"engine-c/301", "engine-c/302", "engine-c/303"}),
        ({"minAmount": "10", "maxAmount": "75.25"},
         {"engine-a/101", "engine-b/203", "engine-b/202"}),
        ({"from": "2026-01-10T13:00:00Z"},
         {"engine-a/102", "engine-b/201", "engine-b/202", "engine-a/103"}),
        ({"to": "2026-01-10T12:00:00Z"}, {f"engine-c/30{i}" for i in range(1, 6)}),
        ({"from": "2026-01-10T14:00:00+02:00", "to": "2026-01-10T12:00:06Z"},
         {"engine-a/101", "engine-b/203"}),
        ({"correlationId": "corr-1"}, {"engine-a/101"}),
        ({"transactionId": "tx-a1"}, {"engine-a/101", "engine-b/203"}),
        ({"engine": "engine-b"}, {"engine-b/203", "engine-b/201", "engine-b/202"}),
        ({"direction": "PAYEE"}, {"engine-b/203", "engine-b/201"}),
        ({"party": "255701", "direction": "PAYER", "status": "COMMITTED"}, {"engine-a/101"}),
        ({"status": "TERMINATED"}, set()),
    ],
)  # fmt: skip
def test_each_filter_narrows_the_search(
    api: Site, params: dict[str, str], expected: set[str]
) -> None:
    body = api.ok("/api/v1/transfers", params=params)
    found = ids(body)
    assert set(found) == expected
    assert len(found) == len(expected) == body["total"]
    assert found == [i for i in A_ORDER if i in expected]  # still in order


@pytest.mark.parametrize("limit", [1, 3, 4, 12])
def test_pages_are_disjoint_and_cover_every_row(api: Site, limit: int) -> None:
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(len(A_TRANSFERS) + 1):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        body = api.ok("/api/v1/transfers", params=params)
        assert body["total"] == len(A_TRANSFERS)
        assert body["limit"] == limit
        pages.append(ids(body))
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert cursor is None
    assert all(0 < len(page) <= limit for page in pages)
    flat = [i for page in pages for i in page]
    assert len(flat) == len(set(flat))  # disjoint
    assert flat == A_ORDER  # covering, in order


def test_paging_keeps_the_filters(api: Site) -> None:
    first = api.ok("/api/v1/transfers", params={"party": "255701", "limit": 3})
    assert first["total"] == 4
    second = api.ok(
        "/api/v1/transfers", params={"party": "255701", "limit": 3, "cursor": first["nextCursor"]}
    )
    assert ids(first) + ids(second) == [
        i for i in A_ORDER if i in {"engine-a/101", "engine-b/203", "engine-a/102", "engine-b/201"}
    ]
    assert second["nextCursor"] is None


@pytest.mark.parametrize(
    ("params", "code", "mentions"),
    [
        ({"minAmount": "ten"}, "3101", "minAmount"),
        ({"minAmount": "-1"}, "3100", "minAmount"),
        ({"maxAmount": "1.00001"}, "3100", "maxAmount"),
        ({"minAmount": "100", "maxAmount": "10"}, "3100", "`minAmount` must not exceed"),
        ({"from": "yesterday"}, "3101", "from"),
        ({"from": "2026-01-10T12:00:00"}, "3101", "timezone"),
        ({"from": "2026-01-11T00:00:00Z", "to": "2026-01-10T00:00:00Z"}, "3100", "before"),
        ({"limit": "0"}, "3100", "limit"),
        ({"limit": "501"}, "3100", "limit"),
        ({"limit": "many"}, "3101", "limit"),
        ({"cursor": "not-a-cursor"}, "3101", "cursor"),
        ({"cursor": "WyJhIiw1XQ"}, "3101", "cursor"),  # an audit cursor
        ({"status": "failed; drop table"}, "3101", "status"),
        ({"stauts": "FAILED"}, "3100", "stauts: is not a parameter"),
    ],
)
def test_bad_search_parameters_are_400(
    api: Site, params: dict[str, str], code: str, mentions: str
) -> None:
    response = api.get("/api/v1/transfers", token=api.idp.token(), params=params)
    assert response.status_code == 400, response.text
    assert error_code(response) == code
    assert mentions in response.json()["errorInformation"]["errorDescription"]


# -- detail ---------------------------------------------------------------------------------


def test_transfer_detail_has_the_trail_in_log_order_and_is_audited(api: Site) -> None:
    body = api.ok("/api/v1/transfers/engine-a/101", token=api.idp.token(roles=["operator"]))
    assert body["transfer"]["transactionId"] == "tx-a1"
    assert body["transfer"]["processInstanceKey"] == "101"
    assert [s["lsn"] for s in body["steps"]] == [10, 11, 12]
    assert [s["elementId"] for s in body["steps"]] == ["phee-payer-transfer", "start", "settle"]
    assert [(v["name"], v["value"]) for v in body["variables"]] == [
        ("amount", {"amount": "10", "currency": "TZS"}),
        ("status", "A"),
    ]
    assert [i["errorMessage"] for i in body["incidents"]] == ["A broke"]
    assert api.actions == [
        (
            "tenant-a",
            "alice",
            "view_transfer",
            "engine-a/101",
            {"kind": "user", "roles": ["operator"]},
        )
    ]


def test_a_transfer_without_a_trail_has_empty_lists(api: Site) -> None:
    body = api.ok("/api/v1/transfers/engine-a/104")
    assert (body["steps"], body["variables"], body["incidents"]) == ([], [], [])
    assert body["transfer"]["startedAt"] is None


def test_transaction_detail_shows_both_sides(api: Site) -> None:
    key = api.keys["a-operator"]
    body = api.ok("/api/v1/transactions/tx-a1", token=None, headers={"X-API-Key": key})
    assert body["transactionId"] == "tx-a1"
    sides = [(t["transfer"]["engine"], t["transfer"]["direction"]) for t in body["transfers"]]
    assert sides == [("engine-a", "PAYER"), ("engine-b", "PAYEE")]
    key_id = key.split(".")[0].removeprefix("phk_")
    assert api.actions == [
        (
            "tenant-a",
            f"apikey:{key_id}",
            "view_transaction",
            "tx-a1",
            {
                "kind": "service",
                "roles": ["operator"],
                "transfers": ["engine-a/101", "engine-b/203"],
            },
        )
    ]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/transfers/engine-a/999", 404, "3200"),
        ("/api/v1/transactions/tx-none", 404, "3207"),
        ("/api/v1/transfers/engine-a/not-an-instance", 404, "3200"),
        ("/api/v1/transfers/engine-a/" + "x" * 65, 400, "3101"),
        ("/api/v1/transfers/engine%20a/101", 400, "3101"),
        ("/api/v1/nothing-here", 404, "3002"),
    ],
)
def test_detail_misses_and_bad_paths_change_nothing(
    api: Site, path: str, status: int, code: str
) -> None:
    response = api.get(path, token=api.idp.token())
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert api.actions == []


# -- audit log -------------------------------------------------------------------------------


def test_audit_log_pages_newest_first(api: Site) -> None:
    first = api.ok("/api/v1/audit", params={"limit": 4})
    assert [e["seq"] for e in first["items"]] == [7, 6, 5, 4]
    assert first["total"] == 7
    assert first["items"][0]["detail"] == {"n": 7}
    assert first["items"][0]["prevHash"] == f"{6:064x}"
    second = api.ok("/api/v1/audit", params={"limit": 4, "cursor": first["nextCursor"]})
    assert [e["seq"] for e in second["items"]] == [3, 2, 1]
    assert second["nextCursor"] is None
    assert {e["actor"] for e in first["items"] + second["items"]} == {"importer-a"}


def test_audit_log_filters(api: Site) -> None:
    body = api.ok("/api/v1/audit", params={"action": "view_transfer"})
    assert [e["seq"] for e in body["items"]] == [6, 4, 2]
    body = api.ok(
        "/api/v1/audit",
        params={"from": "2026-01-10T14:00:00Z", "to": "2026-01-10T16:00:00Z"},
    )
    assert [e["seq"] for e in body["items"]] == [3, 2]
    body = api.ok("/api/v1/audit", params={"subject": "engine-a/105"})
    assert [e["seq"] for e in body["items"]] == [5]
    bad = api.get("/api/v1/audit", token=api.idp.token(), params={"cursor": "WyJ0IiwxXQ"})
    assert (bad.status_code, error_code(bad)) == (400, "3101")


# -- the document -----------------------------------------------------------------------------


def test_openapi_lists_the_endpoints_and_security_schemes(api: Site) -> None:
    document = api.client.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/v1/transfers",
        "/api/v1/transfers/{engine}/{process_instance_key}",
        "/api/v1/transactions/{transaction_id}",
        "/api/v1/audit",
    }
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert (schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == ("header", "X-API-Key")
    for path in document["paths"].values():
        operation = path["get"]
        assert operation["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
        assert {"200", "400", "401", "403"} <= set(operation["responses"])
        assert "422" not in operation["responses"]
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == [TENANT]
    assert api.client.get("/readyz").status_code == 200


def test_each_tenant_s_rows_live_in_its_own_namespace(database: Database) -> None:
    """Below the API: tenant B's schema holds B's rows only, so a mapped query cannot mix."""
    with database.begin() as conn:
        found = {
            tenant: {
                ident(r._asdict())
                for r in database.tenant(conn, tenant).execute(
                    select(schema.transfers.c.engine, schema.transfers.c.process_instance_key)
                )
            }
            for tenant in ("tenant-a", "tenant-b")
        }
    assert found == {
        "tenant-a": {ident(r) for r in A_TRANSFERS},
        "tenant-b": {ident(r) for r in B_TRANSFERS},
    }
    assert database.namespace("tenant-a") != database.namespace("tenant-b")
