"""What the operator keeps per idle rollout (issue 22: memory per rollout at or below Argo
Rollouts'): no copies of statuses it already sees in the API, no managedFields it never reads."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ftrollout.plan.observe import annotation_written_at
from ftrollout.shell import handlers
from ftrollout.shell.state import State

KEY = ("ns", "web")
ACTION = "freethreaded.dev/action"
STATUS = {"phase": "Paused", "stepIndex": 0}


def managed_fields() -> list[dict[str, Any]]:
    """What the apiserver keeps on a rollout after kubectl apply, kopf's finalizer, the
    operator's status writes and two `kubectl ftr` requests."""
    return [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "time": "2026-12-02T01:00:00Z",
            "fieldsV1": {"f:spec": {"f:steps": {}, "f:targetRef": {"f:name": {}}}},
        },
        {
            "manager": "kopf",
            "operation": "Update",
            "time": "2026-12-02T01:00:01Z",
            "fieldsV1": {"f:metadata": {"f:finalizers": {'v:"x"': {}}}},
        },
        {
            "manager": "ftrollout",
            "operation": "Update",
            "subresource": "status",
            "time": "2026-12-02T01:00:02Z",
            "fieldsV1": {"f:status": {"f:phase": {}, "f:stepIndex": {}, "f:conditions": {}}},
        },
        {
            "manager": "kubectl-ftr",
            "operation": "Update",
            "time": "2026-12-02T01:05:00Z",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {f"f:{ACTION}": {}, "f:note": {}}},
            },
        },
        {
            "manager": "kubectl-ftr-2",
            "operation": "Update",
            "time": "2026-12-02T01:07:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{ACTION}": {}}}},
        },
    ]


def raw_rollout() -> dict[str, Any]:
    return {
        "apiVersion": "freethreaded.dev/v1alpha1",
        "kind": "FreeThreadedRollout",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "generation": 1,
            "creationTimestamp": "2026-12-02T01:00:00Z",
            "annotations": {ACTION: "promote"},
            "managedFields": managed_fields(),
        },
        "spec": {"targetRef": {"name": "web"}},
        "status": STATUS,
    }


async def test_the_body_kopf_keeps_loses_the_managed_fields_the_operator_never_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "STATE", State())
    raw = raw_rollout()
    before = copy.deepcopy(raw["metadata"])
    event: Any = {"type": "MODIFIED", "object": raw}
    await handlers.rollout_event(event=event, name="web", namespace="ns", spec=raw["spec"])
    kept = raw["metadata"]["managedFields"]  # the same dict kopf keeps for the daemon
    assert [m["manager"] for m in kept] == ["kubectl-ftr", "kubectl-ftr-2"]
    assert all(
        m["fieldsV1"] == {"f:metadata": {"f:annotations": {f"f:{ACTION}": {}}}} for m in kept
    )
    # What the reconcile reads of them is unchanged: when the request was written.
    assert annotation_written_at(raw["metadata"], ACTION) == "2026-12-02T01:07:00Z"
    assert annotation_written_at(before, ACTION) == "2026-12-02T01:07:00Z"


def test_the_echo_of_a_status_write_frees_the_copies_kept_for_it() -> None:
    state = State()
    state.pending_status[KEY] = dict(STATUS)
    state.pending_bases[KEY] = [{"phase": "Progressing"}, {"phase": "Pending"}]
    handlers._own_status_echo(state, KEY, {"metadata": {"generation": 1}, "status": {}})
    assert KEY in state.pending_status  # not ours yet: kept
    handlers._own_status_echo(state, KEY, {"metadata": {"generation": 1}, "status": STATUS})
    assert KEY not in state.pending_status
    assert KEY not in state.pending_bases
