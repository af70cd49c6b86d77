"""Status and events (ftrollout/plan/conditions.py): no-op writes, conditions, wire, wording."""

from __future__ import annotations

from datetime import timedelta

import pytest
from planfixtures import at_step, cond, make_spec, pause_elapsed
from simcluster import Sim, Track

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan import Observation, PodGil, plan

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
        "Ready",
        "Available",
        "Progressing",
        "ModeIntegrity",
        "RaceBudget",
        "AnalysisHealthy",
    ]


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


# ------------------------------------------------- Ready (kubectl wait, Flux health checks)

READY = {
    # converged state: (Ready status, reason)
    "pausing": ("Unknown", "Progressing"),
    "paused-indefinite": ("Unknown", "Paused"),
    "promoted": ("True", "Promoted"),
    "rolledback": ("False", "RolledBack"),
    "guard-paused": ("Unknown", "Paused"),
    "spec-paused": ("Unknown", "Paused"),
    "inconclusive": ("Unknown", "Paused"),
    "races": ("Unknown", "Progressing"),
    "target-missing": ("False", "TargetNotFound"),
    "invalid-spec": ("False", "InvalidSpec"),
}


@pytest.mark.parametrize("name", CONVERGED)
def test_ready_summarises_the_rollout(name: str) -> None:
    """True only when Promoted and Available; False on a terminal outcome (RolledBack, Failed,
    with the reason); Unknown while the rollout is still on its way."""
    ready = cond(_converged(name).status, "Ready")
    assert (ready.status, ready.reason) == READY[name]
    assert ready.message


def test_ready_is_unknown_before_step_1_and_true_only_once_all_free_threaded_are_ready() -> None:
    sim = Sim(make_spec(), n=4, lag=3)
    res = sim.step()
    assert res.status.phase in (Phase.PENDING, Phase.PROGRESSING)
    assert cond(res.status, "Ready").status == "Unknown"
    at_step(sim, 0)
    sim.action = "promote-full"
    res = sim.step()
    assert res.status.phase == Phase.PROMOTED
    # Promoted at once, but the free-threaded pods are not Ready yet: not Ready either.
    assert sim.ft.ready < 4
    assert (cond(res.status, "Ready").status, cond(res.status, "Ready").reason) == (
        "Unknown",
        "Promoting",
    )
    sim.until(lambda s: s.ft.ready == 4 and cond(s.status, "Available").status == "True")
    sim.step()
    assert cond(sim.status, "Ready").status == "True"
    assert cond(sim.status, "Ready").reason == "Promoted"


def test_current_step_counts_from_1_and_available_reads_ready_over_n() -> None:
    sim = Sim(make_spec(), n=10, lag=2)
    at_step(sim, 0)
    assert sim.status.current_step == 1
    pause_elapsed(sim, 301)
    at_step(sim, 1)
    assert sim.status.step_index == 1
    assert sim.status.current_step == 2
    r = sim.status.replicas
    assert r.summary == f"{r.ready}/{r.target}" == "10/10"
    wire = api.dump(sim.status)
    assert wire["currentStep"] == 2
    assert wire["replicas"]["summary"] == "10/10"


def test_current_step_is_0_before_step_1() -> None:
    sim = Sim(make_spec(paused=True), n=4)
    st = sim.step().status
    assert (st.phase, st.step_index, st.current_step) == (Phase.PENDING, None, 0)
    assert cond(st, "Ready").status == "Unknown"
    assert "currentStep" in api.dump(st)


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
