"""`engine_workers.bpmn.deployment`: the waits every payment shares are written into the deployed
definitions (no variable per instance), and nothing but an ISO 8601 duration gets in."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from engine_workers import bpmn
from engine_workers.settings import EngineSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

WAITS = {"partyWait": "PT7S", "quoteWait": "PT1M30S", "statusWait": "P1DT2H"}
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


def _durations(content: bytes) -> dict[str, str]:
    """Timer id -> its timeDuration text, for every timer of a definition."""
    root = ET.fromstring(content)  # noqa: S314  # the project's own definitions
    found = {}
    for event in root.iter():
        duration = event.find(f"{BPMN}timerEventDefinition/{BPMN}timeDuration")
        if duration is not None:
            found[event.attrib["id"]] = (duration.text or "").strip()
    return found


def test_the_payer_timers_carry_the_waits_and_the_transfer_wait_stays_a_variable() -> None:
    files = bpmn.deployment(WAITS)
    assert set(files) == set(bpmn.FILES)
    durations = _durations(files["payer-transfer.bpmn"])
    assert durations["party-unanswered"] == "PT7S"
    assert durations["party-timeout"] == "PT7S"
    assert durations["quote-unanswered"] == "PT1M30S"
    assert durations["quote-timeout"] == "PT1M30S"
    assert durations["status-unanswered"] == "P1DT2H"
    assert durations["status-timeout"] == "P1DT2H"
    # set per payment from its expiry: still read from the instance
    assert durations["transfer-unanswered"] == "${transferWait}"
    text = files["payer-transfer.bpmn"].decode()
    assert not re.search(r"\$\{(partyWait|quoteWait|statusWait)\}", text)


def test_the_files_as_shipped_still_read_the_waits_from_variables() -> None:
    shipped = {path.name: path.read_bytes() for path in bpmn.paths()}
    durations = _durations(shipped["payer-transfer.bpmn"])
    assert durations["party-unanswered"] == "${partyWait}"
    assert bpmn.deployment({}) == shipped


@pytest.mark.parametrize(
    "waits",
    [
        {"partyWait": "30s"},
        {"quoteWait": "PT30S</timeDuration><x/>"},
        {"statusWait": "P"},
        {"statusWait": "PT"},
        {"transferWait": "PT30S"},  # per payment, never fixed
    ],
)
def test_anything_but_a_known_wait_with_an_iso_duration_is_refused(waits: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601|not a wait"):
        bpmn.deployment(waits)


def _settings(field: str, value: str) -> EngineSettings:
    settings: dict[str, Any] = {
        "name": "engine-a",
        "ilp_secret": SecretStr("ilp-secret-for-tests"),
        "router_admin_token": SecretStr("router-token-for-tests"),
        field: value,
    }
    return EngineSettings.model_validate(settings)


@pytest.mark.parametrize("field", ["party_wait", "quote_wait", "status_wait"])
def test_a_wait_setting_that_is_no_iso_duration_is_refused_at_start(field: str) -> None:
    with pytest.raises(ValidationError, match="'30 seconds' is not an ISO 8601 duration"):
        _settings(field, "30 seconds")
    assert getattr(_settings(field, "PT0.5S"), field) == "PT0.5S"
