"""A rollout deleted and created again under the same name (`kubectl replace --force`, a
GitOps tool re-creating it). kopf handles each object (uid) in its own worker, so the old
object's DELETED may be handled after the new object's ADDED."""

from __future__ import annotations

from typing import Any

import pytest

from ftrollout.shell import handlers
from ftrollout.shell.gillog import LogScanner
from ftrollout.shell.state import State

KEY = ("ns", "web")


def rollout(uid: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": uid},
        "spec": {"targetRef": {"name": "web"}},
    }


async def event(kind: str, body: dict[str, Any]) -> None:
    ev: Any = {"type": kind, "object": body}
    await handlers.rollout_event(event=ev, name="web", namespace="ns", spec=body["spec"])


async def test_the_old_objects_deleted_event_leaves_the_new_ones_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old object's DELETED, handled after the new one's ADDED and first reconcile, forgot
    the new one's target, its active mark and container: its twin pods' logs were no longer
    read (a GIL fallback only the log shows went unseen) and its pods' events woke nobody
    (a crash waited for the hourly look), until the rollout changed again."""
    state = State()
    monkeypatch.setattr(handlers, "STATE", state)
    await event("ADDED", rollout("old"))
    await event("ADDED", rollout("new"))
    # The new object's first reconcile (shell.reconcile): progressing, its logs to be read.
    state.active.add(KEY)
    state.containers[KEY] = "app"
    state.cache.put_pod(
        {
            "metadata": {
                "name": "web-ft-abc-1",
                "namespace": "ns",
                "labels": {"pod-template-hash": "abc"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-ft-abc"}],
            },
            "status": {},
        }
    )
    await event("DELETED", rollout("old"))
    assert state.cache.rollout_targets.get(KEY) == "web"
    assert state.cache.targets.get(("ns", "web")) == {"web"}
    assert KEY in state.active
    assert LogScanner(state).pods_to_scan() == [("ns", "web-ft-abc-1", "web", "app")]
    # The new object's own deletion still forgets everything.
    await event("DELETED", rollout("new"))
    assert KEY not in state.cache.rollout_targets
    assert KEY not in state.active
    assert KEY not in state.containers
