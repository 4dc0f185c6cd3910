"""Pure routing decisions of the callback router: slots, party fan-out, payee engine choice."""

from __future__ import annotations

import pytest

from callback_router import routing
from phee import contract
from phee.contract import EngineInfo, EngineRegistry, EngineState
from phee.fspiop import ids
from phee.fspiop.errors import FspiopError

A = EngineInfo(name="engine-a", slot=1, engine_url="http://127.0.0.1:26500/engine-rest")
B = EngineInfo(name="engine-b", slot=2, engine_url="http://127.0.0.1:26600/engine-rest")
C = EngineInfo(name="engine-c", slot=700, engine_url="http://127.0.0.1:26700/engine-rest")
HEADERS = {"FSPIOP-Source": "payeefsp"}


def registry(*states: EngineState) -> EngineRegistry:
    engines = [A, B, C]
    return EngineRegistry(
        engines=[e.model_copy(update={"state": s}) for e, s in zip(engines, states, strict=True)]
    )


ALL_ACCEPTING = registry(EngineState.ACCEPTING, EngineState.ACCEPTING, EngineState.ACCEPTING)


@pytest.mark.parametrize("engine", [A, B, C], ids=lambda e: e.name)
@pytest.mark.parametrize("kind", ["uuid", "ulid"])
@pytest.mark.parametrize(
    "message",
    [contract.MSG_QUOTE_CALLBACK, contract.MSG_TRANSFER_CALLBACK],
    ids=["quote", "transfer"],
)
def test_a_callback_goes_to_the_engine_whose_slot_is_in_the_id(
    engine: EngineInfo, kind: str, message: str
) -> None:
    id_value = ids.new_id(engine.slot, kind)
    decision = routing.callback_for_id(
        ALL_ACCEPTING,
        message,
        id_value,
        ok=True,
        body={"x": 1},
        headers=HEADERS,
        content_hash="h1",
        ttl_ms=5000,
    )
    assert isinstance(decision, routing.Publish)
    assert decision.engine == engine.name
    assert decision.name == message
    assert decision.correlation_key == id_value
    assert decision.ttl_ms == 5000
    var = contract.VAR_BY_MESSAGE[message]
    assert decision.variables == {
        var: {"ok": True, "body": {"x": 1}, "headers": HEADERS},
        f"{var}Ok": True,
    }


@pytest.mark.parametrize("state", list(EngineState))
def test_a_callback_follows_its_id_whatever_the_engine_state(state: EngineState) -> None:
    """Draining and down engines still own their payments: no re-routing for payer ids."""
    reg = registry(state, EngineState.ACCEPTING, EngineState.ACCEPTING)
    decision = routing.callback_for_id(
        reg,
        contract.MSG_QUOTE_CALLBACK,
        ids.new_uuid(A.slot),
        ok=True,
        body={},
        headers={},
        content_hash="h",
        ttl_ms=1,
    )
    assert isinstance(decision, routing.Publish)
    assert decision.engine == "engine-a"


def test_error_callbacks_are_not_ok_and_get_their_own_message_id() -> None:
    id_value = ids.new_uuid(B.slot)

    def decide(ok: bool) -> routing.Publish | routing.Unroutable:
        return routing.callback_for_id(
            ALL_ACCEPTING,
            contract.MSG_QUOTE_CALLBACK,
            id_value,
            ok=ok,
            body={},
            headers=HEADERS,
            content_hash="same",
            ttl_ms=1,
        )

    ok, err = decide(True), decide(False)
    assert isinstance(ok, routing.Publish)
    assert isinstance(err, routing.Publish)
    assert err.variables["quoteCallback"]["ok"] is False
    assert err.variables["quoteCallbackOk"] is False  # what the process's gateway reads
    assert ok.message_id == f"quote:{id_value}:same"
    assert err.message_id == f"quote:{id_value}:error:same"


def test_same_content_gives_the_same_message_id_other_content_another() -> None:
    id_value = ids.new_uuid(A.slot)

    def mid(content_hash: str) -> str:
        decision = routing.callback_for_id(
            ALL_ACCEPTING,
            contract.MSG_TRANSFER_CALLBACK,
            id_value,
            ok=True,
            body={},
            headers={},
            content_hash=content_hash,
            ttl_ms=1,
        )
        assert isinstance(decision, routing.Publish)
        return decision.message_id

    assert mid("h1") == mid("h1")
    assert mid("h1") != mid("h2")


@pytest.mark.parametrize(
    "id_value",
    [ids.new_uuid(5), "not-an-id", "B51EC534-EE48-4575-B6A9-EAD2955B8069"],
    ids=["unused-slot", "garbage", "uppercase-uuid"],
)
def test_an_id_no_engine_owns_is_unroutable(id_value: str) -> None:
    decision = routing.callback_for_id(
        ALL_ACCEPTING,
        contract.MSG_QUOTE_CALLBACK,
        id_value,
        ok=True,
        body={},
        headers={},
        content_hash="h",
        ttl_ms=1,
    )
    assert decision == routing.Unroutable("no-owner", f"no engine has the slot of {id_value}")


def test_a_known_payee_owner_wins_over_the_slot() -> None:
    foreign = ids.new_uuid(A.slot)  # made by another DFSP; its "slot" is noise
    decision = routing.callback_for_id(
        ALL_ACCEPTING,
        contract.MSG_TRANSFER_CALLBACK,
        foreign,
        ok=False,
        body={},
        headers={},
        content_hash="h",
        ttl_ms=1,
        known_owner="engine-c",
    )
    assert isinstance(decision, routing.Publish)
    assert decision.engine == "engine-c"
    gone = routing.callback_for_id(
        ALL_ACCEPTING,
        contract.MSG_TRANSFER_CALLBACK,
        foreign,
        ok=False,
        body={},
        headers={},
        content_hash="h",
        ttl_ms=1,
        known_owner="engine-z",
    )
    assert isinstance(gone, routing.Unroutable)
    assert gone.reason == "unknown-engine"


def _fanout(waits: list[routing.PartyWait], party: str, now: float) -> routing.PartyFanout:
    return routing.party_callbacks(
        ALL_ACCEPTING,
        waits,
        party,
        now,
        ok=True,
        body={"party": 1},
        headers=HEADERS,
        content_hash="hp",
        ttl_ms=9,
    )


def test_a_party_callback_fans_out_to_every_live_waiter_on_its_engine() -> None:
    waits = [
        routing.PartyWait("MSISDN/1", "tx-a1", "engine-a", expires_at=200.0),
        routing.PartyWait("MSISDN/1", "tx-b1", "engine-b", expires_at=150.0),
        routing.PartyWait("MSISDN/1", "tx-a2", "engine-a", expires_at=101.0),
        routing.PartyWait("MSISDN/1", "tx-old", "engine-c", expires_at=100.0),  # expired now
        routing.PartyWait("MSISDN/2", "tx-other", "engine-c", expires_at=999.0),  # other party
    ]
    fanout = _fanout(waits, "MSISDN/1", now=100.0)
    got = {(p.engine, p.correlation_key) for p in fanout.publishes}
    assert got == {("engine-a", "tx-a1"), ("engine-a", "tx-a2"), ("engine-b", "tx-b1")}
    assert {w.transaction_id for w in fanout.satisfied} == {"tx-a1", "tx-a2", "tx-b1"}
    for p in fanout.publishes:
        assert p.name == contract.MSG_PARTY_CALLBACK
        assert p.variables == {
            "partyCallback": {"ok": True, "body": {"party": 1}, "headers": HEADERS},
            "partyCallbackOk": True,
        }
        assert p.message_id == f"party:{p.correlation_key}:hp"
    assert fanout.skipped == []


def test_expired_waits_get_nothing_and_an_unknown_engine_is_skipped() -> None:
    waits = [
        routing.PartyWait("MSISDN/1", "tx-1", "engine-a", expires_at=50.0),
        routing.PartyWait("MSISDN/1", "tx-2", "engine-gone", expires_at=500.0),
    ]
    fanout = _fanout(waits, "MSISDN/1", now=60.0)
    assert fanout.publishes == []
    assert fanout.satisfied == []
    assert [s.reason for s in fanout.skipped] == ["unknown-engine"]


def test_party_keys_include_the_sub_id() -> None:
    waits = [routing.PartyWait("MSISDN/1/SUB", "tx-1", "engine-a", expires_at=500.0)]
    assert _fanout(waits, "MSISDN/1", now=1.0).publishes == []
    assert len(_fanout(waits, contract.party_key("MSISDN", "1", "SUB"), now=1.0).publishes) == 1


def test_new_payee_work_skips_draining_and_down_engines() -> None:
    reg = registry(EngineState.DRAINING, EngineState.ACCEPTING, EngineState.DOWN)
    assert routing.new_work_engines(reg, {}) == ["engine-b"]
    start = routing.payee_lookup(
        reg,
        {},
        id_type="MSISDN",
        id_value="1",
        sub_id=None,
        requester="payerfsp",
        version="1.1",
        tenant="acme",
    )
    assert start.candidates == ("engine-b",)
    assert start.process_id == contract.PAYEE_PARTY_LOOKUP
    assert start.variables == {
        "tenant": "acme",
        "partyIdType": "MSISDN",
        "partyIdentifier": "1",
        "requester": "payerfsp",
        "fspiopVersion": "1.1",
    }


def test_new_payee_work_goes_to_the_least_recently_chosen_engine_first() -> None:
    assert routing.new_work_engines(ALL_ACCEPTING, {}) == ["engine-a", "engine-b", "engine-c"]
    assert routing.new_work_engines(ALL_ACCEPTING, {"engine-a": 0}) == [
        "engine-b",
        "engine-c",
        "engine-a",
    ]
    assert (
        routing.new_work_engines(ALL_ACCEPTING, {"engine-a": 3, "engine-b": 1, "engine-c": 2})[0]
        == "engine-b"
    )


@pytest.mark.parametrize(
    "states",
    [
        (EngineState.DRAINING, EngineState.DRAINING, EngineState.DOWN),
        (EngineState.DOWN, EngineState.DOWN, EngineState.DOWN),
    ],
)
def test_no_accepting_engine_is_2003(states: tuple[EngineState, ...]) -> None:
    reg = registry(*states)
    with pytest.raises(FspiopError) as info:
        routing.payee_quote(
            reg,
            {},
            body={"quoteId": "q", "transactionId": "t"},
            requester="p",
            version="1.1",
            tenant="default",
        )
    assert info.value.code == "2003"
    assert info.value.http_status == 503


def test_a_payee_quote_starts_with_the_request_and_its_ids() -> None:
    body = {"quoteId": "q-1", "transactionId": "t-1", "amount": {"amount": "1", "currency": "USD"}}
    start = routing.payee_quote(
        ALL_ACCEPTING, {}, body=body, requester="payerfsp", version="2.0", tenant="default"
    )
    assert start.process_id == contract.PAYEE_QUOTE_TRANSFER
    assert start.variables == {
        "tenant": "default",
        "quoteRequest": body,
        "quoteId": "q-1",
        "transactionId": "t-1",
        "requester": "payerfsp",
        "fspiopVersion": "2.0",
    }
    lookup = routing.payee_lookup(
        ALL_ACCEPTING,
        {},
        id_type="IBAN",
        id_value="X",
        sub_id="S",
        requester="p",
        version="1.1",
        tenant="default",
    )
    assert lookup.variables["partySubIdOrType"] == "S"


@pytest.mark.parametrize("state", list(EngineState))
def test_payee_follow_ups_reach_the_holder_whatever_its_state(state: EngineState) -> None:
    reg = registry(EngineState.ACCEPTING, state, EngineState.ACCEPTING)
    request = routing.transfer_request(
        reg,
        "engine-b",
        transaction_id="tx-9",
        transfer_id="tr-9",
        body={"b": 1},
        headers=HEADERS,
        content_hash="h",
        ttl_ms=7,
    )
    assert isinstance(request, routing.Publish)
    assert (request.engine, request.name, request.correlation_key) == (
        "engine-b",
        contract.MSG_TRANSFER_REQUEST,
        "tx-9",
    )
    assert request.variables == {
        "transferRequest": {"ok": True, "body": {"b": 1}, "headers": HEADERS},
        "transferRequestOk": True,
    }
    patch = routing.transfer_patch(
        reg, "engine-b", transfer_id="tr-9", body={}, headers={}, content_hash="h", ttl_ms=7
    )
    assert isinstance(patch, routing.Publish)
    assert (patch.engine, patch.name, patch.correlation_key) == (
        "engine-b",
        contract.MSG_TRANSFER_PATCH,
        "tr-9",
    )


def test_a_payee_follow_up_nobody_holds_is_unroutable() -> None:
    unknown = routing.transfer_request(
        ALL_ACCEPTING,
        None,
        transaction_id="tx-x",
        transfer_id="tr-x",
        body={},
        headers={},
        content_hash="h",
        ttl_ms=1,
    )
    assert unknown == routing.Unroutable("unknown-payee-id", "no engine holds transaction tx-x")
    removed = routing.transfer_patch(
        ALL_ACCEPTING,
        "engine-q",
        transfer_id="tr-x",
        body={},
        headers={},
        content_hash="h",
        ttl_ms=1,
    )
    assert isinstance(removed, routing.Unroutable)
    assert removed.reason == "unknown-engine"
