"""A whole payment stack for the end-to-end tests: one engine (real Zeebe) plus every service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phee import stack
from phee.components import Running
from phee.stack import PaymentStack


@pytest.fixture(scope="session")
def payment_stack(
    tmp_path_factory: pytest.TempPathFactory, zeebe: Running
) -> Iterator[PaymentStack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    # Short waits so the missing-callback paths finish within a test's time.
    running = stack.start(
        workdir,
        {"engine-a": zeebe},
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
