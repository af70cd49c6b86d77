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


# ------------------------------------------------------------ why a pod is not Ready


def failing(container_status: dict[str, Any], *, phase: str = "Running") -> dict[str, Any]:
    body = pod(phase=phase)
    body["status"]["containerStatuses"] = [{"name": "app", "ready": False, **container_status}]
    return body


def test_crash_loop_quotes_waiting_reason_and_the_last_termination() -> None:
    p = summarize_pod(
        failing(
            {
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": "back-off 20s restarting failed container=app",
                    }
                },
                "lastState": {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "message": 'Traceback (most recent call last):\n  File "app.py", '
                        "line 1\nModuleNotFoundError: No module named '_foo'\n",
                    }
                },
            }
        )
    )
    assert p.failure == (
        "container app: CrashLoopBackOff: back-off 20s restarting failed container=app; "
        "last termination: Error (exit code 1): ModuleNotFoundError: No module named '_foo'"
    )


def test_image_pull_back_off_quotes_its_message() -> None:
    p = summarize_pod(
        failing(
            {
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "example/app:3.14t-typo"',
                    }
                }
            },
            phase="Pending",
        )
    )
    assert p.failure == (
        'container app: ImagePullBackOff: Back-off pulling image "example/app:3.14t-typo"'
    )


def test_an_unschedulable_pod_quotes_the_scheduler() -> None:
    body = pod(phase="Pending")
    body["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
        }
    ]
    assert (
        summarize_pod(body).failure == "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )


def test_a_ready_container_or_a_plain_start_is_no_failure() -> None:
    assert summarize_pod(pod()).failure is None
    ready = failing(
        {
            "ready": True,
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }
    )
    assert summarize_pod(ready).failure is None
    starting = failing({"state": {"waiting": {"reason": "ContainerCreating"}}}, phase="Pending")
    assert summarize_pod(starting).failure == "container app: ContainerCreating"


def test_the_failure_is_bounded() -> None:
    p = summarize_pod(
        failing(
            {
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "x" * 5000}},
                "lastState": {
                    "terminated": {"exitCode": 1, "reason": "Error", "message": "y" * 5000}
                },
            }
        )
    )
    assert p.failure is not None
    assert len(p.failure) <= 400
    assert "last termination: Error (exit code 1)" in p.failure


def test_an_init_container_failure_is_reported() -> None:
    body = pod(phase="Pending")
    body["status"]["initContainerStatuses"] = [
        {
            "name": "setup",
            "ready": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
        }
    ]
    assert summarize_pod(body).failure == (
        "init container setup: CrashLoopBackOff; last termination: Error (exit code 2)"
    )
