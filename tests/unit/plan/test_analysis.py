"""Analysis rounds (ftrollout/plan/analysis.py): failure limit, inconclusive holds, stale rounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from planfixtures import at_step, cond, make_spec, pause_elapsed, reached
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason

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


def test_inconclusive_with_rollback_rolls_back_once_the_pause_is_over() -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",), on_inconclusive="Rollback")), 0)
    sim.analysis_round("Inconclusive")
    res = sim.step()
    # The first round of a step usually finds no series for its new pods: inside the pause
    # it neither advances nor rolls back (it would roll back every such rollout).
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.rollback is None
    pause_elapsed(sim, 3600)
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.ANALYSIS_INCONCLUSIVE
    assert "no usable data: m0" in res.status.rollback.message


@pytest.mark.parametrize(
    ("rounds", "phase", "step_index"),
    [
        # (round results inside the pause, after the pause) -> outcome
        (("Inconclusive", "Successful"), Phase.PROGRESSING, 1),
        (("Inconclusive", None), Phase.ROLLED_BACK, None),
        (("Successful", "Inconclusive"), Phase.ROLLED_BACK, None),
        (("Inconclusive", "Failed"), Phase.PROGRESSING, 0),
    ],
)
def test_on_inconclusive_rollback_is_judged_when_the_pause_is_over(
    rounds: tuple[str, str | None], phase: Phase, step_index: int | None
) -> None:
    sim = at_step(Sim(make_spec(metrics=("m0",), on_inconclusive="Rollback")), 0)
    sim.analysis_round(rounds[0])
    sim.run(3)
    assert sim.status.phase == Phase.PROGRESSING
    pause_elapsed(sim, 3600)
    if rounds[1] is not None:
        sim.analysis_round(rounds[1])
    res = sim.step()
    assert res.status.phase == phase
    if step_index is not None:
        assert res.status.step_index == step_index


def test_on_inconclusive_rollback_ignores_a_round_from_before_the_step_was_reached() -> None:
    sim = at_step(
        Sim(
            make_spec(
                ((10, "30s"), (50, "30s"), (100, None)), metrics=("m0",), on_inconclusive="Rollback"
            )
        ),
        0,
    )
    sim.analysis_round("Successful")
    pause_elapsed(sim, 60)
    sim.step()
    assert sim.status.step_index == 1
    sim.analysis_round("Inconclusive")  # while step 2 is still scaling: its pods are not Ready
    sim.until(reached(1))
    pause_elapsed(sim, 60)
    sim.run(3)
    assert sim.status.phase == Phase.PROGRESSING
    assert "waiting for a successful analysis round" in sim.status.message
    sim.analysis_round("Inconclusive")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK


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


# ---------------------------------------------------------------------- overlapping signals


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
    pause_elapsed(sim, 3600)
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


# A round started before the step was reached measured (partly) the previous step's pods: it
# must not count for this one, even within the same second.
ROUND_VS_REACHED: list[tuple[float, bool]] = [
    # round start relative to the moment the step was reached (s), counts for the step
    (-0.3, False),
    (-0.000001, False),
    (-1.2, False),
    (0.3, True),
    (1.0, True),
]


@pytest.mark.parametrize(("offset", "counts"), ROUND_VS_REACHED)
def test_a_round_counts_only_if_it_started_after_the_step_was_reached(
    offset: float, counts: bool
) -> None:
    # Reached at a fractional second (xx.5), as the shell's clock gives.
    sim = Sim(make_spec(metrics=("m0",)), now=datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC))
    sim = at_step(sim, 0)
    reached_at = sim.now - timedelta(seconds=1)  # Sim.step advances the clock after planning
    after = sim.now
    sim.now = reached_at + timedelta(seconds=offset)
    sim.analysis_round("Successful")
    sim.now = after
    pause_elapsed(sim, 3600)
    sim.step()
    assert (sim.status.step_index == 1) is counts, sim.status.message


def test_the_last_standard_value_of_each_metric_is_kept_in_status() -> None:
    raw = api.dump(make_spec(metrics=("m0",)))
    raw["analysis"]["metrics"][0] = {
        "name": "m0",
        "query": "up",
        "compare": {"maxIncreasePercent": 20},
    }
    sim = at_step(Sim(api.parse_spec(raw)), 0)
    sim.analysis_round("Successful")
    sim.step()
    assert [(v.name, v.value) for v in sim.status.analysis.last_standard] == [("m0", 1.0)]
    sim.analysis_round("Inconclusive")  # no standard value this round: the last one stays
    sim.step()
    assert [(v.name, v.value) for v in sim.status.analysis.last_standard] == [("m0", 1.0)]
    # It is in the wire form, so a restarted operator reads it back.
    back = api.parse_status(api.dump(sim.status))
    assert back.analysis.last_standard == sim.status.analysis.last_standard
