"""Pod bodies summarised for the GIL guardrail: which pods are running, terminating, and of
which revision of the twin's template (plan/observe.py `summarize_pod`)."""

from __future__ import annotations

from typing import Any

import pytest

from ftrollout.plan.observe import summarize_pod
from ftrollout.plan.twin import ANNOTATION_REVISION


def pod(
    *,
    phase: str = "Running",
    deleting: bool = False,
    revision: str | None = "abc123",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web-ft-5d9f7-x2x9z",
        "namespace": "shop",
        "labels": {"pod-template-hash": "5d9f7"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-ft-5d9f7"}],
    }
    if revision is not None:
        meta["annotations"] = {ANNOTATION_REVISION: revision}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


def test_a_running_pod_of_a_revision() -> None:
    p = summarize_pod(pod())
    assert (p.deployment, p.running, p.terminating, p.revision) == (
        "web-ft",
        True,
        False,
        "abc123",
    )


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed", "Unknown"])
def test_a_pod_outside_phase_running_is_not_running(phase: str) -> None:
    assert summarize_pod(pod(phase=phase)).running is False


def test_a_pod_with_a_deletion_timestamp_is_terminating() -> None:
    p = summarize_pod(pod(deleting=True))
    assert p.terminating is True
    assert p.running is True  # still Running until its containers stop: the flag tells


def test_a_pod_without_the_revision_annotation_has_no_revision() -> None:
    assert summarize_pod(pod(revision=None)).revision is None
    assert summarize_pod({}).revision is None
