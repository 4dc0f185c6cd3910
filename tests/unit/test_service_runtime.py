"""The shared service runtime: settings, secrets without defaults, JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from phee.service import (
    ComponentSettings,
    MissingSecretError,
    ServiceSettings,
    bind_transaction,
    load_settings,
    payment_context,
)
from phee.service.logs import configure_logging
from phee.service.startup import settings_problems


class DemoSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="PHEE_DEMO_", extra="ignore")
    dev_secrets: ClassVar[dict[str, str]] = {"api_key": "dev-api-key"}

    api_key: SecretStr | None = None
    size: int = 3


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PHEE_DEV_MODE", "PHEE_DEMO_API_KEY", "PHEE_PORT", "PHEE_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logs configured as a service does, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    configure_logging(ServiceSettings(log_level="DEBUG"))
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_service_settings_come_from_the_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHEE_PORT", "9123")
    monkeypatch.setenv("PHEE_LOG_FORMAT", "text")
    monkeypatch.setenv("PHEE_DEMO_API_KEY", "k" * 12)
    settings = DemoSettings()
    assert (settings.service.host, settings.service.port) == ("127.0.0.1", 9123)
    assert settings.service.log_format == "text"
    assert settings.secret("api_key") == "k" * 12
    assert settings.dev_values_used == []


def test_a_missing_secret_is_refused_naming_its_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        DemoSettings()
    (problem,) = settings_problems(DemoSettings, caught.value)
    assert problem.startswith("secret PHEE_DEMO_API_KEY is not set, and secrets have no defaults")
    assert "PHEE_DEV_MODE=true" in problem
    assert isinstance(caught.value.errors()[0]["ctx"]["error"], MissingSecretError)


def test_an_empty_secret_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHEE_DEMO_API_KEY", "")
    with pytest.raises(ValidationError, match="PHEE_DEMO_API_KEY is not set"):
        DemoSettings()


def test_the_development_mode_fills_secrets_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHEE_DEV_MODE", "true")
    settings = DemoSettings()
    assert settings.secret("api_key") == "dev-api-key"
    assert settings.dev_values_used == ["PHEE_DEMO_API_KEY"]


def test_load_settings_exits_2_naming_each_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PHEE_DEMO_SIZE", "many")
    with pytest.raises(SystemExit) as exit_:
        load_settings(DemoSettings, "demo service")
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "demo service cannot start:"
    assert lines[1].strip().startswith("PHEE_DEMO_SIZE: Input should be a valid integer")
    # secrets are checked once the other settings are valid
    monkeypatch.setenv("PHEE_DEMO_SIZE", "4")
    with pytest.raises(SystemExit):
        load_settings(DemoSettings, "demo service")
    lines = capsys.readouterr().err.splitlines()
    assert lines[1].strip().startswith("secret PHEE_DEMO_API_KEY is not set")


def test_log_lines_are_json_with_the_transaction_id(captured: io.StringIO) -> None:
    log = logging.getLogger("phee.test")
    log.info("outside any payment")
    with payment_context("01JTX"):
        log.warning("quote %s refused", "q-1", extra={"engine": "engine-a"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after the payment")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == [
        "outside any payment",
        "quote q-1 refused",
        "failed",
        "after the payment",
    ]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert "transactionId" not in lines[0]
    assert "transactionId" not in lines[3]
    assert lines[1]["transactionId"] == lines[2]["transactionId"] == "01JTX"
    assert lines[1]["engine"] == "engine-a"
    assert lines[1]["level"] == "WARNING"
    assert "ValueError: boom" in lines[2]["exc_info"]


def test_tasks_keep_their_own_transaction(captured: io.StringIO) -> None:
    log = logging.getLogger("phee.test")

    async def payment(tx: str) -> None:
        bind_transaction(tx)
        await asyncio.sleep(0)  # let the other task run in between
        log.info("step of %s", tx)

    async def both() -> None:
        await asyncio.gather(payment("tx-a"), payment("tx-b"))

    asyncio.run(both())
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    lines = [line for line in lines if line["logger"] == "phee.test"]
    assert {(line["msg"], line["transactionId"]) for line in lines} == {
        ("step of tx-a", "tx-a"),
        ("step of tx-b", "tx-b"),
    }


def test_quiet_loggers_are_held_at_warning(captured: io.StringIO) -> None:
    logging.getLogger("httpx").info("GET http://x 200")
    logging.getLogger("httpx").warning("retrying")
    msgs = [json.loads(line)["msg"] for line in captured.getvalue().splitlines()]
    assert msgs == ["retrying"]
