"""Whole payment stacks for the end-to-end tests: one engine (real Operaton) plus every service.

`payment_stack` talks to our switch double; `ttk_site` to a real Mojaloop Testing Toolkit. Both
run workers on the session's one Operaton engine, so each lives for one module only: two
stacks' workers fetching the same topics at once would take each other's tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import stack
from harness.components import Running, get
from harness.components.operaton import RunningEngine
from harness.components.ttk import configure_user
from harness.stack import PaymentStack
from tests.conftest import start_component
from tests.support.ttk import TtkAdmin

#: the Testing Toolkit's own fspId (its examples' `fromFspId`)
TTK_FSP = "testingtoolkitdfsp"
#: one ILP secret for the TTK and our engine, so either side can check the other's fulfilment
TTK_ILP_SECRET = "phee-ttk-conformance-ilp-secret"
TTK_USER_CONFIG: dict[str, Any] = {
    "ILP_SECRET": TTK_ILP_SECRET,
    "FSPID": TTK_FSP,
    # The TTK as a strict payee: our POST /transfers must carry the packet of a quote it gave
    # (by transactionId), agree with that packet (fsps, amount) and carry its condition; else
    # it answers with a 3106/3208 error callback instead of the fulfilment.
    "TRANSFERS_VALIDATION_WITH_PREVIOUS_QUOTES": True,
    "TRANSFERS_VALIDATION_ILP_PACKET": True,
    "TRANSFERS_VALIDATION_CONDITION": True,
}


@pytest.fixture(scope="module")
def payment_stack(
    tmp_path_factory: pytest.TempPathFactory, engine_a: RunningEngine
) -> Iterator[PaymentStack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    # Short waits so the missing-callback paths finish within a test's time.
    running = stack.start(
        workdir,
        {"engine-a": engine_a},
        payers=10,
        payees=10,
        extra_engine_env={
            "PHEE_ENGINE_TRANSFER_EXPIRY_S": "4",
            "PHEE_ENGINE_EXPIRY_GRACE_S": "2",
            "PHEE_ENGINE_STATUS_WAIT": "PT6S",
            "PHEE_ENGINE_PARTY_WAIT": "PT6S",
            "PHEE_ENGINE_QUOTE_WAIT": "PT6S",
        },
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def channel(payment_stack: PaymentStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=payment_stack.channel("engine-a"), timeout=10) as http:
        yield http


@pytest.fixture
def switch_admin(payment_stack: PaymentStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=payment_stack.switch.endpoint("http"), timeout=10) as http:
        yield http
        http.delete("/admin/faults")


@pytest.fixture
def ams(payment_stack: PaymentStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=payment_stack.ams.endpoint("http"), timeout=10) as http:
        yield http


@dataclass(frozen=True)
class TtkSite:
    """Our stack with a real Testing Toolkit as its switch (and as the peer DFSP behind it)."""

    ttk: Running
    stack: PaymentStack
    admin: TtkAdmin


@pytest.fixture(scope="module")
def ttk_site(
    tmp_path_factory: pytest.TempPathFactory, engine_a: RunningEngine
) -> Iterator[TtkSite]:
    """A fresh TTK for the module (its memory grows with every request), our stack around it.

    The TTK reads ILP_SECRET once, at start (ilpModel.init), so the secret goes into the user
    config file before the start; a later PUT /api/config/user would not change it. The stack
    needs the TTK's switch URL and the TTK needs the router's URL, so CALLBACK_ENDPOINT is set
    once the router is up.
    """
    workdir: Path = tmp_path_factory.mktemp("ttk-site")
    ttk = start_component("ttk", workdir, user_config=TTK_USER_CONFIG)
    try:
        running = stack.start(
            workdir / "stack",
            {"engine-a": engine_a},
            payers=10,
            payees=10,
            switch_url=ttk.endpoint("switch"),
            extra_engine_env={
                "PHEE_ENGINE_ILP_SECRET": TTK_ILP_SECRET,
                # The Testing Toolkit as a switch sends no PATCH /transfers and its collections
                # expect the payee's answer to be COMMITTED: a scheme without commit notices.
                "PHEE_ENGINE_RESERVE_FIRST": "false",
                # Short expiry so the missing-callback path ends within a test's time.
                "PHEE_ENGINE_TRANSFER_EXPIRY_S": "4",
                "PHEE_ENGINE_EXPIRY_GRACE_S": "2",
                "PHEE_ENGINE_STATUS_WAIT": "PT10S",
                "PHEE_ENGINE_PARTY_WAIT": "PT15S",
                "PHEE_ENGINE_QUOTE_WAIT": "PT15S",
            },
        )
        try:
            router = running.router.endpoint("http")
            configure_user(ttk, CALLBACK_ENDPOINT=router, **TTK_USER_CONFIG)
            admin = TtkAdmin(ttk)
            try:
                yield TtkSite(ttk=ttk, stack=running, admin=admin)
            finally:
                admin.close()
        finally:
            running.stop()
    finally:
        get("ttk").stop(ttk)
