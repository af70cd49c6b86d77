"""Steps and pauses (ftrollout/plan/steps.py): the documented walk, timed pauses, spec.paused."""

from __future__ import annotations

import pytest
from planfixtures import (
    DESIGN_STEPS,
    NO_PAUSE,
    StepDef,
    at_step,
    cond,
    make_spec,
    pause_elapsed,
    reached,
    step_checked,
)
from simcluster import Sim

from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan import PodGil

# ---------------------------------------------------------------------- a full walk


@pytest.mark.parametrize(
    ("n", "steps", "splits"),
    [
        (10, DESIGN_STEPS, [(9, 1), (5, 5), (0, 10)]),
        (4, DESIGN_STEPS, [(3, 1), (2, 2), (0, 4)]),
        (1, DESIGN_STEPS, [(0, 1), (0, 1), (0, 1)]),
        (7, ((25, "1m"), (60, "1m"), (100, None)), [(5, 2), (2, 5), (0, 7)]),
        (30, ((1, "1m"), (99, "1m"), (100, None)), [(29, 1), (0, 30), (0, 30)]),
    ],
)
def test_walk_through_steps_to_promoted(
    n: int, steps: tuple[StepDef, ...], splits: list[tuple[int, int]]
) -> None:
    """The documented walk: each step's split is live when reached; the last waits for promote."""
    sim = Sim(make_spec(steps), n=n, lag=2)
    for idx, (std, ft) in enumerate(splits):
        sim.until(reached(idx))
        assert sim.replicas == (std, ft), f"step {idx}"
        assert sim.ready >= n
        assert sim.status.weight == steps[idx][0]
        assert sim.status.replicas.standard == std
        assert sim.status.replicas.free_threaded == ft
        assert sim.status.replicas.target == n
        if idx < len(steps) - 1:
            assert sim.status.phase == Phase.PROGRESSING
            # Nothing moves before the pause has elapsed.
            sim.run(3)
            assert sim.status.step_index == idx
            pause_elapsed(sim, 61 if steps[idx][1] == "1m" else 601)
    # Last step has no duration: Paused, waiting for `kubectl ftr promote`.
    sim.run(5, advance=3600)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.step_index == len(steps) - 1
    assert "kubectl ftr promote" in sim.status.message
    assert cond(sim.status, "Progressing").status == "Unknown"
    sim.action = "promote"
    res = sim.step()
    assert res.clear_action
    assert res.status.phase == Phase.PROMOTED
    assert res.target_replicas == 0
    assert res.twin_replicas == n
    assert cond(res.status, "Progressing").reason == "Promoted"
    assert sim.all_events() == [
        "RolloutStarted",
        *(["StepStarted", "StepReached"] * len(steps)),
        "Promoted",
    ]


def test_design_example_n10_counts_at_every_step() -> None:
    """N=10 through 10/50/100: 9+1, 5+5, 0+10, with ready capacity >= 10 at every call."""
    sim = Sim(make_spec(), n=10, lag=1)
    observed: list[tuple[int, int]] = []
    for idx, pause in ((0, 301.0), (1, 601.0)):
        while not reached(idx)(sim):
            step_checked(sim, 10)
        observed.append(sim.replicas)
        pause_elapsed(sim, pause)
    while not reached(2)(sim):
        step_checked(sim, 10)
    observed.append(sim.replicas)
    assert observed == [(9, 1), (5, 5), (0, 10)]
    assert sim.status.phase == Phase.PAUSED


# ------------------------------------------- the three forms of a step's pause (Argo Rollouts)


def test_step_without_pause_advances_as_soon_as_its_replicas_are_ready() -> None:
    """No `pause` field: the step does not hold; the walk ends Promoted with no action."""
    steps = ((10, NO_PAUSE), (50, NO_PAUSE), (100, NO_PAUSE))
    sim = Sim(make_spec(steps), n=10, lag=2)
    seen: list[tuple[int, int]] = []
    for _ in range(60):
        before = sim.replicas
        res = step_checked(sim, 10, advance=0.0)  # no wall-clock time passes at all
        if "StepReached" in sim.events(res):
            seen.append(before)  # the split live when the step counted as reached
        if res.status.phase == Phase.PROMOTED:
            break
    assert sim.status.phase == Phase.PROMOTED
    assert sim.replicas == (0, 10)
    assert seen == [(9, 1), (5, 5), (0, 10)]
    assert "kubectl ftr promote" not in sim.status.message
    assert sim.all_events().count("StepReached") == 3


def test_step_without_pause_waits_for_a_successful_analysis_round() -> None:
    steps = ((10, NO_PAUSE), (100, NO_PAUSE))
    sim = at_step(Sim(make_spec(steps, metrics=("m0",)), n=10), 0)
    sim.run(5, advance=600)
    assert sim.status.step_index == 0
    assert "waiting for a successful analysis round" in sim.status.message
    sim.analysis_round("Successful")
    res = sim.step()
    assert res.status.step_index == 1


def test_empty_pause_waits_for_a_promote_and_a_missing_pause_then_does_not() -> None:
    """`pause: {}` holds until `kubectl ftr promote`; the next step (no pause) completes alone."""
    sim = at_step(Sim(make_spec(((10, None), (100, NO_PAUSE))), n=4), 0)
    sim.run(5, advance=3600)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.step_index == 0
    assert "kubectl ftr promote" in sim.status.message
    sim.action = "promote"
    sim.step()
    sim.until(lambda s: s.status.phase == Phase.PROMOTED, advance=0.0)
    assert sim.replicas == (0, 4)


def test_timed_pause_then_no_pause_completes_by_itself() -> None:
    """The issue's example, `[{weight: 10, pause: {duration: 5m}}, {weight: 100}]`, completes."""
    sim = at_step(Sim(make_spec(((10, "5m"), (100, NO_PAUSE))), n=4), 0)
    sim.run(3)
    assert sim.status.step_index == 0
    assert sim.status.phase == Phase.PROGRESSING
    pause_elapsed(sim, 301)
    sim.until(lambda s: s.status.phase == Phase.PROMOTED)
    assert sim.replicas == (0, 4)


def test_resume_does_not_skip_a_step_without_pause_held_by_analysis() -> None:
    """`resume` promotes only a step waiting for a promote (`pause: {}`), not a no-pause step."""
    sim = at_step(Sim(make_spec(((10, NO_PAUSE), (100, None)), metrics=("m0",)), n=10), 0)
    sim.run(3)
    assert "waiting for a successful analysis round" in sim.status.message
    sim.action = "resume"
    res = sim.step()
    assert res.status.step_index == 0
    assert res.status.weight == 10


def test_last_step_with_duration_promotes_by_itself() -> None:
    sim = at_step(Sim(make_spec(((50, "1m"), (100, "1m"))), n=4), 1)
    assert sim.status.phase == Phase.PROGRESSING
    pause_elapsed(sim, 61)
    res = sim.step()
    assert res.status.phase == Phase.PROMOTED
    assert sim.replicas == (0, 4)
    assert "Promoted" in sim.events(res)


def test_timed_pause_requests_a_requeue_at_its_end() -> None:
    sim = at_step(Sim(make_spec()), 0)
    res = sim.step(advance=100)
    assert res.requeue_after is not None
    assert 298 <= res.requeue_after <= 300
    res = sim.step()
    assert res.requeue_after is not None
    assert 198 <= res.requeue_after <= 200


# ---------------------------------------------------------------------- spec.paused


def test_spec_paused_holds_the_step_after_its_pause_elapsed() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.spec = sim.spec.model_copy(update={"paused": True})
    pause_elapsed(sim, 3600)
    sim.run(10, advance=600)
    assert sim.status.step_index == 0
    assert sim.status.phase == Phase.PAUSED
    assert sim.replicas == (9, 1)
    assert cond(sim.status, "Progressing").reason == "Paused"
    sim.spec = sim.spec.model_copy(update={"paused": False})
    res = sim.step()
    assert res.status.step_index == 1


def test_spec_paused_mid_scaling_finishes_the_current_step_then_holds() -> None:
    """Decision: pausing while a step is still scaling completes that step's split (stopping
    half-way would leave neither split nor capacity guarantees) and holds there; it never
    starts the next step."""
    sim = Sim(make_spec(), n=10, lag=3)
    sim.step()
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.until(reached(0))
    sim.step()
    assert sim.replicas == (9, 1)
    assert sim.status.phase == Phase.PAUSED
    pause_elapsed(sim, 3600)
    sim.run(5)
    assert sim.status.step_index == 0


def test_spec_paused_before_start_does_not_create_the_split() -> None:
    """Decision: spec.paused on a new rollout holds it in Pending (no twin pods), like an Argo
    Rollout created paused; unpausing starts step 0."""
    sim = Sim(make_spec(paused=True), n=10)
    sim.run(5, advance=600)
    assert sim.status.phase == Phase.PENDING
    assert sim.status.step_index is None
    assert sim.ft.replicas == 0
    assert sim.replicas == (10, 0)
    assert "spec.paused" in sim.status.message
    sim.spec = sim.spec.model_copy(update={"paused": False})
    res = sim.step()
    assert res.status.step_index == 0
    assert res.twin_replicas == 1


def test_spec_paused_still_rolls_back_on_a_gil_fallback() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.run(2)
    sim.pods = (PodGil("app-ft-0", enabled=True, modules=("numpy",)),)
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.GIL_FALLBACK
    assert res.target_replicas == 10


def test_spec_paused_still_rolls_back_on_race_budget() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.run(2)
    for i in range(4):
        sim.incident(pod=f"app-ft-{i}")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.RACE_BUDGET


def test_guardrail_pause_under_spec_paused_emits_its_event_once() -> None:
    """A reconcile that changes nothing emits nothing, also when two holds overlap."""
    sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Pause"})), 0)
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.pods = (PodGil("app-ft-0", enabled=True),)
    sim.run(6)
    assert sim.all_events().count("GuardrailPaused") == 1
    assert sim.status.phase == Phase.PAUSED


# ------------------------------------------------- spec.steps shortened under the rollout (#16)

LONG: tuple[StepDef, ...] = ((10, "1s"), (20, "1s"), (30, "1s"), (50, "1h"), (100, None))


@pytest.mark.parametrize(
    ("short", "index", "weight"),
    [
        # The rollout carries on at the first remaining step that does not lower the current
        # weight (50 %): no free-threaded pod is taken away, none added beyond what was asked.
        (((10, "1s"), (50, "10m"), (100, None)), 1, 50),
        (((10, "1s"), (60, "10m"), (100, None)), 1, 60),
        (((10, "1s"), (100, None)), 1, 100),
    ],
)
def test_shortening_spec_steps_below_the_current_step_carries_on_at_a_remaining_step(
    short: tuple[StepDef, ...], index: int, weight: int
) -> None:
    sim = at_step(Sim(make_spec(LONG), n=10), 3)  # step 4/5 at 50 %: 5 + 5
    assert sim.replicas == (5, 5)
    old_start = sim.status.step_started_at
    sim.spec = make_spec(short)
    sim.generation += 1
    res = step_checked(sim, 10)  # no IndexError, capacity kept
    assert res.status.step_index == index
    assert res.status.weight == weight
    assert res.status.phase == Phase.PROGRESSING
    # The new step's pause and analysis start anew (at once when its replicas are there).
    assert res.status.step_started_at != old_start
    changed = [e for e in res.events if e.reason == "StepsChanged"]
    assert len(changed) == 1
    assert "spec.steps" in changed[0].message
    assert res.twin_replicas is not None
    assert res.twin_replicas >= 5
    for _ in range(10):
        step_checked(sim, 10)
    assert sim.status.step_index == index
    assert sim.status.step_started_at is not None


def test_shortening_spec_steps_of_a_promoted_rollout_keeps_it_promoted() -> None:
    sim = at_step(Sim(make_spec(LONG), n=10), 3)
    sim.action = "promote-full"
    sim.run(8)
    assert sim.status.phase == Phase.PROMOTED
    sim.spec = make_spec(((50, "1s"), (100, None)))
    res = step_checked(sim, 10)
    assert res.status.phase == Phase.PROMOTED
    assert res.status.step_index == 1
    assert sim.replicas == (0, 10)


def test_shortening_spec_steps_after_a_rollback_keeps_it_rolled_back() -> None:
    sim = at_step(Sim(make_spec(LONG), n=10), 3)
    sim.action = "rollback"
    sim.run(4)
    sim.spec = make_spec(((50, "1s"), (100, None)))
    res = step_checked(sim, 10)
    assert res.status.phase == Phase.ROLLED_BACK
    sim.action = "resume"
    step_checked(sim, 10)
    sim.action = "retry"
    step_checked(sim, 10)
    assert sim.status.phase in (Phase.PENDING, Phase.PROGRESSING)
