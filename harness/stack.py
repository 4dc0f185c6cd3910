"""The payment stack around real Operaton engines: reference AMS, switch double, router, workers.

Everything runs as local processes on 127.0.0.1 with free ports, started in dependency order and
stopped in reverse. Used by `phee site up`, the end-to-end tests and the benchmarks, so they all
exercise the same wiring an SRE would run.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from harness.components import Running
from harness.components.base import pid_alive, stop_pid
from harness.services import Started, start_service, stop_service
from phee import contract

OUR_FSP = "phee-dfsp"
SIM_PAYEE = "simpayee"
CURRENCY = "USD"
TENANT = "default"


class EngineHandle(Protocol):
    """What the stack needs of a running engine (harness.components.operaton.RunningEngine)."""

    @property
    def rest_urls(self) -> list[str]: ...

    @property
    def payments_url(self) -> str: ...


@dataclass(frozen=True)
class WorkerSpec:
    """How one worker process was started, so that it can be started again the same way."""

    name: str
    workdir: Path
    env: dict[str, str]


@dataclass
class PaymentStack:
    """The running services of a stack, and the secrets they were given."""

    ams: Running
    switch: Running
    router: Running
    workers: dict[str, Running]
    order: list[Running] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    #: every worker process per engine (the first is `workers[engine]`)
    replicas: dict[str, list[Running]] = field(default_factory=dict)
    specs: dict[str, list[WorkerSpec]] = field(default_factory=dict)

    def channel(self, engine: str, replica: int = 0) -> str:
        runs = self.replicas.get(engine) or [self.workers[engine]]
        return runs[replica % len(runs)].endpoint("http")

    def kill_worker(self, engine: str, replica: int) -> None:
        """kill -9 one worker process (a crash: no shutdown, its task locks run out)."""
        stop_pid(self.replicas[engine][replica].pid, 5.0, signal.SIGKILL)

    def restart_worker(self, engine: str, replica: int) -> Running:
        """Start a killed or stopped worker process again, on its old port (as a kubelet would
        restart the container behind the same Service)."""
        old = self.replicas[engine][replica]
        if pid_alive(old.pid):
            raise RuntimeError(f"{old.name} still runs (pid {old.pid}); kill or stop it first")
        spec = self.specs[engine][replica]
        run = start_service(
            spec.name,
            "engine_workers",
            spec.workdir,
            env=spec.env,
            deadline_s=120,
            port=old.ports["http"],
        )
        run.extra["engine"] = engine
        self.replicas[engine][replica] = run
        self.order[self.order.index(old)] = run
        if self.workers[engine] is old:
            self.workers[engine] = run
        return run

    def stop(self) -> None:
        for run in reversed(self.order):
            stop_service(run)


def payer_party(i: int) -> str:
    return f"2771{i:07d}"


def payee_party(i: int) -> str:
    return f"2772{i:07d}"


def start(
    workdir: Path,
    engines: Mapping[str, EngineHandle],
    *,
    workers_per_engine: int = 1,
    payers: int = 20,
    payees: int = 20,
    opening_balance: str = "1000000",
    switch_url: str | None = None,
    extra_engine_env: dict[str, str] | None = None,
    on_ready: Callable[[Running], None] | None = None,
) -> PaymentStack:
    """Start the stack for `engines` (name -> running Operaton engine) with
    `workers_per_engine` worker processes each (sharing the engine's payment store); the switch
    double unless `switch_url` points at another switch (the Testing Toolkit).

    Secrets are made fresh for each stack and passed explicitly (no development mode): the ILP
    secret all engines share (`extra_engine_env` may replace it) and the router's admin token.
    `on_ready` hears of each service as it becomes ready.
    """
    site_secrets = {
        "ilp": secrets.token_urlsafe(32),
        "router_admin_token": secrets.token_urlsafe(32),
    }
    started = Started(on_ready)
    try:
        ams = start_service(
            "reference-ams",
            "doubles.reference_ams",
            workdir / "ams",
            env={"PHEE_AMS_DATABASE_URL": f"sqlite:///{workdir / 'ams' / 'ams.db'}"},
        )
        started.add(ams)
        _open_accounts(ams, payers, payees, opening_balance)

        simulated = [
            {"partyIdType": "MSISDN", "partyIdentifier": payee_party(i), "name": f"Payee {i}"}
            for i in range(payees)
        ]
        switch: Running | None = None
        if switch_url is None:
            switch = start_service(
                "switch-double",
                "doubles.switch_double",
                workdir / "switch",
                env={"PHEE_SWITCH_SIMULATED_PARTIES": json.dumps(simulated)},
            )
            started.add(switch)
            switch_url = switch.endpoint("http")

        registry = contract.EngineRegistry(
            engines=[
                contract.EngineInfo(name=name, slot=slot, engine_url=run.rest_urls[0])
                for slot, (name, run) in enumerate(sorted(engines.items()))
            ]
        )
        (workdir / "router").mkdir(parents=True, exist_ok=True)
        registry_file = workdir / "router" / "engines.json"
        registry_file.write_text(registry.model_dump_json(indent=2))
        router = start_service(
            "callback-router",
            "callback_router",
            workdir / "router",
            env={
                "PHEE_ROUTER_FSP_ID": OUR_FSP,
                "PHEE_ROUTER_REGISTRY_FILE": str(registry_file),
                "PHEE_ROUTER_DATABASE_URL": f"sqlite:///{workdir / 'router' / 'router.db'}",
                "PHEE_ROUTER_SWITCH_URL": switch_url,
                "PHEE_ROUTER_ADMIN_TOKEN": site_secrets["router_admin_token"],
            },
        )
        started.add(router)

        workers: dict[str, Running] = {}
        replicas: dict[str, list[Running]] = {}
        specs: dict[str, list[WorkerSpec]] = {}
        for info, replica in (
            (info, replica) for info in registry.engines for replica in range(workers_per_engine)
        ):
            engine = engines[info.name]
            suffix = f"-{replica}" if replica else ""
            wdir = workdir / f"workers-{info.name}{suffix}"
            env = {
                "PHEE_ENGINE_NAME": info.name,
                "PHEE_ENGINE_SLOT": str(info.slot),
                # one id per replica, kept when the replica restarts: its first fetch then ends
                # the long poll its killed predecessor left pending in the engine
                "PHEE_ENGINE_WORKER_ID": worker_id(info.name, workdir, replica),
                # replicas spread over the engine's nodes (all share one database)
                "PHEE_ENGINE_ENGINE_URL": engine.rest_urls[replica % len(engine.rest_urls)],
                "PHEE_ENGINE_FSP_ID": OUR_FSP,
                "PHEE_ENGINE_SWITCH_URL": switch_url,
                "PHEE_ENGINE_ROUTER_URL": router.endpoint("http"),
                "PHEE_ENGINE_AMS_URL": ams.endpoint("http"),
                "PHEE_ENGINE_STORE_URL": engine.payments_url,
                "PHEE_ENGINE_ILP_SECRET": site_secrets["ilp"],
                "PHEE_ENGINE_ROUTER_ADMIN_TOKEN": site_secrets["router_admin_token"],
                **(extra_engine_env or {}),
            }
            spec = WorkerSpec(f"workers-{info.name}{suffix}", wdir, env)
            specs.setdefault(info.name, []).append(spec)
            run = start_service(spec.name, "engine_workers", wdir, env=env, deadline_s=120)
            run.extra["engine"] = info.name
            started.add(run)
            workers.setdefault(info.name, run)
            replicas.setdefault(info.name, []).append(run)

        # Now the engines' channel APIs are known: the router uses them to ask for resends.
        registry = contract.EngineRegistry(
            engines=[
                e.model_copy(update={"channel_url": workers[e.name].endpoint("http")})
                for e in registry.engines
            ]
        )
        tmp = registry_file.with_suffix(".tmp")
        tmp.write_text(registry.model_dump_json(indent=2))
        tmp.replace(registry_file)

        if switch is not None:
            httpx.put(
                f"{switch_url}/admin/dfsps/{OUR_FSP}",
                json={
                    "callbackBase": router.endpoint("http"),
                    "parties": [
                        {"partyIdType": "MSISDN", "partyIdentifier": payer_party(i)}
                        for i in range(payers)
                    ],
                },
                timeout=10,
            ).raise_for_status()
        return PaymentStack(
            ams, switch or router, router, workers, started, site_secrets, replicas, specs
        )
    except BaseException:
        started.stop_all()
        raise


def _open_accounts(ams: Running, payers: int, payees: int, balance: str) -> None:
    base = ams.endpoint("http")
    with httpx.Client(base_url=base, timeout=10) as http:
        for i in range(payers):
            _open(http, payer_party(i), f"Payer {i}", balance)
        for i in range(payees):
            _open(http, payee_party(i), f"Payee {i}", "0")


def _open(http: httpx.Client, ident: str, name: str, balance: str) -> None:
    resp = http.post(
        "/accounts",
        json={
            "partyIdType": "MSISDN",
            "partyIdentifier": ident,
            "currency": CURRENCY,
            "name": name,
            "openingBalance": balance,
        },
    )
    if resp.status_code not in (201, 409):
        raise RuntimeError(f"AMS refused account {ident}: {resp.status_code} {resp.text}")


def transfer_request(payer: str, payee: str, amount: str) -> dict[str, Any]:
    """A PH-EE channel transfer body."""
    return {
        "payer": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": payer}},
        "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": payee}},
        "amount": {"amount": amount, "currency": CURRENCY},
    }


def worker_id(engine: str, workdir: Path, replica: int) -> str:
    """The workerId of one worker replica: unique per stack (two stacks may share an engine),
    the same across the replica's restarts."""
    stack_name = re.sub(r"[^A-Za-z0-9._-]", "-", workdir.name)[:64]
    return f"{engine}-{stack_name}-w{replica}"


def wait_final(
    http: httpx.Client, transaction_id: str, deadline_s: float = 120.0, tenant: str = TENANT
) -> dict[str, Any]:
    """Poll the engine's own status API until the payment is final."""
    end = time.monotonic() + deadline_s
    last: dict[str, Any] = {}
    while time.monotonic() < end:
        resp = http.get(
            f"/channel/transfer/{transaction_id}", headers={"Platform-TenantId": tenant}
        )
        if resp.status_code == 200:
            last = resp.json()
            if last.get("final"):
                return last
        time.sleep(0.2)
    raise TimeoutError(f"payment {transaction_id} not final after {deadline_s} s: {last}")
