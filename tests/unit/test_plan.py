"""Table-driven tests of the pure planner, driven through the in-memory two-Deployment simulator.

Every test states what a user of `kubectl get/describe ftr` or of their Service would notice:
replica counts on each track, phase/step/weight in status, conditions and events. The simulator
(`simcluster.Sim`) makes pods Ready `lag` plan calls after a scale-up and removes them at once on a
scale-down (the worst case for capacity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from simcluster import Sim, Track

from ftrollout import api
from ftrollout.api import Phase, RollbackReason
from ftrollout.plan import ACTIONS, Observation, PodGil, Result, Workload, plan

# (weight, pause duration or None for an indefinite pause)
StepDef = tuple[int, str | None]
DESIGN_STEPS: tuple[StepDef, ...] = ((10, "5m"), (50, "10m"), (100, None))


def make_spec(
    steps: tuple[StepDef, ...] = DESIGN_STEPS,
    *,
    metrics: tuple[str, ...] = (),
    failure_limit: int = 2,
    on_inconclusive: str = "Pause",
    gil: dict[str, Any] | None = None,
    races: dict[str, Any] | None = None,
    paused: bool = False,
) -> api.RolloutSpec:
    raw: dict[str, Any] = {
        "targetRef": {"name": "app"},
        "freeThreaded": {"image": "registry.example/app:2.0-py3.14t"},
        "steps": [{"weight": w, "pause": {} if d is None else {"duration": d}} for w, d in steps],
        "paused": paused,
        "guardrails": {
            "gilFallback": gil or {"maxPods": 0, "action": "Rollback"},
            "raceBudget": races or {"maxIncidents": 3, "window": "1h", "action": "Rollback"},
        },
    }
    if metrics:
        raw["analysis"] = {
            "interval": "1m",
            "failureLimit": failure_limit,
            "onInconclusive": on_inconclusive,
            "metrics": [{"name": m, "query": "up", "threshold": {"max": 1}} for m in metrics],
        }
    return api.parse_spec(raw)


def cond(status: api.RolloutStatus, type_: str) -> api.Condition:
    found = [c for c in status.conditions if c.type == type_]
    assert len(found) == 1, f"expected exactly one {type_} condition, got {status.conditions}"
    return found[0]


def reached(idx: int) -> Callable[[Sim], bool]:
    """Predicate: step `idx` reached (its replicas Ready, pause clock running)."""
    return lambda s: s.status.step_index == idx and s.status.step_started_at is not None


def at_step(sim: Sim, idx: int, **extra: object) -> Sim:
    """Reconcile until step `idx` is reached (`extra` goes into every observation)."""
    for _ in range(200):
        if reached(idx)(sim):
            return sim
        sim.step(1.0, **extra)
    raise AssertionError(f"step {idx} not reached: {sim.status.message}")


def pause_elapsed(sim: Sim, seconds: float) -> None:
    """Let wall-clock time pass without a reconcile in between (the shell's requeue)."""
    sim.now += timedelta(seconds=seconds)


def step_checked(sim: Sim, n: int, advance: float = 1.0, **extra: object) -> Result:
    res = sim.step(advance, **extra)
    assert sim.ready >= n, f"ready capacity {sim.ready} < {n}: std={sim.std} ft={sim.ft}"
    return res


# ---------------------------------------------------------------------- first reconcile


@pytest.mark.parametrize(
    ("n", "weight", "ft"),
    [
        (10, 10, 1),
        (10, 50, 5),
        (10, 100, 10),
        (1, 10, 1),
        (3, 10, 1),
        (3, 34, 2),
        (7, 33, 3),
        (20, 5, 1),
        (4, 25, 1),
        (4, 26, 2),
        (30, 1, 1),
        (99, 1, 1),
    ],
)
def test_first_reconcile_creates_twin_at_step0_with_ceil_share(
    n: int, weight: int, ft: int
) -> None:
    """ft = ceil(N * w / 100); the standard track is untouched on the very first reconcile."""
    assert ft == math.ceil(n * weight / 100)
    steps: tuple[StepDef, ...] = ((weight, "1m"), (100, None)) if weight < 100 else ((100, None),)
    sim = Sim(make_spec(steps), n=n)
    res = sim.step()
    assert res.twin_replicas == ft
    assert res.target_replicas == n  # untouched: nothing Ready on the twin yet
    st = res.status
    assert st.phase == Phase.PROGRESSING
    assert st.step_index == 0
    assert st.weight == weight
    assert st.revision == "rev1"
    assert st.observed_generation == 1
    assert st.replicas.target == n
    assert st.replicas.standard == n
    assert st.replicas.free_threaded == ft
    assert st.replicas.ready == n
    assert st.step_started_at is None
    assert sim.events(res) == ["RolloutStarted", "StepStarted"]
    assert cond(st, "Progressing").status == "True"
    assert cond(st, "Available").status == "True"


@pytest.mark.parametrize("lag", [1, 2, 5])
def test_standard_lowered_only_as_twin_pods_become_ready(lag: int) -> None:
    sim = Sim(make_spec(((30, "1m"), (100, None))), n=10, lag=lag)
    seen: list[tuple[int | None, int | None, int]] = []
    for _ in range(lag + 3):
        ft_ready = sim.ft.ready
        res = step_checked(sim, 10)
        seen.append((res.target_replicas, res.twin_replicas, ft_ready))
        # The standard track is only lowered by what is Ready on the free-threaded track.
        assert res.target_replicas is not None
        assert res.target_replicas >= 10 - ft_ready
    # Pods become Ready `lag` calls after the twin is created.
    assert [s[0] for s in seen[:lag]] == [10] * lag
    assert seen[lag][0] == 7  # N - ft once the 3 twin pods are Ready
    assert sim.replicas == (7, 3)
    assert sim.status.step_started_at is not None
    assert "StepReached" in sim.all_events()


def test_step_reached_sets_clock_and_emits_one_event() -> None:
    sim = at_step(Sim(make_spec(), n=10), 0)
    started = sim.status.step_started_at
    assert started is not None
    assert sim.all_events().count("StepReached") == 1
    sim.run(5)
    assert sim.status.step_started_at == started
    assert sim.all_events().count("StepReached") == 1


def test_pending_until_the_target_itself_is_ready() -> None:
    """A target still rolling out (not all N Ready) is not split: the rollout waits in Pending."""
    sim = Sim(make_spec(), n=10)
    sim.std = Track(10, 6)
    obs = sim.observe()
    res = plan(sim.spec, sim.status, obs)
    assert res.status.phase == Phase.PENDING
    assert res.status.step_index is None
    assert res.target_replicas == 10
    assert not res.twin_replicas
    assert "StepStarted" not in [e.reason for e in res.events]
    assert "waiting for 10 Ready standard replicas" in res.status.message
    # ... and starts once they are Ready.
    res2 = plan(sim.spec, res.status, Observation(**{**obs.__dict__, "target": Workload(10, 10)}))
    assert res2.status.phase == Phase.PROGRESSING
    assert res2.twin_replicas == 1


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


# ---------------------------------------------------------------------- actions


def test_indefinite_pause_mid_rollout_waits_for_promote() -> None:
    sim = at_step(Sim(make_spec(((10, None), (50, "1m"), (100, None))), n=10), 0)
    sim.run(10, advance=3600)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.step_index == 0
    assert sim.replicas == (9, 1)
    sim.action = "promote"
    res = sim.step()
    assert res.clear_action
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.step_index == 1
    assert res.status.weight == 50
    assert "StepPromoted" in sim.events(res)
    sim.until(reached(1))
    assert sim.replicas == (5, 5)


def test_promote_skips_a_timed_pause() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "promote"
    res = sim.step()
    assert res.status.step_index == 1
    assert res.status.phase == Phase.PROGRESSING


@pytest.mark.parametrize("lag", [1, 3])
def test_promote_full_promotes_at_once_but_scales_standard_down_only_as_ft_ready(
    lag: int,
) -> None:
    sim = at_step(Sim(make_spec(), n=10, lag=lag), 0)
    sim.action = "promote-full"
    res = step_checked(sim, 10)
    assert res.clear_action
    assert res.status.phase == Phase.PROMOTED
    assert res.status.weight == 100
    assert res.twin_replicas == 10
    assert res.target_replicas == 9  # only 1 free-threaded pod is Ready yet
    assert "Promoted" in sim.events(res)
    while sim.replicas != (0, 10) or sim.ready < 10:
        ft_ready = sim.ft.ready
        res = step_checked(sim, 10)
        assert res.target_replicas is not None
        assert res.target_replicas >= 10 - ft_ready
        assert res.status.phase == Phase.PROMOTED
    sim.run(5, advance=3600)
    assert sim.status.phase == Phase.PROMOTED
    assert sim.replicas == (0, 10)


def test_promote_full_from_pending_goes_straight_to_promoted() -> None:
    sim = Sim(make_spec(), n=5)
    sim.action = "promote-full"
    res = step_checked(sim, 5)
    assert res.status.phase == Phase.PROMOTED
    assert res.target_replicas == 5
    assert res.twin_replicas == 5
    sim.run(3)
    assert sim.replicas == (0, 5)


def test_pause_and_resume_actions_flip_spec_paused() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "pause"
    res = sim.step()
    assert res.clear_action
    assert res.set_paused is True
    assert "PauseRequested" in sim.events(res)
    assert sim.spec.paused  # the shell patched spec.paused
    pause_elapsed(sim, 3600)
    sim.run(5)
    assert sim.status.step_index == 0
    assert sim.status.phase == Phase.PAUSED
    assert "spec.paused" in sim.status.message
    sim.action = "resume"
    res = sim.step()
    assert res.clear_action
    assert res.set_paused is False
    assert "ResumeRequested" in sim.events(res)
    sim.until(reached(1))
    assert sim.replicas == (5, 5)


def test_resume_continues_an_indefinite_pause() -> None:
    sim = at_step(Sim(make_spec(((10, None), (100, None))), n=10), 0)
    sim.step()
    assert sim.status.phase == Phase.PAUSED
    sim.action = "resume"
    res = sim.step()
    assert res.set_paused is False
    assert res.status.step_index == 1
    assert res.status.phase == Phase.PROGRESSING


@pytest.mark.parametrize("lag", [1, 4])
def test_manual_rollback_restores_standard_first_then_lowers_ft(lag: int) -> None:
    sim = at_step(Sim(make_spec(), n=10, lag=lag), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    assert sim.replicas == (5, 5)
    sim.action = "rollback"
    res = step_checked(sim, 10)
    assert res.clear_action
    st = res.status
    assert st.phase == Phase.ROLLED_BACK
    assert st.rollback is not None
    assert st.rollback.reason == RollbackReason.MANUAL
    assert st.weight == 0
    assert res.target_replicas == 10  # standard back to N first
    assert res.twin_replicas == 5  # free-threaded kept until standard pods are Ready
    assert [(e.type, e.reason) for e in res.events] == [("Warning", "RolledBack")]
    assert cond(st, "Progressing").status == "False"
    assert cond(st, "Progressing").reason == "RolledBack"
    while sim.replicas != (10, 0):
        std_ready = sim.std.ready
        res = step_checked(sim, 10)
        assert res.twin_replicas is not None
        assert res.twin_replicas >= 10 - std_ready
    assert sim.std.ready == 10
    # It stays rolled back, whatever time passes.
    sim.run(5, advance=3600)
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.replicas == (10, 0)


def test_rollback_twice_is_ignored_and_keeps_the_first_reason() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "rollback"
    first = sim.step().status.rollback
    sim.action = "rollback"
    res = sim.step()
    assert res.clear_action
    assert sim.events(res) == ["ActionIgnored"]
    assert res.status.rollback == first


def test_retry_after_rollback_restarts_at_step_0() -> None:
    sim = at_step(Sim(make_spec(), n=10), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    sim.action = "rollback"
    sim.until(lambda s: s.replicas == (10, 0))
    sim.action = "retry"
    res = step_checked(sim, 10)
    assert res.clear_action
    assert "Retry" in sim.events(res)
    assert res.status.rollback is None
    assert res.status.step_index == 0
    assert res.status.phase == Phase.PROGRESSING
    assert res.twin_replicas == 1
    sim.until(reached(0))
    assert sim.replicas == (9, 1)


def test_retry_after_a_race_rollback_does_not_count_the_old_crashes_again() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 0, "window": "10m"}), n=10), 0)
    sim.incident(pod="app-ft-0", exit_code=139)  # stays in the shell's cache after the rollback
    # Rollback, retry and step 1 again all within the second of the crash (times have whole
    # seconds; kwok and a quick `kubectl ftr retry` do get there that fast).
    sim.until(lambda s: s.status.phase == Phase.ROLLED_BACK, advance=0)
    assert sim.status.rollback is not None
    assert sim.status.rollback.reason == RollbackReason.RACE_BUDGET
    sim.until(lambda s: s.replicas == (10, 0), advance=0)
    sim.action = "retry"
    sim.until(lambda s: s.status.phase == Phase.PROGRESSING, advance=0)
    sim.until(reached(0))
    sim.run(3)
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.races.incidents == 0
    assert sim.status.rollback is None
    sim.incident(pod="app-ft-1", exit_code=139)  # a crash of this attempt does count
    sim.until(lambda s: s.status.phase == Phase.ROLLED_BACK)
    assert [i.pod for i in sim.status.races.recent] == ["app-ft-1"]


@pytest.mark.parametrize("phase_setup", ["progressing", "promoted"])
def test_retry_outside_rollback_or_failure_is_ignored(phase_setup: str) -> None:
    sim = at_step(Sim(make_spec()), 0)
    if phase_setup == "promoted":
        sim.action = "promote-full"
        sim.run(3)
    before = sim.status
    sim.action = "retry"
    res = sim.step()
    assert res.clear_action
    assert sim.events(res) == ["ActionIgnored"]
    assert res.status.phase == before.phase
    assert res.status.step_index == before.step_index


@pytest.mark.parametrize("action", ["promote", "promote-full"])
def test_promote_after_rollback_is_ignored(action: str) -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "rollback"
    sim.run(3)
    sim.action = action
    res = sim.step()
    assert res.clear_action
    assert res.status.phase == Phase.ROLLED_BACK
    assert sim.events(res) == ["ActionIgnored"]
    assert res.twin_replicas == 0


@pytest.mark.parametrize("action", ["Promote", "abort", "", "promote ", "skip"])
def test_unknown_action_warns_and_is_cleared(action: str) -> None:
    sim = at_step(Sim(make_spec()), 0)
    before = sim.status
    sim.action = action
    res = sim.step()
    assert res.clear_action
    assert [(e.type, e.reason) for e in res.events] == [("Warning", "UnknownAction")]
    assert repr(action) in res.events[0].message
    assert res.status.phase == before.phase
    assert res.status.step_index == before.step_index
    assert res.set_paused is None


PHASE_SETUPS = ["pending", "step0", "paused-indefinite", "promoted", "rolledback", "failed"]


def _setup(name: str) -> Sim:
    if name == "pending":
        sim = Sim(make_spec(), n=3)
        sim.std = Track(3, 1)
        sim.step()
        return sim
    if name == "failed":
        sim = Sim(make_spec(), n=3)
        sim.spec_error = api.SpecError("spec.steps", "bad")
        sim.step()
        sim.spec_error = None
        sim.target_exists = False
        sim.step()
        return sim
    sim = at_step(Sim(make_spec(((10, None), (100, None))), n=3), 0)
    if name == "paused-indefinite":
        sim.step()
    elif name == "promoted":
        sim.action = "promote-full"
        sim.run(3)
    elif name == "rolledback":
        sim.action = "rollback"
        sim.run(3)
    return sim


@pytest.mark.parametrize("setup", PHASE_SETUPS)
@pytest.mark.parametrize("action", [*ACTIONS, "nonsense"])
def test_every_action_is_cleared_once_acted_on(setup: str, action: str) -> None:
    """One-shot actions: whatever the phase, the annotation is removed after one reconcile."""
    sim = _setup(setup)
    sim.action = action
    res = sim.step()
    assert res.clear_action is True
    assert res.events, "every action leaves a trace in the events"
    assert res.status.phase in set(Phase)
    # The next reconcile has no action: nothing to clear.
    assert sim.step().clear_action is False


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


# ---------------------------------------------------------------------- new revision


@pytest.mark.parametrize("lag", [1, 3])
def test_new_revision_mid_rollout_restores_standard_and_restarts_at_step0(lag: int) -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",)), n=10, lag=lag), 0)
    sim.analysis_round("Failed")
    sim.step()
    sim.analysis_round("Successful")
    pause_elapsed(sim, 301)
    sim.until(reached(1), limit=400)
    assert sim.status.analysis.failed_rounds == 1
    assert sim.replicas == (5, 5)
    sim.revision = "rev2"
    res = step_checked(sim, 10)
    st = res.status
    assert "NewRevision" in sim.events(res)
    assert st.revision == "rev2"
    assert st.phase == Phase.PENDING
    assert st.step_index is None
    assert st.analysis.failed_rounds == 0
    assert st.analysis.metrics == []
    assert res.target_replicas == 10  # standard back to N first
    assert res.twin_replicas == 5  # twin kept until the standard pods are Ready
    while not reached(0)(sim):
        step_checked(sim, 10)
    assert sim.replicas == (9, 1)
    assert sim.status.replicas.target == 10


def test_new_revision_after_rollback_starts_again() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "rollback"
    sim.run(3)
    sim.revision = "rev2"
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.rollback is None
    assert res.status.step_index == 0


def test_new_revision_after_promotion_returns_to_standard_then_starts_again() -> None:
    sim = at_step(Sim(make_spec(), n=6, lag=2), 0)
    sim.action = "promote-full"
    sim.until(lambda s: s.replicas == (0, 6) and s.ready == 6)
    sim.revision = "rev2"
    res = step_checked(sim, 6)
    assert res.status.phase == Phase.PENDING
    assert res.target_replicas == 6
    assert res.twin_replicas == 6
    while not reached(0)(sim):
        step_checked(sim, 6)
    assert sim.replicas == (5, 1)


# ---------------------------------------------------------------------- target / spec errors


def test_target_missing_on_first_reconcile_fails_without_touching_replicas() -> None:
    sim = Sim(make_spec())
    sim.target_exists = False
    res = sim.step()
    assert res.status.phase == Phase.FAILED
    assert res.target_replicas is None
    assert res.twin_replicas is None
    c = cond(res.status, "Progressing")
    assert (c.status, c.reason) == ("False", "TargetNotFound")
    assert "'app'" in c.message
    assert [(e.type, e.reason) for e in res.events] == [("Warning", "TargetNotFound")]
    # Appears later: starts normally.
    sim.target_exists = True
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.twin_replicas == 1
    assert "RolloutStarted" in sim.events(res)


def test_target_deleted_mid_rollout_then_back_resumes_the_same_step() -> None:
    sim = at_step(Sim(make_spec()), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    sim.target_exists = False
    for _ in range(3):
        res = sim.step()
        assert res.status.phase == Phase.FAILED
        assert (res.target_replicas, res.twin_replicas) == (None, None)
        assert res.status.step_index == 1
    assert sim.all_events().count("TargetNotFound") == 1
    sim.target_exists = True
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.step_index == 1
    assert cond(res.status, "Progressing").status == "True"
    assert (res.target_replicas, res.twin_replicas) == (5, 5)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("spec.freeThreaded.container", "container 'web' not found in the target's pod template"),
        ("spec.steps", "the last step must have weight 100"),
        ("spec.analysis.interval", "invalid duration 'soon'"),
    ],
)
def test_invalid_spec_fails_naming_the_field_without_touching_replicas(
    field: str, message: str
) -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.spec_error = api.SpecError(field, message)
    res = sim.step()
    st = res.status
    assert st.phase == Phase.FAILED
    assert res.target_replicas is None
    assert res.twin_replicas is None
    c = cond(st, "Progressing")
    assert (c.status, c.reason) == ("False", "InvalidSpec")
    assert field in c.message
    assert field in st.message
    assert [(e.type, e.reason) for e in res.events] == [("Warning", "InvalidSpec")]
    # The same error on the next reconcile: no new event, identical status.
    res2 = sim.step()
    assert res2.events == ()
    assert res2.status == st
    # Fixed: carries on at the same step.
    sim.spec_error = None
    res3 = sim.step()
    assert res3.status.phase == Phase.PROGRESSING
    assert res3.status.step_index == 0
    assert (res3.target_replicas, res3.twin_replicas) == (9, 1)


def test_missing_spec_is_treated_as_invalid() -> None:
    sim = Sim(make_spec())
    res = plan(None, sim.status, sim.observe())
    assert res.status.phase == Phase.FAILED
    assert (res.target_replicas, res.twin_replicas) == (None, None)
    assert cond(res.status, "Progressing").reason == "InvalidSpec"


@pytest.mark.parametrize("error", ["spec", "target"])
def test_a_rolled_back_rollout_stays_rolled_back_after_a_transient_failure(error: str) -> None:
    """Decision: Failed because of a spec or target problem is a pause in observation, not a
    reset: once fixed, a RolledBack rollout is RolledBack again (never back to its step)."""
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "rollback"
    sim.run(3)
    if error == "spec":
        sim.spec_error = api.SpecError("spec.steps", "bad")
    else:
        sim.target_exists = False
    assert sim.step().status.phase == Phase.FAILED
    sim.spec_error = None
    sim.target_exists = True
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert (res.target_replicas, res.twin_replicas) == (10, 0)
    sim.run(5, advance=600)
    assert sim.status.phase == Phase.ROLLED_BACK
    assert sim.replicas == (10, 0)


def test_a_promoted_rollout_stays_promoted_after_a_transient_failure() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "promote-full"
    sim.run(4)
    assert sim.status.phase == Phase.PROMOTED
    sim.spec_error = api.SpecError("spec.steps", "bad")
    sim.step()
    sim.spec_error = None
    res = sim.step()
    assert (res.target_replicas, res.twin_replicas) == (0, 10)  # replicas are right either way
    assert res.status.phase == Phase.PROMOTED
    assert res.status.promoted_at is not None
    sim.target_exists = False  # the target deleted and re-created: still promoted
    sim.step()
    assert sim.status.phase == Phase.FAILED
    sim.target_exists = True
    sim.step()
    assert sim.status.phase == Phase.PROMOTED
    sim.revision = "rev2"  # a new revision starts over, unpromoted
    res = sim.step()
    assert res.status.phase == Phase.PENDING
    assert res.status.promoted_at is None


# ---------------------------------------------------------------------- outside changes


@pytest.mark.parametrize(
    ("new_n", "split_after"),
    [(20, (18, 2)), (5, (4, 1)), (11, (9, 2)), (1, (0, 1))],
)
def test_target_scaled_by_someone_else_becomes_the_new_total(
    new_n: int, split_after: tuple[int, int]
) -> None:
    sim = at_step(Sim(make_spec(), n=10), 0)
    sim.step()
    assert sim.replicas == (9, 1)
    sim.scale_target(new_n)
    res = sim.step()
    assert "TargetScaled" in sim.events(res)
    assert res.status.replicas.target == new_n
    assert res.status.step_index == 0
    sim.until(lambda s: s.replicas == split_after and s.ready >= new_n)
    assert sim.all_events().count("TargetScaled") == 1
    assert sim.status.replicas.target == new_n


def test_own_write_landing_without_status_is_not_someone_elses_scale() -> None:
    """The operator lowered the target to 9 but its status patch was lost (crash, conflict):
    the next reconcile sees target=9 with a status still saying standard=10. That is not
    `kubectl scale`."""
    sim = Sim(make_spec(), n=10)
    sim.step()  # twin 1 created, standard 10
    stale = sim.status
    res = sim.step()  # twin Ready: lowers the standard track to 9
    assert res.target_replicas == 9
    assert stale.replicas.standard == 10
    sim.status = stale  # status write lost, replica write landed
    res = sim.step()
    assert "TargetScaled" not in sim.events(res)
    assert res.status.replicas.target == 10
    assert res.target_replicas == 9


def test_own_write_in_flight_while_pods_moved_on_is_not_someone_elses_scale() -> None:
    """Lost status patch mid-transition: the operator lowered the target 10 -> 8 (2 twin pods
    Ready), its status still says 10, and by the next reconcile 4 twin pods are Ready (it would
    now write 6). 8 lies between its last recorded write and its next one: its own, in flight.
    Decision: a kubectl scale to a value strictly inside that in-flight range is not followed
    (indistinguishable); once a step has converged any change is followed."""
    sim = Sim(make_spec(((50, "1m"), (100, None))), n=10, lag=3)
    sim.step()
    sim.ft = Track(5, 2, [1, 1, 1])
    stale = sim.status
    res = sim.step(advance=0)
    assert res.target_replicas == 8
    sim.status = stale
    sim.ft = Track(5, 4, [1])
    res = sim.step()
    assert "TargetScaled" not in sim.events(res)
    assert res.status.replicas.target == 10
    assert res.target_replicas == 6


@pytest.mark.xfail(
    strict=True,
    reason="plan cannot tell a stale read of the target (watch cache behind the operator's own "
    "raise) from kubectl scale; needs the shell to pass what it last wrote (e.g. an annotation "
    "written with spec.replicas)",
)
def test_stale_read_after_the_operators_own_raise_is_not_someone_elses_scale() -> None:
    sim = at_step(Sim(make_spec(), n=10), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    sim.revision = "rev2"  # a new revision: standard back to N first
    res = sim.step()
    assert res.target_replicas == 10
    # The next reconcile reads the target from a cache that has not seen the write yet.
    res = plan(sim.spec, res.status, sim.observe(target=Workload(5, 5)))
    assert "TargetScaled" not in [e.reason for e in res.events]
    assert res.status.replicas.target == 10


@pytest.mark.xfail(
    strict=True,
    reason="a status write lost across a phase change (Pending -> step 1) makes the operator's "
    "own write look like kubectl scale: N drops to 0; needs the shell to pass what it last wrote",
)
def test_status_lost_across_step_start_does_not_shrink_n() -> None:
    sim = Sim(make_spec(((100, None),)), n=1, lag=1)
    sim.run(2)  # promoted-like: standard 0, free-threaded 1
    sim.revision = "rev2"
    sim.step()  # Pending: standard back to 1
    stale = sim.status
    sim.step()  # standard Ready: step 1 starts again, standard lowered to 0
    sim.status = stale  # that status write was lost
    res = sim.step()
    assert res.status.replicas.target == 1
    assert "TargetScaled" not in sim.events(res)


def test_twin_deleted_by_hand_is_recreated_with_the_steps_count() -> None:
    sim = at_step(Sim(make_spec(), n=10), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    started = sim.status.step_started_at
    sim.delete_twin()
    res = sim.step()
    assert res.twin_replicas == 5
    assert res.status.step_index == 1
    assert res.status.step_started_at == started
    assert res.target_replicas == 5  # not raised, not lowered
    sim.run(3)
    assert sim.replicas == (5, 5)


# ---------------------------------------------------------------------- GIL fallback


GIL_CASES: list[tuple[str, tuple[PodGil, ...], tuple[int, int, int, int], list[str], str, str]] = [
    # name, pods, (pods, disabled, enabled, unknown), fallbackModules, summary, ModeIntegrity
    ("no pods", (), (0, 0, 0, 0), [], "-", "Unknown"),
    ("all off", (PodGil("a", False), PodGil("b", False)), (2, 2, 0, 0), [], "off", "True"),
    (
        "one unknown",
        (PodGil("a", False), PodGil("b", None)),
        (2, 1, 0, 1),
        [],
        "off 1/2",
        "Unknown",
    ),
    (
        "numpy",
        (PodGil("a", False), PodGil("b", True, modules=("numpy",))),
        (2, 1, 1, 0),
        ["numpy"],
        "ON(1)",
        "False",
    ),
    (
        "not a free-threading build",
        (PodGil("a", False, build=False),),
        (1, 0, 1, 0),
        [],
        "ON(1)",
        "False",
    ),
    (
        "two modules, sorted, deduplicated",
        (
            PodGil("a", True, modules=("orjson", "numpy")),
            PodGil("b", True, modules=("numpy",)),
        ),
        (2, 0, 2, 0),
        ["numpy", "orjson"],
        "ON(2)",
        "False",
    ),
]


@pytest.mark.parametrize(
    ("name", "pods", "counts", "modules", "summary", "integrity"),
    GIL_CASES,
    ids=[c[0] for c in GIL_CASES],
)
def test_gil_status_and_mode_integrity(
    name: str,
    pods: tuple[PodGil, ...],
    counts: tuple[int, int, int, int],
    modules: list[str],
    summary: str,
    integrity: str,
) -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 5, "action": "Rollback"})), 0)
    sim.pods = pods
    st = sim.step().status
    assert (st.gil.pods, st.gil.disabled, st.gil.enabled, st.gil.unknown) == counts
    assert st.gil.fallback_modules == modules
    assert st.gil.summary == summary
    assert cond(st, "ModeIntegrity").status == integrity
    assert st.phase == Phase.PROGRESSING  # within maxPods


def test_gil_fallback_beyond_max_pods_rolls_back_naming_module_and_pod() -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 1, "action": "Rollback"}), n=10), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    sim.pods = (PodGil("app-ft-abc", True, modules=("numpy",)),)
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING  # 1 pod allowed
    sim.pods = (
        PodGil("app-ft-abc", True, modules=("numpy",)),
        PodGil("app-ft-def", True, modules=("numpy",)),
    )
    res = step_checked(sim, 10)
    st = res.status
    assert st.phase == Phase.ROLLED_BACK
    assert st.rollback is not None
    assert st.rollback.reason == RollbackReason.GIL_FALLBACK
    assert "numpy" in st.rollback.message
    assert "app-ft-abc" in st.rollback.message
    assert "maxPods 1" in st.rollback.message
    assert res.target_replicas == 10
    rb = [e for e in res.events if e.reason == "RolledBack"]
    assert len(rb) == 1
    assert rb[0].type == "Warning"
    assert "GILFallback" in rb[0].message
    mi = cond(st, "ModeIntegrity")
    assert (mi.status, mi.reason) == ("False", "GILFallback")
    assert "numpy" in mi.message


def test_not_a_free_threading_build_counts_as_fallback() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.pods = (PodGil("app-ft-0", enabled=False, build=False),)
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.GIL_FALLBACK
    assert "not a free-threading build" in res.status.rollback.message


def test_unknown_gil_state_never_triggers_the_guardrail() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.pods = (PodGil("app-ft-0", enabled=None),)
    sim.run(3)
    assert sim.status.phase == Phase.PROGRESSING
    assert cond(sim.status, "ModeIntegrity").status == "Unknown"


def test_gil_fallback_with_pause_action_holds_the_step() -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Pause"})), 0)
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    res = sim.step()
    assert res.status.phase == Phase.PAUSED
    assert "GILFallback" in res.status.message
    assert [e.reason for e in res.events] == ["GuardrailPaused"]
    assert res.status.rollback is None
    pause_elapsed(sim, 3600)
    sim.run(5)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.step_index == 0
    assert sim.replicas == (9, 1)
    assert sim.all_events().count("GuardrailPaused") == 1


def test_resume_lifts_a_guardrail_pause_once_the_breach_is_gone() -> None:
    """Decision: a guardrail Pause is lifted by `kubectl ftr resume` (like Argo's resume after
    a paused analysis); it does not lift itself. If the breach persists the guardrail pauses
    again at once."""
    sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Pause"})), 0)
    sim.pods = (PodGil("app-ft-0", True),)
    sim.step()
    sim.pods = (PodGil("app-ft-0", False),)
    pause_elapsed(sim, 3600)
    sim.run(3)
    assert sim.status.phase == Phase.PAUSED  # no self-resume
    sim.pods = (PodGil("app-ft-0", True),)
    sim.action = "resume"
    res = sim.step()
    assert res.status.phase == Phase.PAUSED  # breach still there: held again
    assert "GuardrailPaused" in sim.events(res)
    sim.pods = (PodGil("app-ft-0", False),)
    sim.action = "resume"
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.step_index == 1


# ---------------------------------------------------------------------- race budget


@pytest.mark.parametrize(
    ("max_incidents", "codes", "rolled_back"),
    [
        (3, (139, 139, 134), False),
        (3, (139, 139, 134, 139), True),
        (0, (134,), True),
        (1, (139,), False),
        (1, (139, 134), True),
    ],
)
def test_race_budget(max_incidents: int, codes: tuple[int, ...], rolled_back: bool) -> None:
    races = {"maxIncidents": max_incidents, "window": "1h", "action": "Rollback"}
    sim = at_step(Sim(make_spec(races=races)), 0)
    sim.now += timedelta(seconds=60 * len(codes))  # the crashes below happen in this attempt
    for i, code in enumerate(codes):
        sim.incident(pod=f"app-ft-{i}", exit_code=code, ago=60 * i)
    res = sim.step()
    st = res.status
    assert st.races.incidents == len(codes)
    assert st.races.budget == max_incidents
    assert st.races.window == "1h"
    assert st.races.summary == f"{len(codes)}/{max_incidents}"
    assert len(st.races.recent) == len(codes)
    assert sim.events(res).count("RaceIncident") == len(codes)
    rc = cond(st, "RaceBudget")
    if rolled_back:
        assert st.phase == Phase.ROLLED_BACK
        assert st.rollback is not None
        assert st.rollback.reason == RollbackReason.RACE_BUDGET
        assert f"{len(codes)} free-threaded incidents in 1h" in st.rollback.message
        assert f"budget of {max_incidents}" in st.rollback.message
        for code in set(codes):
            assert str(code) in st.rollback.message
        assert (rc.status, rc.reason) == ("False", "BudgetExceeded")
    else:
        assert st.phase == Phase.PROGRESSING
        assert (rc.status, rc.reason) == ("True", "WithinBudget")


def test_incidents_older_than_the_window_do_not_count() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 1, "window": "10m"})), 0)
    sim.now += timedelta(seconds=60)
    sim.incident(pod="a", ago=3600)
    sim.incident(pod="b", ago=601)
    sim.incident(pod="c", ago=30)
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.races.incidents == 1
    assert [i.pod for i in res.status.races.recent] == ["c"]


def test_incidents_slide_out_of_the_window() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 5, "window": "10m"})), 0)
    sim.incident(pod="a")
    res = sim.step()
    assert res.status.races.incidents == 1
    assert res.requeue_after is not None
    assert res.requeue_after <= 600
    sim.incidents = ()  # the shell passes only what it sees now; status remembers the rest
    sim.step(advance=300)
    assert sim.status.races.incidents == 1
    sim.step(advance=400)
    sim.step()
    assert sim.status.races.incidents == 0
    assert sim.status.races.recent == []


def test_the_same_incident_seen_twice_counts_once() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 1, "window": "1h"})), 0)
    inc = sim.incident(pod="app-ft-0", exit_code=139)
    sim.incidents = (inc, inc)
    res = sim.step()
    assert res.status.races.incidents == 1
    assert sim.events(res).count("RaceIncident") == 1
    for _ in range(3):
        res = sim.step()
        assert res.status.races.incidents == 1
        assert "RaceIncident" not in sim.events(res)
    assert sim.status.phase == Phase.PROGRESSING


def test_race_budget_with_pause_action() -> None:
    races = {"maxIncidents": 0, "window": "1h", "action": "Pause"}
    sim = at_step(Sim(make_spec(races=races)), 0)
    sim.incident(pod="app-ft-0", exit_code=134)
    res = sim.step()
    assert res.status.phase == Phase.PAUSED
    assert "RaceBudget" in res.status.message
    assert "GuardrailPaused" in sim.events(res)
    pause_elapsed(sim, 3600)
    sim.run(3)
    assert sim.status.step_index == 0


def test_race_window_survives_an_operator_restart() -> None:
    """recent incidents are kept in status: a restart (fresh observation without the old
    crashes) still counts them."""
    sim = at_step(Sim(make_spec(races={"maxIncidents": 1, "window": "1h"})), 0)
    sim.incident(pod="a")
    sim.step()
    sim.incidents = ()
    sim.status = api.parse_status(api.dump(sim.status))
    sim.incident(pod="b")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK


# ---------------------------------------------------------------------- analysis


def test_failed_rounds_count_and_beyond_failure_limit_roll_back() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",), failure_limit=2)), 0)
    for expected in (1, 2):
        sim.analysis_round("Failed")
        res = sim.step()
        assert res.status.analysis.failed_rounds == expected
        assert res.status.phase == Phase.PROGRESSING
        assert "AnalysisFailed" in sim.events(res)
        hc = cond(res.status, "AnalysisHealthy")
        assert (hc.status, hc.reason) == ("False", "MetricsFailed")
    sim.analysis_round("Failed")
    res = sim.step()
    st = res.status
    assert st.phase == Phase.ROLLED_BACK
    assert st.rollback is not None
    assert st.rollback.reason == RollbackReason.ANALYSIS_FAILED
    assert "3 failed analysis rounds (failureLimit 2)" in st.rollback.message
    assert res.target_replicas == 10


def test_failure_limit_zero_rolls_back_on_the_first_failed_round() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0", "m1"), failure_limit=0)), 0)
    sim.analysis_round("Successful", "Failed")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert "m1: failed" in res.status.rollback.message


def test_a_round_is_counted_once_however_often_it_is_seen() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",), failure_limit=1)), 0)
    sim.analysis_round("Failed")
    sim.run(5)
    assert sim.status.analysis.failed_rounds == 1
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.all_events().count("AnalysisFailed") == 1


def test_inconclusive_with_pause_holds_then_resumes_when_data_returns() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0", "m1"), on_inconclusive="Pause")), 0)
    sim.analysis_round("Successful", "Inconclusive")
    res = sim.step()
    # Inside the step's pause nothing is held yet (the step could not advance anyway): no
    # Warning for the usual first round of a step that finds no series for its new pods.
    assert res.status.phase == Phase.PROGRESSING
    assert "AnalysisInconclusive" not in sim.events(res)
    assert res.status.analysis.inconclusive_rounds == 1
    hc = cond(res.status, "AnalysisHealthy")
    assert (hc.status, hc.reason) == ("Unknown", "Inconclusive")
    pause_elapsed(sim, 3600)
    res = sim.step()  # the pause is over and the latest round is Inconclusive: hold
    assert res.status.phase == Phase.PAUSED
    assert res.status.message.startswith("paused (AnalysisInconclusive): m1")
    assert "AnalysisInconclusive" in sim.events(res)
    sim.run(3)
    assert sim.status.phase == Phase.PAUSED
    assert sim.all_events().count("AnalysisInconclusive") == 1
    assert sim.status.step_index == 0  # never promotes on missing data
    sim.analysis_round("Successful", "Successful")
    res = sim.step()
    assert "AnalysisResumed" in sim.events(res)
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.analysis.inconclusive_rounds == 0
    assert res.status.step_index == 1  # pause long elapsed and the round is Successful


def test_inconclusive_with_rollback_rolls_back() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",), on_inconclusive="Rollback")), 0)
    sim.analysis_round("Inconclusive")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.ANALYSIS_INCONCLUSIVE


def test_step_never_advances_without_a_successful_round_after_it_was_reached() -> None:
    sim = Sim(make_spec(metrics=("m0",)))
    sim.step()
    sim.analysis_round("Successful")  # before step 0 was reached: does not count
    sim.until(reached(0))
    pause_elapsed(sim, 3600)
    sim.run(5, advance=600)
    assert sim.status.step_index == 0
    assert "waiting for a successful analysis round" in sim.status.message
    sim.analysis_round("Failed")
    sim.step()
    assert sim.status.step_index == 0
    sim.analysis_round("Successful")
    res = sim.step()
    assert res.status.step_index == 1


def test_a_successful_round_before_the_pause_elapsed_is_enough() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",))), 0)
    sim.analysis_round("Successful")
    sim.step()
    assert sim.status.step_index == 0
    pause_elapsed(sim, 301)
    res = sim.step()
    assert res.status.step_index == 1


def test_every_metric_must_be_successful_to_advance() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0", "m1"))), 0)
    sim.analysis_round("Successful")  # only m0 reported
    pause_elapsed(sim, 3600)
    sim.run(3)
    assert sim.status.step_index == 0


def test_analysis_results_are_visible_in_status() -> None:
    sim = at_step(Sim(make_spec(metrics=("p99-latency", "error-ratio"))), 0)
    sim.analysis_round("Successful", "Failed", names=("p99-latency", "error-ratio"))
    st = sim.step().status
    assert [(m.name, m.phase) for m in st.analysis.metrics] == [
        ("p99-latency", "Successful"),
        ("error-ratio", "Failed"),
    ]
    assert st.analysis.metrics[0].free_threaded == 1.0
    assert st.analysis.metrics[0].standard == 1.0
    assert st.analysis.last_round is not None
    wire = api.dump(st)
    assert wire["analysis"]["metrics"][1]["name"] == "error-ratio"
    assert wire["analysis"]["failedRounds"] == 1


def test_analysis_conditions_without_metrics_and_before_the_first_round() -> None:
    plain = at_step(Sim(make_spec()), 0)
    hc = cond(plain.status, "AnalysisHealthy")
    assert (hc.status, hc.reason) == ("True", "NoAnalysis")
    with_metrics = at_step(Sim(make_spec(metrics=("m0",))), 0)
    hc = cond(with_metrics.status, "AnalysisHealthy")
    assert (hc.status, hc.reason) == ("Unknown", "NoRoundYet")


# ---------------------------------------------------------------------- no-op reconciles


def _converged(name: str) -> Sim:
    if name == "pausing":
        return at_step(Sim(make_spec(metrics=("m0",))), 0)
    if name == "paused-indefinite":
        sim = at_step(Sim(make_spec(((10, None), (100, None)))), 0)
        sim.step()
        return sim
    if name == "promoted":
        sim = at_step(Sim(make_spec()), 0)
        sim.action = "promote-full"
        sim.run(4)
        return sim
    if name == "rolledback":
        sim = at_step(Sim(make_spec()), 0)
        sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
        sim.step()
        sim.pods = ()
        sim.run(3)
        return sim
    if name == "guard-paused":
        sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Pause"})), 0)
        sim.pods = (PodGil("app-ft-0", True),)
        sim.run(3)
        return sim
    if name == "spec-paused":
        sim = at_step(Sim(make_spec(paused=False)), 0)
        sim.spec = sim.spec.model_copy(update={"paused": True})
        sim.run(3)
        return sim
    if name == "inconclusive":
        sim = at_step(Sim(make_spec(metrics=("m0",))), 0)
        sim.analysis_round("Inconclusive")
        pause_elapsed(sim, 3600)
        sim.run(3)
        assert sim.status.message.startswith("paused (AnalysisInconclusive)")
        return sim
    if name == "races":
        sim = at_step(Sim(make_spec()), 0)
        sim.incident(pod="x")
        sim.pods = sim.ft_pods(False)
        sim.run(3)
        return sim
    if name == "target-missing":
        sim = at_step(Sim(make_spec()), 0)
        sim.target_exists = False
        sim.run(2)
        return sim
    if name == "invalid-spec":
        sim = at_step(Sim(make_spec()), 0)
        sim.spec_error = api.SpecError("spec.steps", "bad")
        sim.run(2)
        return sim
    raise AssertionError(name)


CONVERGED = [
    "pausing",
    "paused-indefinite",
    "promoted",
    "rolledback",
    "guard-paused",
    "spec-paused",
    "inconclusive",
    "races",
    "target-missing",
    "invalid-spec",
]


@pytest.mark.parametrize("name", CONVERGED)
def test_a_reconcile_that_changes_nothing_writes_nothing(name: str) -> None:
    sim = _converged(name)
    obs = sim.observe()
    first = plan(sim.spec, sim.status, obs)
    second = plan(sim.spec, first.status, obs)
    assert first.status == sim.status, "converged: the status write is a no-op"
    assert second.status == first.status
    assert first.events == ()
    assert second.events == ()
    live = (obs.target.replicas if obs.target else None, obs.twin.replicas if obs.twin else None)
    for res in (first, second):
        if res.target_replicas is not None:
            assert res.target_replicas == live[0]
        if res.twin_replicas is not None:
            assert res.twin_replicas == live[1]
    # ... also when time passes (less than any pause left).
    later = plan(
        sim.spec,
        sim.status,
        Observation(**{**obs.__dict__, "now": obs.now + timedelta(seconds=30)}),
    )
    assert later.status == sim.status
    assert later.events == ()


def test_converged_walk_writes_only_on_transitions() -> None:
    sim = at_step(Sim(make_spec(), n=10), 0)
    writes = len(sim.writes)
    sim.run(20)
    assert len(sim.writes) == writes
    assert all(r.events == () for r in sim.history[-20:])


def test_last_transition_time_moves_only_when_status_changes() -> None:
    sim = Sim(make_spec(((10, None), (100, None))), n=10)
    sim.step()
    avail = cond(sim.status, "Available").last_transition_time
    prog = cond(sim.status, "Progressing")
    assert prog.status == "True"
    sim.run(5, advance=60)  # step reached: Paused waiting for promote
    assert sim.status.phase == Phase.PAUSED
    assert cond(sim.status, "Available").last_transition_time == avail
    paused_since = cond(sim.status, "Progressing").last_transition_time
    assert paused_since != prog.last_transition_time
    sim.run(5, advance=60)
    assert cond(sim.status, "Progressing").last_transition_time == paused_since
    for c in sim.status.conditions:
        assert c.observed_generation == 1


def test_conditions_carry_the_observed_generation() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.generation = 7
    st = sim.step().status
    assert st.observed_generation == 7
    assert {c.observed_generation for c in st.conditions} == {7}
    assert [c.type for c in st.conditions] == [
        "Available",
        "Progressing",
        "ModeIntegrity",
        "RaceBudget",
        "AnalysisHealthy",
    ]


# ---------------------------------------------------------------------- operator restart


@pytest.mark.parametrize("moment", ["scaling", "reached", "paused", "rolling-back", "promoting"])
def test_restart_mid_rollout_resumes_from_status(moment: str) -> None:
    """A fresh process reads status from the apiserver (wire form) and carries on: same step,
    same pause clock, no second RolloutStarted/StepStarted, no scaling beyond the plan."""
    sim = Sim(make_spec(((10, "5m"), (50, None), (100, None))), n=10, lag=3)
    if moment == "scaling":
        sim.step()
        sim.step()
    elif moment == "reached":
        sim.until(reached(0))
    elif moment == "paused":
        sim.until(reached(0))
        pause_elapsed(sim, 301)
        sim.until(reached(1))
        sim.step()
    elif moment == "rolling-back":
        sim.until(reached(0))
        pause_elapsed(sim, 301)
        sim.until(reached(1))
        sim.action = "rollback"
        sim.step()
    elif moment == "promoting":
        sim.until(reached(0))
        sim.action = "promote-full"
        sim.step()
    before = sim.status
    cluster = sim.replicas
    sim.status = api.parse_status(api.dump(before))  # what the new process reads
    assert sim.status == before
    res = step_checked(sim, 10)
    assert not {"RolloutStarted", "StepStarted", "NewRevision", "RolledBack", "Promoted"} & set(
        sim.events(res)
    )
    assert res.status.step_index == before.step_index
    assert res.status.step_started_at == before.step_started_at
    assert res.status.phase == before.phase
    assert res.status.rollback == before.rollback
    # No double scaling: each track moves towards its target, never past it.
    assert res.target_replicas is not None
    assert res.twin_replicas is not None
    assert res.target_replicas <= max(cluster[0], before.replicas.standard)
    assert res.twin_replicas <= max(cluster[1], before.replicas.free_threaded)


def test_restart_does_not_restart_the_pause_clock() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.step(advance=200)
    sim.status = api.parse_status(api.dump(sim.status))
    res = sim.step(advance=101)
    assert res.status.step_index == 0
    res = sim.step()
    assert res.status.step_index == 1


# ---------------------------------------------------------------------- status wire form


def test_status_wire_form_has_the_documented_fields() -> None:
    sim = at_step(Sim(make_spec()), 0)
    wire = api.dump(sim.status)
    assert {
        "observedGeneration",
        "revision",
        "phase",
        "stepIndex",
        "weight",
        "replicas",
        "gil",
        "races",
        "analysis",
        "conditions",
        "message",
    } <= set(wire)
    assert wire["replicas"]["freeThreaded"] == 1
    assert wire["replicas"]["standard"] == 9
    assert wire["replicas"]["ready"] == 10
    for c in wire["conditions"]:
        assert set(c) == {
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        }
        assert c["lastTransitionTime"].endswith("Z")


# ---------------------------------------------------------------------- overlapping signals


def test_two_pause_guardrails_each_announce_once() -> None:
    spec = make_spec(
        gil={"maxPods": 0, "action": "Pause"},
        races={"maxIncidents": 0, "window": "1h", "action": "Pause"},
    )
    sim = at_step(Sim(spec), 0)
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    sim.incident(pod="app-ft-0")
    sim.run(5)
    assert sim.status.phase == Phase.PAUSED
    assert sim.all_events().count("GuardrailPaused") == 2
    assert "paused (GILFallback)" in sim.status.message
    assert "paused (RaceBudget)" in sim.status.message


def test_two_guardrails_breached_at_once_roll_back_once_with_the_first_reason() -> None:
    """Decision: mode integrity is checked first, so a reconcile that sees both a GIL fallback
    and a blown race budget records GILFallback; one RolledBack event, not two."""
    sim = at_step(Sim(make_spec(races={"maxIncidents": 0, "window": "1h"})), 0)
    sim.pods = (PodGil("app-ft-0", True),)
    sim.incident(pod="app-ft-0")
    res = sim.step()
    assert sim.events(res).count("RolledBack") == 1
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.GIL_FALLBACK


def test_leftover_pods_do_not_trip_guardrails_of_a_new_revision() -> None:
    """While Pending (standard returning to N after a new revision) the free-threaded pods are
    the previous revision's: their GIL state is shown but neither acted on nor counted, so a
    fixed image is not rolled back for its predecessor's faults."""
    spec = make_spec(
        gil={"maxPods": 0, "action": "Pause"}, races={"maxIncidents": 0, "window": "1h"}
    )
    sim = at_step(Sim(spec, n=10, lag=3), 0)
    sim.revision = "rev2"
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    sim.incident(pod="app-ft-0", exit_code=139)
    res = sim.step()
    assert res.status.phase == Phase.PENDING
    assert res.status.gil.enabled == 1  # shown
    assert res.status.races.incidents == 0  # not counted
    sim.pods = ()
    sim.incidents = ()
    sim.until(reached(0))
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.races.incidents == 0
    assert sim.status.rollback is None


def test_an_analysis_round_of_the_old_revision_never_counts_for_the_new_one() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",), on_inconclusive="Rollback")), 0)
    sim.analysis_round("Successful")
    sim.step()
    sim.revision = "rev2"
    sim.analysis_round("Inconclusive")  # still the latest round the shell knows of
    sim.until(reached(0))
    sim.run(3)
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.analysis.metrics == []
    assert sim.status.rollback is None
    sim.analysis_round("Inconclusive")  # a fresh round of the new revision does count
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK


def test_inconclusive_hold_survives_spec_paused_and_lifts_when_data_returns() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",))), 0)
    sim.analysis_round("Inconclusive")
    pause_elapsed(sim, 3600)
    sim.step()
    assert sim.status.message.startswith("paused (AnalysisInconclusive)")
    sim.spec = sim.spec.model_copy(update={"paused": True})
    sim.run(3)
    assert sim.all_events().count("AnalysisInconclusive") == 1
    sim.analysis_round("Successful")
    sim.step()
    assert sim.status.phase == Phase.PAUSED  # spec.paused still holds
    assert "spec.paused" in sim.status.message
    sim.spec = sim.spec.model_copy(update={"paused": False})
    pause_elapsed(sim, 301)
    res = sim.step()
    assert res.status.step_index == 1


# ---------------------------------------------------------------------- dependency gate


def gated_spec(action: str = "Block") -> api.RolloutSpec:
    raw = api.dump(make_spec())
    raw["guardrails"]["dependencyGate"] = {"modules": ["numpy", "orjson"], "action": action}
    return api.parse_spec(raw)


def preflight(phase: str, image: str = "registry.example/app:2.0-py3.14t") -> api.PreflightStatus:
    return api.PreflightStatus(
        phase=phase,
        image=image,
        free_threading_build=True,
        message=f"preflight {phase.lower()}",
        time="2026-01-01T00:00:00Z",
    )


def test_dependency_gate_runs_the_preflight_before_step_1() -> None:
    sim = Sim(gated_spec(), n=10)
    res = sim.step()
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    assert res.status.step_index is None
    assert not res.twin_replicas
    assert "numpy, orjson" in res.status.message
    res = sim.step(preflight=preflight("Running"))
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    res = sim.step(preflight=preflight("Passed"))
    assert not res.run_preflight
    assert res.status.phase == Phase.PROGRESSING
    assert res.twin_replicas == 1
    assert "PreflightPassed" in sim.events(res)
    assert res.status.preflight is not None
    assert res.status.preflight.phase == "Passed"
    # The result is kept in status (the version contract): no preflight again.
    assert not sim.step().run_preflight


@pytest.mark.parametrize(
    ("action", "phase"), [("Block", Phase.FAILED), ("Warn", Phase.PROGRESSING)]
)
def test_dependency_gate_failure_blocks_or_warns(action: str, phase: Phase) -> None:
    sim = Sim(gated_spec(action), n=10)
    sim.step()
    res = sim.step(preflight=preflight("Failed"))
    assert res.status.phase == phase
    assert [(e.type, e.reason) for e in res.events if e.reason == "DependencyGate"] == [
        ("Warning", "DependencyGate")
    ]
    if action == "Block":
        c = cond(res.status, "Progressing")
        assert (c.status, c.reason) == ("False", "DependencyGate")
        assert "preflight failed" in c.message
        assert sim.ft.replicas == 0
        # Holds, and says so once.
        sim.run(3)
        assert sim.status.phase == Phase.FAILED
        assert sim.all_events().count("DependencyGate") == 1


def test_dependency_gate_block_on_a_new_revision_returns_to_standard() -> None:
    """Blocked new revision mid-rollout: the standard track goes back to N and the twin to 0,
    as for a rollback (capacity kept throughout)."""
    sim = at_step(Sim(gated_spec(), n=10, lag=2), 0, preflight=preflight("Passed"))
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    assert sim.replicas == (5, 5)
    sim.revision = "rev2"
    spec2 = api.dump(sim.spec)
    spec2["freeThreaded"]["image"] = "registry.example/app:2.1-py3.14t"
    sim.spec = api.parse_spec(spec2)
    res = step_checked(sim, 10)
    assert res.run_preflight
    failed = preflight("Failed", image="registry.example/app:2.1-py3.14t")
    for _ in range(6):
        res = step_checked(sim, 10, preflight=failed)
    assert sim.status.phase == Phase.FAILED
    assert sim.replicas == (10, 0)


# ---------------------------------------------------------------------- event wording


def test_retry_is_not_announced_as_a_new_revision() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.action = "rollback"
    sim.run(3)
    sim.action = "retry"
    res = sim.step()
    assert "Retry" in sim.events(res)
    assert "NewRevision" not in sim.events(res)
    assert res.status.revision == "rev1"


def test_promote_before_step_1_is_not_announced_as_promoted() -> None:
    """`Promoted` means all replicas free-threaded; a promote while Pending only starts
    step 1 (Decision: event StepPromoted, phase unchanged until the target is Ready)."""
    sim = Sim(make_spec(), n=10)
    sim.std = Track(10, 5)
    sim.action = "promote"
    res = sim.step()
    assert "Promoted" not in sim.events(res)
    assert "StepPromoted" in sim.events(res)
    assert res.status.phase == Phase.PENDING
    assert not res.twin_replicas


def test_guardrail_hold_stays_when_analysis_data_returns() -> None:
    spec = make_spec(metrics=("m0",), gil={"maxPods": 0, "action": "Pause"})
    sim = at_step(Sim(spec), 0)
    sim.analysis_round("Inconclusive")
    pause_elapsed(sim, 3600)
    sim.step()
    assert sim.status.message.startswith("paused (AnalysisInconclusive)")
    sim.pods = (PodGil("app-ft-0", True),)
    sim.step()
    assert "paused (GILFallback)" in sim.status.message
    sim.analysis_round("Successful")
    res = sim.step()
    assert res.status.phase == Phase.PAUSED
    assert res.status.message.startswith("paused (GILFallback)")
    assert "AnalysisResumed" in sim.events(res)
    sim.run(3)
    assert sim.all_events().count("GuardrailPaused") == 1
