"""Status from observed children: conditions, phase, transition times, restart-pending pods."""

from __future__ import annotations

from typing import Any

from phee_operator import status as st

T0, T1 = "2026-11-21T10:00:00Z", "2026-11-21T10:05:00Z"


def _obs(
    brokers_ready: int,
    workers_ready: int,
    *,
    previous: dict[str, Any] | None = None,
    pods: list[st.PodView] | None = None,
    exists: bool = True,
) -> st.EngineObservation:
    return st.EngineObservation(
        generation=2,
        desired_brokers=3,
        desired_workers=2,
        brokers=st.Workload(exists, 3, brokers_ready, True, "rev-2") if exists else st.Workload(),
        workers=st.Workload(exists, 2, workers_ready, True) if exists else st.Workload(),
        broker_pods=pods or [],
        previous=previous or {},
    )


APPLIED = st.Outcome(True, "Applied", "9 children applied", 2)


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_ready_when_every_broker_and_worker_is_ready() -> None:
    out = st.engine_status(_obs(3, 2), APPLIED, T0, topic="t", gateway="g")
    assert out["phase"] == "Ready"
    assert out["ready"] == "3/3"
    assert _cond(out, "Ready")["status"] == "True"
    assert _cond(out, "Ready")["observedGeneration"] == 2
    assert out["observedGeneration"] == 2


def test_provisioning_then_degraded_after_having_been_ready() -> None:
    first = st.engine_status(_obs(1, 2), APPLIED, T0, topic="t", gateway="g")
    assert first["phase"] == "Provisioning"
    assert _cond(first, "Ready")["reason"] == "NotReady"
    assert _cond(first, "Ready")["message"] == "1/3 brokers ready"
    ready = st.engine_status(_obs(3, 2, previous=first), APPLIED, T1, topic="t", gateway="g")
    down = st.engine_status(_obs(2, 2, previous=ready), None, T1, topic="t", gateway="g")
    assert down["phase"] == "Degraded"


def test_transition_time_kept_while_status_unchanged() -> None:
    first = st.engine_status(_obs(3, 2), APPLIED, T0, topic="t", gateway="g")
    again = st.engine_status(_obs(3, 2, previous=first), None, T1, topic="t", gateway="g")
    assert _cond(again, "Ready")["lastTransitionTime"] == T0
    # a refresh without an apply keeps the Reconciled condition it had
    assert _cond(again, "Reconciled") == _cond(first, "Reconciled")
    worse = st.engine_status(_obs(2, 2, previous=again), None, T1, topic="t", gateway="g")
    assert _cond(worse, "Ready")["lastTransitionTime"] == T1


def test_refused_engine_is_invalid_with_the_reason() -> None:
    refused = st.Outcome(False, "HubNotFound", "PaymentHub 'x' does not exist", 2)
    out = st.engine_status(_obs(0, 0, exists=False), refused, T0, topic="t", gateway="g")
    assert out["phase"] == "Invalid"
    assert _cond(out, "Ready")["reason"] == "HubNotFound"
    assert "does not exist" in _cond(out, "Reconciled")["message"]


def test_pods_on_an_old_revision_are_reported_as_restart_pending() -> None:
    pods = [
        st.PodView("e-zeebe-0", "rev-1", "camunda/zeebe:8.5.8"),
        st.PodView("e-zeebe-1", "rev-2", "camunda/zeebe:8.5.8"),
    ]
    out = st.engine_status(_obs(3, 2, pods=pods), APPLIED, T0, topic="t", gateway="g")
    assert out["restartPending"] == ["e-zeebe-0"]
    assert _cond(out, "UpToDate")["status"] == "False"
    assert out["version"] == "8.5.8"
    mixed = [*pods, st.PodView("e-zeebe-2", "rev-2", "camunda/zeebe:8.6.0")]
    assert (
        st.engine_status(_obs(3, 2, pods=mixed), APPLIED, T0, topic="t", gateway="g")["version"]
        == ""
    )


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
        "status": {"availableReplicas": 2, "readyReplicas": 2, "observedGeneration": 1},
    }
    assert st.workload_of(dep, 2).ready == 2
    assert st.workload_of(None, 2).exists is False


def test_hub_status_counts_accepting_engines() -> None:
    ok = st.Workload(True, 2, 2, True)
    out = st.hub_status(1, {}, ok, 2, [("backoffice-api", ok, 2)], 3, ["a", "b"], T0)
    assert out["engines"] == "2/3"
    assert out["phase"] == "Ready"
    assert _cond(out, "AcceptingPayments")["status"] == "True"
    none = st.hub_status(
        1, out, ok, 2, [("backoffice-api", st.Workload(True, 2, 0, True), 2)], 3, [], T1
    )
    assert none["phase"] == "Degraded"
    assert _cond(none, "AcceptingPayments")["reason"] == "NoAcceptingEngine"
