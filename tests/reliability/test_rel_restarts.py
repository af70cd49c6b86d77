"""The operator SIGKILLed mid-scale-up, mid-rollback, mid-promotion and at random points, then
restarted: it resumes from status, never resets stepIndex, never lets Ready capacity (standard
Ready + free-threaded Ready) fall below N, never scales a track above N, never repeats an Event
that says something happened once (RolloutStarted, RolledBack, Promoted).

Events are at most once: the operator writes status first and posts Events after it, so a
SIGKILL in the few milliseconds between the two loses that Event (status, the record, is
kept) and never duplicates it. The tests therefore assert "at most one" and check status."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from typing import Any

import pytest
from e2e_operator import (
    annotate,
    apply,
    events,
    ftr_status,
    get,
    phase_is,
    ready_deployment,
    replicas,
    rollout,
    split_is,
    wait_for,
)
from rel_support import N, OperatorFactory, Sampler, record

from ftrollout_dev.localcluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def reasons(cluster: LocalCluster, ns: str) -> Counter[str]:
    return Counter(e["reason"] for e in events(cluster, ns, "web"))


def action_left(cluster: LocalCluster, ns: str) -> Any:
    obj = get(cluster, ns, "ftr", "web") or {}
    return (obj.get("metadata", {}).get("annotations") or {}).get("freethreaded.dev/action")


def restart(op: Any) -> float:
    """SIGKILL, then start again; returns the monotonic time of the restart."""
    op.stop(signal.SIGKILL)
    t = time.monotonic()
    op.start()
    return t


def test_sigkill_mid_scale_up_resumes_the_step(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    op = operators(ns)
    with Sampler(api, ns) as s:
        apply(cluster, ns, rollout("web", "web", [{"weight": 50, "pause": {}}, {"weight": 100}]))
        # The moment the twin exists, before its pods are Ready and the standard track shrinks.
        wait_for(lambda: replicas(cluster, ns, "web-ft")[0] > 0, 60, "the twin", interval=0.02)
        op.stop(signal.SIGKILL)
        killed_at = (replicas(cluster, ns, "web"), replicas(cluster, ns, "web-ft"))
        time.sleep(2)  # the world moves on without the operator (pods become Ready)
        t0 = time.monotonic()
        op.start()
        wait_for(lambda: split_is(cluster, ns, 5, 5) and phase_is(cluster, ns, "Paused", 0),
                 90, "5 + 5, paused at step 1")  # fmt: skip
        recovered = time.monotonic() - t0
    s.assert_capacity_and_no_double_scale()
    s.assert_progress_never_reset()
    r = reasons(cluster, ns)
    assert r["RolloutStarted"] <= 1, r
    assert r["StepStarted"] <= 1, r
    record("sigkill-mid-scale-up", killed_at=killed_at, events=dict(r), min_ready=s.min_ready,
           max_std=s.max_std, max_ft=s.max_ft, recover_s=round(recovered, 2))  # fmt: skip


def test_sigkill_mid_rollback_finishes_it_once(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    op = operators(ns)
    apply(cluster, ns, rollout("web", "web", [{"weight": 50, "pause": {}}, {"weight": 100}]))
    wait_for(lambda: split_is(cluster, ns, 5, 5) and phase_is(cluster, ns, "Paused", 0), 90, "5+5")
    with Sampler(api, ns) as s:
        annotate(cluster, ns, "rollback")
        # Killed as soon as the standard track is asked back to N, before the twin goes to 0.
        wait_for(lambda: replicas(cluster, ns, "web")[0] == N, 60, "standard back to N",
                 interval=0.02)  # fmt: skip
        op.stop(signal.SIGKILL)
        killed_at = (replicas(cluster, ns, "web"), replicas(cluster, ns, "web-ft"))
        t0 = time.monotonic()
        op.start()
        wait_for(lambda: phase_is(cluster, ns, "RolledBack") and split_is(cluster, ns, N, 0),
                 90, "RolledBack at 10 + 0")  # fmt: skip
        recovered = time.monotonic() - t0
        wait_for(lambda: action_left(cluster, ns) is None, 30, "the action annotation consumed")
        time.sleep(3)  # a resync later: still rolled back, nothing re-done
    s.assert_capacity_and_no_double_scale()
    assert split_is(cluster, ns, N, 0)
    st = ftr_status(cluster, ns, "web")
    assert st["rollback"]["reason"] == "Manual"
    assert st["stepIndex"] == 0
    r = reasons(cluster, ns)
    assert r["RolledBack"] <= 1, r
    assert r["RolloutStarted"] <= 1, r
    record("sigkill-mid-rollback", killed_at=killed_at, min_ready=s.min_ready,
           max_std=s.max_std, max_ft=s.max_ft, recover_s=round(recovered, 2),
           rolled_back_events=r["RolledBack"])  # fmt: skip


def test_sigkill_mid_promotion_keeps_the_step_and_promotes_once(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    op = operators(ns)
    steps = [{"weight": 50, "pause": {}}, {"weight": 100, "pause": {}}]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(lambda: split_is(cluster, ns, 5, 5) and phase_is(cluster, ns, "Paused", 0), 90, "5+5")
    with Sampler(api, ns) as s:
        annotate(cluster, ns, "promote")
        # Killed while the twin scales to N and the standard track still has pods.
        wait_for(lambda: replicas(cluster, ns, "web-ft")[0] == N, 60, "twin asked to N",
                 interval=0.02)  # fmt: skip
        op.stop(signal.SIGKILL)
        killed_at = (replicas(cluster, ns, "web"), replicas(cluster, ns, "web-ft"))
        t0 = time.monotonic()
        op.start()
        wait_for(lambda: split_is(cluster, ns, 0, N) and phase_is(cluster, ns, "Paused", 1),
                 90, "0 + 10, paused at the last step")  # fmt: skip
        step_recovered = time.monotonic() - t0
        # Final promotion, killed right after the request.
        annotate(cluster, ns, "promote")
        time.sleep(0.3)
        t1 = restart(op)
        wait_for(lambda: phase_is(cluster, ns, "Promoted"), 90, "Promoted")
        promoted = time.monotonic() - t1
        time.sleep(3)
    s.assert_capacity_and_no_double_scale()
    s.assert_progress_never_reset()
    assert split_is(cluster, ns, 0, N)
    assert action_left(cluster, ns) is None
    r = reasons(cluster, ns)
    assert r["Promoted"] <= 1, r
    assert r["RolloutStarted"] <= 1, r
    assert r["RolledBack"] == 0, r
    record("sigkill-mid-promotion", killed_at=killed_at, min_ready=s.min_ready,
           max_std=s.max_std, max_ft=s.max_ft, step_recover_s=round(step_recovered, 2),
           promote_recover_s=round(promoted, 2), steps_seen=s.steps, events=dict(r))  # fmt: skip


def test_sigkill_at_random_points_through_a_whole_rollout(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    op = operators(ns)
    steps = [
        {"weight": 10, "pause": {"duration": "5s"}},
        {"weight": 50, "pause": {"duration": "5s"}},
        {"weight": 100, "pause": {"duration": "5s"}},
    ]
    rng = random.Random(20240601)
    kills = 0
    t0 = time.monotonic()
    with Sampler(api, ns) as s:
        apply(cluster, ns, rollout("web", "web", steps))
        deadline = time.monotonic() + 240
        while not phase_is(cluster, ns, "Promoted") and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 2.0))
            if phase_is(cluster, ns, "Promoted"):
                break
            restart(op)
            kills += 1
        wait_for(lambda: phase_is(cluster, ns, "Promoted") and split_is(cluster, ns, 0, N),
                 90, "Promoted at 0 + 10")  # fmt: skip
        elapsed = time.monotonic() - t0
    s.assert_capacity_and_no_double_scale()
    s.assert_progress_never_reset()
    r = reasons(cluster, ns)
    assert kills >= 3, "the rollout finished before the operator could be killed a few times"
    assert r["RolloutStarted"] <= 1, r
    assert r["Promoted"] <= 1, r
    assert r["RolledBack"] == 0, r
    record("sigkill-random-whole-rollout", kills=kills, min_ready=s.min_ready,
           max_std=s.max_std, max_ft=s.max_ft, total_s=round(elapsed, 2), events=dict(r),
           steps_seen=s.steps)  # fmt: skip
