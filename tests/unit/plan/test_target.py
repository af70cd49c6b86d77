"""Target and spec problems (ftrollout/plan/reconcile.py): missing target, bad or missing spec."""

from __future__ import annotations

import pytest
from planfixtures import at_step, cond, make_spec, pause_elapsed, reached
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan import plan
from ftrollout.plan.types import FIELD_MANAGER, Workload

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


def test_a_target_ref_edited_mid_rollout_fails_and_touches_neither_target() -> None:
    """An old CRD without the immutability rule: the rollout keeps the target it split
    (status.target) and refuses the new one, naming spec.targetRef; back to the old name, it
    carries on from where it was."""
    sim = at_step(Sim(make_spec()), 0)
    assert sim.status.target == "app"
    before = sim.status
    sim.spec = sim.spec.model_copy(update={"target_ref": api.TargetRef(name="api")})
    res = sim.step()
    assert res.status.phase == Phase.FAILED
    assert (res.target_replicas, res.twin_replicas) == (None, None)
    c = cond(res.status, "Progressing")
    assert (c.status, c.reason) == ("False", "TargetChanged")
    assert "spec.targetRef" in c.message
    assert "'app'" in c.message
    assert res.status.replicas.target == before.replicas.target
    assert res.status.step_index == before.step_index
    sim.spec = sim.spec.model_copy(update={"target_ref": api.TargetRef(name="app")})
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.step_index == before.step_index


def test_a_target_ref_fixed_before_anything_was_split_is_taken() -> None:
    """A typo (target not found) is not a held target: the corrected name is simply used."""
    sim = Sim(make_spec())
    sim.target_exists = False
    sim.step()
    assert sim.status.target is None
    sim.target_exists = True
    sim.spec = sim.spec.model_copy(update={"target_ref": api.TargetRef(name="api")})
    assert sim.step().status.phase == Phase.PROGRESSING


# --------------------------------------------------------------------- odd stored status


def _mid_step() -> Sim:
    return at_step(Sim(make_spec(((10, "1h"), (50, "1h"), (100, None)))), 0)


@pytest.mark.parametrize(
    "edit",
    [
        {"stepIndex": -7},  # a hand edit (kubectl edit --subresource=status)
        {"stepStartedAt": "yesterday"},
        {"weight": 400},
        {"promotedAt": "soon"},
        {"replicas": {"target": -3}},
        {"races": {"since": "then"}},
        {"analysis": {"lastRound": "x"}},
    ],
)
def test_a_parseable_but_odd_status_is_reported_unreadable_never_raised(
    edit: dict[str, object],
) -> None:
    sim = _mid_step()
    raw = {**api.dump(sim.status), **edit}
    status, err = api.parse_status_checked(raw)
    assert err is not None
    split = Workload(sim.std.replicas, sim.std.ready, FIELD_MANAGER)  # split by the operator
    obs = sim.observe(status_error=err, target=split)
    res = plan(sim.spec, status, obs)
    assert cond(res.status, "StatusReadable").status == "False"
    assert res.status.replicas.target == sim.n  # N from both tracks, never a negative one
    assert res.target_replicas is not None
    assert res.target_replicas >= 0


def test_incidents_with_an_unreadable_time_are_skipped_not_raised() -> None:
    """finishedAt is optional in the API (the shell stamps the time it first saw the crash);
    a stored incident edited to nonsense is dropped."""
    sim = _mid_step()
    odd = api.Incident(pod="app-ft-1", exit_code=139, time="")
    raw = api.dump(sim.status)
    raw["races"]["recent"] = [{"pod": "app-ft-2", "exitCode": 139, "time": "never"}]
    status = api.parse_status(raw)
    res = plan(sim.spec, status, sim.observe(incidents=(odd,)))
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.races.incidents == 0
