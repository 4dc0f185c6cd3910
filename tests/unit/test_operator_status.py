"""Status from observed children: conditions, phase, transition times, rolling and stale pods."""

from __future__ import annotations

from typing import Any

from phee_operator import status as st

T0, T1 = "2026-11-21T10:00:00Z", "2026-11-21T10:05:00Z"
URL = "http://e-operaton.ns.svc:8080/engine-rest"


def _obs(
    nodes_ready: int,
    workers_ready: int,
    *,
    db_ready: int = 1,
    previous: dict[str, Any] | None = None,
    db_pods: list[st.PodView] | None = None,
    node_pods: list[st.PodView] | None = None,
    nodes_updated: int = 2,
    exists: bool = True,
) -> st.EngineObservation:
    absent = st.Workload()
    return st.EngineObservation(
        generation=2,
        version="1.0.3",
        desired_nodes=2,
        desired_workers=2,
        database=st.Workload(True, 1, db_ready, True, "rev-2", 1, 1) if exists else absent,
        nodes=(st.Workload(True, 2, nodes_ready, True, "", nodes_updated, 2) if exists else absent),
        workers=st.Workload(True, 2, workers_ready, True) if exists else absent,
        database_pods=db_pods or [],
        node_pods=node_pods or [],
        previous=previous or {},
    )


APPLIED = st.Outcome(True, "Applied", "12 children applied", 2)


def _status(obs: st.EngineObservation, outcome: st.Outcome | None, now: str = T0, **kw: Any) -> Any:
    return st.engine_status(obs, outcome, now, engine_url=URL, topic_prefix="e", **kw)


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_ready_when_database_nodes_and_workers_are_ready() -> None:
    out = _status(_obs(2, 2), APPLIED)
    assert out["phase"] == "Ready"
    assert out["ready"] == "2/2"
    assert out["databaseReady"] is True
    assert out["engineUrl"] == URL
    assert out["topicPrefix"] == "e"
    for ctype in ("Ready", "DatabaseReady", "EngineNodesReady", "WorkersReady", "UpToDate"):
        assert _cond(out, ctype)["status"] == "True", ctype
    assert _cond(out, "Ready")["observedGeneration"] == 2
    assert out["observedGeneration"] == 2


def test_a_database_that_is_not_ready_holds_the_engine_back() -> None:
    out = _status(_obs(2, 2, db_ready=0), APPLIED)
    assert out["phase"] == "Provisioning"
    assert _cond(out, "Ready")["reason"] == "NotReady"
    assert _cond(out, "Ready")["message"] == "0/1 database ready"
    assert out["databaseReady"] is False


def test_connector_registration_is_reported_but_does_not_hold_ready() -> None:
    unreachable = st.Outcome(False, "ConnectUnreachable", "connect unreachable (ConnectError)", 2)
    out = _status(_obs(2, 2), APPLIED, cdc=unreachable)
    assert out["phase"] == "Ready"
    cdc = _cond(out, "CdcRegistered")
    assert (cdc["status"], cdc["reason"]) == ("False", "ConnectUnreachable")
    # a refresh without an apply keeps what the last registration said
    again = _status(_obs(2, 2, previous=out), None, T1)
    assert _cond(again, "CdcRegistered") == cdc
    fresh = _status(_obs(2, 2), APPLIED)
    assert _cond(fresh, "CdcRegistered")["status"] == "Unknown"
    ok = st.Outcome(True, "Registered", "connector e-cdc created", 2)
    assert _cond(_status(_obs(2, 2, previous=out), APPLIED, T1, cdc=ok), "CdcRegistered")[
        "status"
    ] == ("True")


def test_provisioning_then_degraded_after_having_been_ready() -> None:
    first = _status(_obs(1, 2), APPLIED)
    assert first["phase"] == "Provisioning"
    assert _cond(first, "Ready")["reason"] == "NotReady"
    assert _cond(first, "Ready")["message"] == "1/2 engine nodes ready"
    ready = _status(_obs(2, 2, previous=first), APPLIED, T1)
    down = _status(_obs(1, 2, previous=ready), None, T1)
    assert down["phase"] == "Degraded"


def test_transition_time_kept_while_status_unchanged() -> None:
    first = _status(_obs(2, 2), APPLIED)
    again = _status(_obs(2, 2, previous=first), None, T1)
    assert _cond(again, "Ready")["lastTransitionTime"] == T0
    # a refresh without an apply keeps the Reconciled condition it had
    assert _cond(again, "Reconciled") == _cond(first, "Reconciled")
    worse = _status(_obs(1, 2, previous=again), None, T1)
    assert _cond(worse, "Ready")["lastTransitionTime"] == T1


def test_refused_engine_is_invalid_with_the_reason() -> None:
    refused = st.Outcome(False, "HubNotFound", "PaymentHub 'x' does not exist", 2)
    out = _status(_obs(0, 0, exists=False), refused)
    assert out["phase"] == "Invalid"
    assert _cond(out, "Ready")["reason"] == "HubNotFound"
    assert "does not exist" in _cond(out, "Reconciled")["message"]
    assert _status(_obs(0, 0, exists=False), None)["phase"] == "Pending"


def test_a_rolling_version_change_is_reported_with_the_schema_patch_note() -> None:
    pods = [
        st.PodView("e-operaton-a", "h1", "ghcr.io/phee/engine:1.0.2"),
        st.PodView("e-operaton-b", "h2", "ghcr.io/phee/engine:1.0.3"),
    ]
    out = _status(_obs(2, 2, node_pods=pods, nodes_updated=1), APPLIED)
    up = _cond(out, "UpToDate")
    assert (up["status"], up["reason"]) == ("False", "Rolling")
    assert "1/2 updated" in up["message"]
    assert "schema patches" in up["message"]
    assert out["version"] == ""  # mixed
    done = [st.PodView("e-operaton-c", "h2", "ghcr.io/phee/engine:1.0.3")] * 2
    out = _status(_obs(2, 2, node_pods=done), APPLIED)
    assert out["version"] == "1.0.3"
    assert _cond(out, "UpToDate")["status"] == "True"


def test_database_pod_on_an_old_revision_is_restart_pending() -> None:
    pods = [st.PodView("e-db-0", "rev-1", "postgres:15")]
    out = _status(_obs(2, 2, db_pods=pods), APPLIED)
    assert out["restartPending"] == ["e-db-0"]
    up = _cond(out, "UpToDate")
    assert (up["status"], up["reason"]) == ("False", "RestartPending")
    assert out["phase"] == "Ready"  # the old template still serves


def test_workload_of_reads_statefulsets_and_deployments() -> None:
    sts = {
        "kind": "StatefulSet",
        "metadata": {"generation": 3},
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "observedGeneration": 2, "updateRevision": "r"},
    }
    w = st.workload_of(sts, 3)
    assert (w.exists, w.ready, w.current, w.update_revision) == (True, 2, False, "r")
    dep = {
        "kind": "Deployment",
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "availableReplicas": 2,
            "readyReplicas": 2,
            "observedGeneration": 1,
            "updatedReplicas": 1,
            "replicas": 3,
        },
    }
    d = st.workload_of(dep, 2)
    assert (d.ready, d.updated, d.total) == (2, 1, 3)
    assert st.workload_of(None, 2).exists is False


def test_hub_status_counts_accepting_engines_and_needs_connect() -> None:
    ok = st.Workload(True, 2, 2, True)
    one = st.Workload(True, 1, 1, True)
    out = st.hub_status(
        1, {}, ok, 2, [("backoffice-api", ok, 2)], 3, ["a", "b"], T0, connect=(one, 1)
    )
    assert out["engines"] == "2/3"
    assert out["phase"] == "Ready"
    assert _cond(out, "AcceptingPayments")["status"] == "True"
    assert _cond(out, "ConnectReady")["status"] == "True"
    no_connect = st.hub_status(
        1, out, ok, 2, [("backoffice-api", ok, 2)], 3, ["a"], T1, connect=(st.Workload(), 1)
    )
    assert no_connect["phase"] == "Degraded"
    assert _cond(no_connect, "Ready")["reason"] == "NotCreated"
    none = st.hub_status(
        1, out, ok, 2, [("backoffice-api", st.Workload(True, 2, 0, True), 2)], 3, [], T1
    )
    assert none["phase"] == "Degraded"
    assert _cond(none, "AcceptingPayments")["reason"] == "NoAcceptingEngine"


def test_a_late_registration_replaces_only_its_condition() -> None:
    waiting = st.Outcome(False, "DatabaseNotReady", "waiting for the database e-db", 2)
    first = _status(_obs(2, 2), APPLIED, cdc=waiting)
    later = st.with_registration(
        first, st.Outcome(False, "ConnectUnreachable", "connect unreachable", 2), T1
    )
    cdc = _cond(later, "CdcRegistered")
    assert (cdc["reason"], cdc["lastTransitionTime"]) == ("ConnectUnreachable", T0)
    assert [c for c in later["conditions"] if c["type"] != "CdcRegistered"] == [
        c for c in first["conditions"] if c["type"] != "CdcRegistered"
    ]
    done = st.with_registration(later, st.Outcome(True, "Registered", "created", 2), T1)
    assert (
        _cond(done, "CdcRegistered")["status"],
        _cond(done, "CdcRegistered")["lastTransitionTime"],
    ) == ("True", T1)
    assert done["phase"] == first["phase"]
