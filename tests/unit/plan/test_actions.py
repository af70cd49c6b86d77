"""One-shot actions (ftrollout/plan/actions.py): promote(-full), pause, resume, rollback, retry."""

from __future__ import annotations

import pytest
from planfixtures import at_step, cond, make_spec, pause_elapsed, reached, step_checked
from simcluster import Sim, Track

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan import ACTIONS

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
    # ... and that trace names the request, so `kubectl ftr <action> --wait` finds its answer.
    assert [e for e in res.events if e.action == action]
    assert res.status.phase in set(Phase)
    # The next reconcile has no action: nothing to clear.
    assert sim.step().clear_action is False


# ---------------------------------------------------------------- exactly once


@pytest.mark.parametrize(
    ("value", "written_at"),
    [
        ("promote", "2026-01-01T00:00:00Z"),  # plain value: identified with its write time
        ("promote", None),  # no managedFields: identified while its annotation stays
        ("promote@20260101T000000Z-a1b2c3", None),  # `kubectl ftr promote`: its own id
    ],
)
def test_a_request_seen_twice_is_applied_once(value: str, written_at: str | None) -> None:
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (70, "1h"), (100, None)))), 0)
    res = sim.step(action=value, action_written_at=written_at)
    assert res.status.step_index == 1
    assert res.status.last_action is not None
    assert res.status.last_action.value == value
    # The removal failed (or the operator restarted): the same request, seen again.
    sim.status = api.parse_status(api.dump(sim.status))
    again = sim.step(action=value, action_written_at=written_at)
    assert again.clear_action
    assert again.status.step_index == 1
    assert sim.events(again) == []
    # Gone: the record goes with it, and the next request is a new one.
    assert sim.step().status.last_action is None
    if "@" in value:
        # The same id after that (an echo of a write made before the removal) is still the
        # one request status.recentActions remembers: not applied again.
        assert sim.step(action=value).status.step_index == 1
        value = "promote@20260101T000001Z-d4e5f6"
    res = sim.step(action=value, action_written_at=written_at)
    assert res.status.step_index == 2


def test_a_request_hidden_while_being_consumed_keeps_its_record() -> None:
    """The shell hides a request it is removing when it reconciles the body it read it from
    again: that is not the annotation gone, and lastAction must stay (an echo of the status
    write, which still shows the annotation, would otherwise apply it again)."""
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (70, "1h"), (100, None)))), 0)
    sim.step(action="promote", action_written_at="2026-01-01T00:00:00Z")
    hidden = sim.step(action_consuming=True)
    assert hidden.status.last_action is not None
    again = sim.step(action="promote", action_written_at="2026-01-01T00:00:00Z")
    assert again.status.step_index == 1
    assert "StepPromoted" not in sim.events(again)


def test_recent_actions_record_each_request_with_its_outcome() -> None:
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (100, None)))), 0)
    sim.step(action="promote@a")
    sim.step(action="bogus@b")
    for i in range(5):
        sim.step(action=f"pause@c{i}")
    recent = sim.status.recent_actions
    assert [r.value for r in recent] == [f"pause@c{i}" for i in range(5)]  # the last 5
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (100, None)))), 0)
    sim.step(action="promote@a")
    sim.step(action="bogus@b")
    first, second = sim.status.recent_actions
    assert (first.value, first.outcome) == ("promote@a", "Applied")
    assert "to step 2" in first.message
    assert (second.value, second.outcome) == ("bogus@b", "Ignored")


@pytest.mark.parametrize(("verb", "paused"), [("pause", True), ("resume", False)])
def test_a_pause_recorded_but_not_in_the_spec_is_written_again(verb: str, paused: bool) -> None:
    """The operator stopped between the status write and the spec.paused patch: the request
    seen again writes spec.paused (and nothing else)."""
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (100, None)))), 0)
    sim.spec = sim.spec.model_copy(update={"paused": not paused})
    res = sim.step(action=f"{verb}@x")
    assert res.set_paused is paused
    sim.spec = sim.spec.model_copy(update={"paused": not paused})  # the patch never happened
    sim.status = api.parse_status(api.dump(sim.status))
    again = sim.step(action=f"{verb}@x")
    assert again.set_paused is paused
    assert sim.events(again) == []


def test_the_same_plain_value_written_again_later_is_a_new_request() -> None:
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (70, "1h"), (100, None)))), 0)
    sim.step(action="promote", action_written_at="2026-01-01T00:00:00Z")
    res = sim.step(action="promote", action_written_at="2026-01-01T00:00:05Z")
    assert res.status.step_index == 2
    assert "StepPromoted" in sim.events(res)


def test_an_ignored_request_is_said_once() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.spec_error = api.SpecError("spec.steps", "bad")
    res = sim.step(action="promote@x")
    assert "ActionIgnored" in sim.events(res)
    assert [e.action for e in res.events if e.reason == "ActionIgnored"] == ["promote@x"]
    assert "ActionIgnored" not in sim.events(sim.step(action="promote@x"))


def test_pause_holds_the_current_step_in_the_reconcile_that_applies_it() -> None:
    """A pause read when the step's timed pause is over holds that step (it is reported held
    there); the plan used to read spec.paused as it was before the request and advance."""
    sim = at_step(Sim(make_spec(((10, "1m"), (50, "1m"), (100, None))), n=10), 0)
    pause_elapsed(sim, 61)
    res = sim.step(action="pause@x")
    assert res.set_paused is True
    (rec,) = res.status.recent_actions
    assert rec.outcome == "Applied"
    assert "holding at the current step" in rec.message
    assert res.status.step_index == 0, (res.status.step_index, sim.events(res))
    assert res.status.phase == Phase.PAUSED


def test_pause_from_pending_does_not_start_step_1() -> None:
    sim = Sim(make_spec(((10, "1m"), (50, "1m"), (100, None))), n=10)
    res = sim.step(action="pause@y")
    assert res.set_paused is True
    assert res.status.phase == Phase.PENDING, (res.status.phase, sim.events(res))


def gated(steps: tuple[tuple[int, str | None], ...]) -> api.RolloutSpec:
    spec = make_spec(steps)
    guards = spec.guardrails.model_copy(
        update={"dependency_gate": api.DependencyGate(modules=["numpy"])}
    )
    return spec.model_copy(update={"guardrails": guards})


@pytest.mark.parametrize("value", ["promote-full@x", "promote@x", "rollback@x"])
def test_a_request_read_with_a_new_revision_is_ignored(value: str) -> None:
    """Written for the revision the user saw: applied to a new one (CI pushed an image in the
    same moment) it promoted an image nobody checked, past its gate and analysis."""
    steps = ((10, "1h"), (50, "1h"), (100, None))
    sim = at_step(Sim(make_spec(steps), n=10), 0)
    sim.spec = gated(steps)
    sim.revision = "rev2"
    res = sim.step(action=value)
    assert res.status.revision == "rev2"
    assert res.status.phase == Phase.PENDING, (res.status.phase, sim.events(res))
    (rec,) = res.status.recent_actions
    assert rec.outcome == "Ignored"
    assert "changed to revision rev2" in rec.message
    assert "request again for the new revision" in rec.message


def test_promote_full_does_not_skip_a_dependency_gate_that_has_not_passed() -> None:
    sim = Sim(gated(((10, "1h"), (50, "1h"), (100, None))), n=10)
    res = sim.step(action="promote-full@y")
    assert res.status.phase == Phase.PENDING, (res.status.phase, sim.events(res))
    (rec,) = res.status.recent_actions
    assert rec.outcome == "Ignored"
    assert "dependency gate" in rec.message


def test_a_fixed_id_written_again_is_answered_not_dropped() -> None:
    """A release script writes `promote@release-7` on each run: the second run used to be
    dropped without an Event or a record (a `--wait` hung) while the same write after a few
    other requests was applied. It is answered Ignored, once, and never applied twice."""
    sim = at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (70, "1h"), (100, None)))), 0)
    sim.step(action="promote@release-7")
    assert sim.status.step_index == 1
    applied_at = sim.status.recent_actions[-1].time
    sim.step()  # annotation gone: lastAction cleared
    res = sim.step(action="promote@release-7")
    assert res.status.step_index == 1
    answered = [e for e in res.events if e.action == "promote@release-7"]
    assert [e.reason for e in answered] == ["ActionIgnored"]
    rec = res.status.recent_actions[-1]
    assert rec.value == "promote@release-7"
    assert rec.outcome == "Ignored"
    assert f"already answered at {applied_at}" in rec.message
    again = sim.step(action="promote@release-7")  # still on the rollout: said once
    assert again.status.step_index == 1
    assert not [e for e in again.events if e.action == "promote@release-7"]
    assert len(again.status.recent_actions) == 2
