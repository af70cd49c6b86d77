"""After promotion (ftrollout/plan/bake.py): the bake, standard replicas kept warm, guardrails
that roll back during the bake and alert after it, and the comparison kept for the report."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from planfixtures import NO_PAUSE, cond, make_spec, pause_elapsed
from pydantic import ValidationError
from simcluster import Sim

from ftrollout.cli import plugin
from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan import PodGil
from ftrollout.plan.types import parse_time

N = 10
STEPS = ((50, NO_PAUSE), (100, NO_PAUSE))


def spec(bake: str | None = "1h", warm: int = 0, **kw: Any) -> api.RolloutSpec:
    s = make_spec(STEPS, **kw)
    post = api.PostPromotion(bake=bake, standard_replicas=warm)
    return s.model_copy(update={"post_promotion": post})


def promoted(sim: Sim) -> Sim:
    sim.until(lambda s: s.status.phase == Phase.PROMOTED and s.ft.ready == N)
    sim.run(2)  # the warm replicas settle (or the standard track goes to 0)
    return sim


def gil_on(sim: Sim) -> None:
    sim.pods = (*sim.ft_pods(enabled=False)[1:], PodGil("app-ft-x", True, modules=("numpy",)))


def after_bake(sim: Sim) -> None:
    assert sim.status.bake_until is not None
    sim.now = parse_time(sim.status.bake_until)
    sim.step()


def test_bake_starts_at_promotion_and_requeues_at_its_end() -> None:
    sim = Sim(spec("1h"), n=N)
    res = sim.until(lambda s: s.status.phase == Phase.PROMOTED)
    st = res.status
    assert st.promoted_at is not None
    assert st.bake_until is not None
    assert (parse_time(st.bake_until) - parse_time(st.promoted_at)).total_seconds() == 3600
    assert "BakeStarted" in sim.events(res)
    assert (cond(st, "PostPromotion").status, cond(st, "PostPromotion").reason) == (
        "Unknown",
        "Baking",
    )
    assert res.requeue_after is not None
    assert res.requeue_after <= 3600
    sim.run(3)
    pause_elapsed(sim, 1800)
    res = sim.step()
    assert res.requeue_after is not None
    assert 1790 <= res.requeue_after <= 1800  # the shell looks again when the bake ends
    after_bake(sim)
    st = sim.status
    assert st.phase == Phase.PROMOTED
    assert (cond(st, "PostPromotion").status, cond(st, "PostPromotion").reason) == (
        "True",
        "Baked",
    )
    assert "BakeComplete" in sim.events()
    sim.step()
    assert "BakeComplete" not in sim.events()


def test_gil_fallback_during_the_bake_rolls_back_standard_first() -> None:
    sim = promoted(Sim(spec("1h", warm=2), n=N))
    assert sim.replicas == (2, N)
    gil_on(sim)
    res = sim.step()
    st = res.status
    assert st.phase == Phase.ROLLED_BACK
    assert st.rollback is not None
    assert st.rollback.reason == RollbackReason.GIL_FALLBACK
    assert "numpy" in st.rollback.message
    # Standard back to N first; free-threaded pods go only as standard ones become Ready,
    # and the warm ones already are: they stand in for two at once.
    assert res.target_replicas == N
    assert res.twin_replicas == N - 2
    for _ in range(10):
        sim.step()
        assert sim.ready >= N
    assert sim.replicas == (N, 0)
    assert not [c for c in sim.status.conditions if c.type == "PostPromotion"]
    assert sim.status.bake_until is None


def test_race_budget_breach_during_the_bake_rolls_back() -> None:
    sim = promoted(Sim(spec("1h"), n=N))
    for i in range(4):
        sim.incident(pod=f"app-ft-{i}")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.RACE_BUDGET
    assert res.target_replicas == N


def test_gil_fallback_after_the_bake_alerts_without_touching_replicas() -> None:
    sim = promoted(Sim(spec("1h", warm=2), n=N))
    after_bake(sim)
    assert sim.replicas == (0, N)  # the warm replicas are released when the bake ends
    writes = len(sim.writes)
    gil_on(sim)
    res = sim.step()
    st = res.status
    assert st.phase == Phase.PROMOTED
    assert st.rollback is None
    assert (res.target_replicas, res.twin_replicas) == (0, N)
    assert len(sim.writes) == writes
    assert (cond(st, "ModeIntegrity").status, cond(st, "ModeIntegrity").reason) == (
        "False",
        "GILFallback",
    )
    pp = cond(st, "PostPromotion")
    assert (pp.status, pp.reason) == ("False", "GILFallbackAfterPromotion")
    assert "numpy" in pp.message
    warnings = [e for e in res.events if e.reason == "GILFallbackAfterPromotion"]
    assert len(warnings) == 1
    assert warnings[0].type == "Warning"
    assert "numpy" in warnings[0].message
    res = sim.step()  # said once, kept in the condition
    assert "GILFallbackAfterPromotion" not in sim.events(res)
    assert cond(res.status, "PostPromotion").reason == "GILFallbackAfterPromotion"
    assert sim.status.phase == Phase.PROMOTED
    # A race budget breach on top is announced too, once.
    for i in range(4):
        sim.incident(pod=f"app-ft-{i}")
    res = sim.step()
    assert sim.events(res).count("RaceBudgetAfterPromotion") == 1
    assert res.status.phase == Phase.PROMOTED
    assert "RaceBudgetAfterPromotion" not in sim.events(sim.step())
    # Gone again: the condition recovers.
    sim.pods = sim.ft_pods(enabled=False)
    sim.incidents = ()
    pause_elapsed(sim, 3601)
    assert cond(sim.step().status, "PostPromotion").status == "True"


def test_without_a_bake_guardrails_alert_from_promotion_on() -> None:
    sim = promoted(Sim(spec(None), n=N))
    assert sim.status.bake_until is None
    assert cond(sim.status, "PostPromotion").reason == "NoBake"
    gil_on(sim)
    res = sim.step()
    assert res.status.phase == Phase.PROMOTED
    assert "GILFallbackAfterPromotion" in sim.events(res)
    assert sim.replicas == (0, N)


def test_a_pause_action_during_the_bake_alerts_there_is_nothing_to_hold() -> None:
    sim = promoted(Sim(spec("1h", gil={"maxPods": 0, "action": "Pause"}), n=N))
    gil_on(sim)
    res = sim.step()
    assert res.status.phase == Phase.PROMOTED
    pp = cond(res.status, "PostPromotion")
    assert (pp.status, pp.reason) == ("False", "GILFallbackAfterPromotion")
    assert "during the bake" in pp.message


def test_standard_replicas_stay_warm_through_the_last_step_and_the_bake() -> None:
    sim = Sim(spec("30m", warm=3), n=N)
    seen_std: list[int] = []

    def watch(s: Sim, *_: object) -> None:
        assert s.ready >= N
        if s.status.weight == 100:
            seen_std.append(s.std.replicas)

    sim.on_apply = watch
    promoted(sim)
    assert min(seen_std) == 3  # never below the warm replicas at 100 %
    assert sim.replicas == (3, N)
    assert cond(sim.status, "Available").status == "True"
    sim.run(5)
    assert sim.replicas == (3, N)
    after_bake(sim)
    assert sim.replicas == (0, N)
    assert sim.status.replicas.standard == 0


def test_a_bake_edited_out_of_the_spec_ends_it() -> None:
    sim = promoted(Sim(spec("1h", warm=2), n=N))
    sim.spec = sim.spec.model_copy(update={"post_promotion": api.PostPromotion()})
    sim.step()
    assert sim.replicas == (0, N)
    assert cond(sim.status, "PostPromotion").status == "True"


# ------------------------------------------- Ready and `kubectl ftr status --wait` (the goal)


def _obj(st: api.RolloutStatus) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop"}, "status": api.dump(st)}


def test_status_wait_does_not_report_success_while_the_bake_can_still_roll_back() -> None:
    """A pipeline gating on `status --wait` must not pass a rollout that then rolls back: the
    goal is reached when the bake is over (review of #21)."""
    sim = promoted(Sim(spec("1h"), n=N))
    assert cond(sim.status, "PostPromotion").reason == "Baking"
    code_during_bake = plugin.wait_outcome(_obj(sim.status))
    for i in range(4):  # the bake is not over: a guardrail still rolls back
        sim.incident(pod=f"app-ft-{i}")
    sim.step()
    assert sim.status.phase == Phase.ROLLED_BACK
    assert code_during_bake is None, "status --wait exited 0 for a rollout that then RolledBack"
    assert plugin.wait_outcome(_obj(sim.status)) == plugin.EXIT_ROLLED_BACK


def test_ready_is_not_true_while_the_bake_can_still_roll_back() -> None:
    sim = promoted(Sim(spec("1h"), n=N))
    ready = cond(sim.status, "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "Baking")
    assert ready.message == f"promoted; baking until {sim.status.bake_until}: a guardrail " + (
        "breach still rolls back"
    )


def test_ready_during_a_bake_whose_guardrails_only_pause_says_a_breach_only_alerts() -> None:
    """Every guardrail action Pause: a breach during the bake only alerts (there is nothing to
    hold once promoted), so the Ready message must not say it rolls back."""
    pause = {"action": "Pause"}
    races = {"maxIncidents": 3, "window": "1h", **pause}
    sim = promoted(Sim(spec("1h", gil={"maxPods": 0, **pause}, races=races), n=N))
    ready = cond(sim.status, "Ready")
    assert (ready.status, ready.reason) == ("Unknown", "Baking")
    assert "rolls back" not in ready.message
    assert "a guardrail breach only alerts" in ready.message
    for i in range(4):  # the race budget breached during the bake: no rollback
        sim.incident(pod=f"app-ft-{i}")
    sim.step()
    assert sim.status.phase == Phase.PROMOTED


def test_ready_and_status_wait_succeed_when_the_bake_ends() -> None:
    sim = promoted(Sim(spec("1h"), n=N))
    sim.run(3)
    assert cond(sim.status, "Ready").status == "Unknown"
    after_bake(sim)
    ready = cond(sim.status, "Ready")
    assert (ready.status, ready.reason) == ("True", "Promoted")
    assert plugin.wait_outcome(_obj(sim.status)) == 0


def test_a_breach_alerting_during_the_bake_keeps_ready_unknown() -> None:
    """A Pause guardrail only alerts during the bake (PostPromotion False): still baking."""
    sim = promoted(Sim(spec("1h", gil={"maxPods": 0, "action": "Pause"}), n=N))
    gil_on(sim)
    sim.step()
    assert cond(sim.status, "PostPromotion").status == "False"
    assert (cond(sim.status, "Ready").status, cond(sim.status, "Ready").reason) == (
        "Unknown",
        "Baking",
    )
    assert plugin.wait_outcome(_obj(sim.status)) is None


def test_a_bake_edited_out_of_the_spec_makes_the_rollout_ready() -> None:
    sim = promoted(Sim(spec("1h"), n=N))
    sim.spec = sim.spec.model_copy(update={"post_promotion": api.PostPromotion()})
    sim.run(2)
    assert cond(sim.status, "Ready").status == "True"
    assert plugin.wait_outcome(_obj(sim.status)) == 0


def test_without_a_bake_ready_is_true_at_promotion() -> None:
    sim = promoted(Sim(spec(None), n=N))
    assert cond(sim.status, "Ready").status == "True"
    assert plugin.wait_outcome(_obj(sim.status)) == 0


# ---------------------------------------------------------------- comparison for the report


def test_the_last_comparison_of_both_tracks_is_kept_with_its_time() -> None:
    sim = Sim(spec("1h", warm=2, metrics=("p99",)), n=N)
    sim.until(lambda s: s.status.step_index == 0 and s.status.step_started_at is not None)
    rnd = sim.analysis_round("Successful", names=("p99",))
    sim.analysis = replace(rnd, standard_measured=True)
    sim.step()
    kept = sim.status.analysis.last_comparison
    assert kept is not None
    assert (kept.time, kept.weight, kept.bake) == (rnd.time, 50, False)
    assert [(m.name, m.free_threaded, m.standard) for m in kept.metrics] == [("p99", 1.0, 1.0)]
    sim.until(lambda s: s.status.step_index == 1 and s.status.step_started_at is not None)
    assert sim.status.analysis.last_comparison == kept
    sim.analysis = replace(sim.analysis_round("Successful", names=("p99",)), standard_measured=True)
    promoted_sim = promoted(sim)
    kept = promoted_sim.status.analysis.last_comparison
    assert kept is not None
    assert (kept.weight, kept.bake) == (100, False)
    # A round without standard pods (the kept standard value only) replaces nothing.
    promoted_sim.analysis = promoted_sim.analysis_round("Successful", names=("p99",))
    promoted_sim.step()
    assert promoted_sim.status.analysis.last_comparison == kept
    # During the bake, warm standard replicas give a fresh comparison.
    bake_round = promoted_sim.analysis_round("Successful", names=("p99",))
    promoted_sim.analysis = replace(bake_round, standard_measured=True)
    promoted_sim.step()
    kept = promoted_sim.status.analysis.last_comparison
    assert kept is not None
    assert kept.time == bake_round.time
    assert kept.bake
    assert kept.weight == 100
    # A failed round during the bake is reported, not acted on.
    failed = promoted_sim.analysis_round("Failed", names=("p99",))
    promoted_sim.analysis = replace(failed, standard_measured=True)
    res = promoted_sim.step()
    assert res.status.phase == Phase.PROMOTED
    assert "AnalysisFailed" in promoted_sim.events(res)


# ------------------------------------------------------------------------------ the spec


def test_post_promotion_spec_bounds() -> None:
    assert api.PostPromotion().bake is None
    assert api.PostPromotion().standard_replicas == 0
    for bad in ("0s", "30s", "169h"):
        with pytest.raises(ValidationError, match="between 1m and 168h"):
            api.PostPromotion(bake=bad)
    with pytest.raises(ValidationError, match="standardReplicas needs a bake"):
        api.PostPromotion(standard_replicas=1)
    with pytest.raises(ValidationError):
        api.PostPromotion(bake="1h", standard_replicas=1001)
    with pytest.raises(api.SpecError) as err:
        api.parse_spec(
            {
                "targetRef": {"name": "app"},
                "freeThreaded": {"image": "x"},
                "steps": [{"weight": 100}],
                "postPromotion": {"bake": "2s"},
            }
        )
    assert err.value.field == "spec.postPromotion.bake"
