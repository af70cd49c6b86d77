"""Progress deadline (ftrollout/plan/progress.py): a step whose free-threaded pods do not all
become Ready in `spec.progressDeadline` rolls back with reason ProgressDeadline, quoting why the
pods fail (a dependency without a free-threaded wheel, a wrong image tag)."""

from __future__ import annotations

from planfixtures import make_spec, reached
from simcluster import Sim

from ftrollout.model.api import Phase, RollbackReason, RolloutSpec
from ftrollout.plan import PodGil

IMPORT_ERROR = (
    "container app: CrashLoopBackOff: back-off 20s restarting failed container; last "
    "termination: Error (exit code 1): ModuleNotFoundError: No module named '_foo'"
)
NEVER = 10**6  # pods that never become Ready


def spec(deadline: str = "30s", **kw: object) -> RolloutSpec:
    base = make_spec(((50, "1m"), (100, None)), **kw)  # type: ignore[arg-type]
    return base.model_copy(update={"progress_deadline": deadline})


def crashing(sim: Sim) -> tuple[PodGil, ...]:
    return tuple(
        PodGil(pod=f"app-ft-{i}", enabled=None, failure=IMPORT_ERROR)
        for i in range(sim.ft.replicas)
    )


def test_the_default_deadline_is_ten_minutes() -> None:
    assert make_spec().progress_deadline == "10m"


def test_pods_never_ready_roll_back_after_the_deadline_quoting_the_failure() -> None:
    sim = Sim(spec("30s"), n=10, lag=NEVER)
    sim.step()
    started = sim.status.step_progress_since
    assert started is not None
    for _ in range(29):
        sim.pods = crashing(sim)
        sim.step()
        assert sim.status.phase == Phase.PROGRESSING
    sim.pods = crashing(sim)
    res = sim.step()
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.status.rollback is not None
    assert sim.status.rollback.reason == RollbackReason.PROGRESS_DEADLINE
    msg = sim.status.rollback.message
    assert "ModuleNotFoundError: No module named '_foo'" in msg
    assert "CrashLoopBackOff" in msg
    assert "0/5 free-threaded pods Ready" in msg
    assert "app-ft-0" in msg
    assert sim.status.step_progress_since is None
    assert "RolledBack" in sim.events(res)
    # Capacity back on the standard track; the twin goes down as the standard pods are Ready.
    assert res.target_replicas == 10


def test_the_deadline_requeues_for_its_own_expiry() -> None:
    sim = Sim(spec("30s"), n=10, lag=NEVER)
    res = sim.step()
    assert res.requeue_after is not None
    assert res.requeue_after <= 30


def test_flapping_readiness_does_not_reset_the_clock() -> None:
    """Argo Rollouts #3765: pods Ready for a moment, then crashing again, never all at once."""
    sim = Sim(spec("30s"), n=10, lag=NEVER)
    sim.step()
    for i in range(40):
        if sim.status.phase != Phase.PROGRESSING:
            break
        sim.ft.ready = 4 if i % 2 else 0  # four of five come and go
        sim.pods = crashing(sim)
        sim.step()
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.status.rollback is not None
    assert sim.status.rollback.reason == RollbackReason.PROGRESS_DEADLINE
    assert sim.history[-1].status.rollback is not None
    assert len(sim.history) <= 32


def test_a_step_reached_in_time_does_not_roll_back_even_if_pods_crash_later() -> None:
    sim = Sim(spec("30s"), n=10, lag=5)
    sim.until(reached(0))
    assert sim.status.step_progress_since is None  # the clock stopped
    sim.ft.ready = 2  # crashing after the step was reached: the race budget's business
    sim.pods = crashing(sim)
    sim.run(50)
    assert sim.status.phase != Phase.ROLLED_BACK
    assert sim.status.rollback is None


def test_each_step_has_its_own_clock() -> None:
    sim = Sim(spec("30s"), n=10, lag=20)  # 20 s to Ready: within 30 s, once per step
    sim.until(reached(0), limit=40)
    sim.until(reached(1), limit=200)
    assert sim.status.phase != Phase.ROLLED_BACK
    assert sim.status.rollback is None


def test_spec_paused_stops_the_clock() -> None:
    sim = Sim(spec("30s"), n=10, lag=NEVER)
    sim.step()
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.run(60)
    assert sim.status.phase != Phase.ROLLED_BACK
    assert sim.status.step_progress_since is None
    sim.spec = sim.spec.model_copy(update={"paused": False})
    sim.run(29)
    assert sim.status.phase == Phase.PROGRESSING  # a fresh deadline from the resume
    sim.run(2)
    assert sim.status.phase == Phase.ROLLED_BACK


def test_without_a_pod_failure_the_message_says_so() -> None:
    sim = Sim(spec("10s"), n=4, lag=NEVER)
    sim.run(12)
    assert sim.status.rollback is not None
    assert sim.status.rollback.reason == RollbackReason.PROGRESS_DEADLINE
    assert "no free-threaded pod reported a failure" in sim.status.rollback.message


def test_many_pods_with_the_same_failure_are_quoted_once() -> None:
    sim = Sim(spec("10s"), n=20, lag=NEVER)
    for _ in range(12):
        sim.pods = crashing(sim)
        sim.step()
    assert sim.status.rollback is not None
    msg = sim.status.rollback.message
    assert msg.count("ModuleNotFoundError") == 1
    assert "app-ft-0 and 9 more" in msg
