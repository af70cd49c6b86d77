"""Analysis verdicts: rounds of metric results counted against failureLimit / onInconclusive."""

from __future__ import annotations

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan.actions import rollback
from ftrollout.plan.bake import baking
from ftrollout.plan.conditions import cond
from ftrollout.plan.context import Ctx
from ftrollout.plan.types import AnalysisRound, parse_time


def observe_analysis(ctx: Ctx, now: str) -> None:
    analysis = ctx.spec.analysis
    if analysis is None or not analysis.metrics:
        cond(ctx, "AnalysisHealthy", "True", "NoAnalysis", "no metrics configured")
        return
    rnd = ctx.obs.analysis
    st = ctx.st.analysis
    if rnd is not None and rnd.time != st.last_round and ctx.st.phase == Phase.PENDING:
        # A round that finished before step 1 of this revision measured the previous
        # revision's pods: mark it seen so it never counts for this one.
        st = st.model_copy(update={"last_round": rnd.time})
        ctx.update(analysis=st)
    in_bake = baking(ctx)
    if (
        rnd is not None
        and rnd.time != st.last_round
        and (ctx.st.phase in (Phase.PROGRESSING, Phase.PAUSED) or in_bake)
    ):
        failed = [r for r in rnd.results if r.phase == "Failed"]
        inconclusive = [r for r in rnd.results if r.phase == "Inconclusive"]
        failed_rounds = st.failed_rounds + (1 if failed else 0)
        inconclusive_rounds = st.inconclusive_rounds + 1 if inconclusive else 0
        st = api.AnalysisStatus(
            failed_rounds=failed_rounds,
            inconclusive_rounds=inconclusive_rounds,
            last_round=rnd.time,
            metrics=list(rnd.results),
            last_standard=last_standard(st.last_standard, rnd.results, analysis),
            last_comparison=comparison(ctx, rnd) or st.last_comparison,
        )
        ctx.update(analysis=st)
        if failed and in_bake:
            # Rounds during the bake are kept for the report; promotion is not undone by them.
            ctx.event(
                "Warning", "AnalysisFailed", f"round failed during the bake: {describe(failed)}"
            )
        elif failed:
            detail = describe(failed)
            ctx.event(
                "Warning",
                "AnalysisFailed",
                f"round failed ({failed_rounds}/{analysis.failure_limit} tolerated): {detail}",
            )
            if failed_rounds > analysis.failure_limit:
                rollback(
                    ctx,
                    RollbackReason.ANALYSIS_FAILED,
                    f"{failed_rounds} failed analysis rounds (failureLimit "
                    f"{analysis.failure_limit}); last: {detail}",
                )
        # An Inconclusive round is acted on (Pause holds, Rollback rolls back) in
        # `steps.advance`, once the step's pause is over: before that the step cannot advance
        # anyway, and the first round of a step often finds no series yet for its new pods (a
        # hold, or a rollback, of every rollout).
        elif (
            not inconclusive
            and ctx.st.phase == Phase.PAUSED
            and ctx.st.message.startswith("paused (AnalysisInconclusive)")
        ):
            other = ctx.st.message.find("; paused (")
            if other >= 0:  # a guardrail hold came on top: it stays until resumed
                ctx.update(message=ctx.st.message[other + 2 :])
                ctx.event("Normal", "AnalysisResumed", "analysis data is back; still held")
            else:
                ctx.update(phase=Phase.PROGRESSING, message="analysis data is back: resuming")
                ctx.event("Normal", "AnalysisResumed", "analysis data is back: resuming")

    results = ctx.st.analysis.metrics
    if not results:
        cond(ctx, "AnalysisHealthy", "Unknown", "NoRoundYet", "waiting for the first round")
    elif any(r.phase == "Failed" for r in results):
        bad = ", ".join(r.name for r in results if r.phase == "Failed")
        cond(ctx, "AnalysisHealthy", "False", "MetricsFailed", f"failed: {bad}")
    elif any(r.phase == "Inconclusive" for r in results):
        bad = ", ".join(r.name for r in results if r.phase == "Inconclusive")
        cond(ctx, "AnalysisHealthy", "Unknown", "Inconclusive", f"no usable data: {bad}")
    else:
        cond(ctx, "AnalysisHealthy", "True", "MetricsSuccessful", "all metrics successful")


def comparison(ctx: Ctx, rnd: AnalysisRound) -> api.Comparison | None:
    """The round as a comparison of both tracks, when it measured running standard pods."""
    if not rnd.standard_measured:
        return None
    values = [
        api.ComparedValue(name=r.name, free_threaded=r.free_threaded, standard=r.standard)
        for r in rnd.results
        if r.free_threaded is not None and r.standard is not None
    ]
    if not values:
        return None
    promoted = ctx.st.phase == Phase.PROMOTED
    return api.Comparison(
        time=rnd.time, weight=100 if promoted else ctx.st.weight or 0, bake=promoted, metrics=values
    )


def last_standard(
    kept: list[api.StandardValue], results: tuple[api.MetricResult, ...], analysis: api.Analysis
) -> list[api.StandardValue]:
    """The standard value of each compare metric, from the newest round that had one: in status
    so an operator restart at 100 % (no standard pods left) still has something to compare."""
    values = {v.name: v.value for v in kept}
    values.update({r.name: r.standard for r in results if r.standard is not None})
    compare = [m.name for m in analysis.metrics if m.compare is not None]
    return [api.StandardValue(name=n, value=values[n]) for n in compare if n in values]


def describe(results: list[api.MetricResult]) -> str:
    """What a set of metric results says, for a message or an Event."""
    return "; ".join(f"{r.name}: {r.message}" for r in results)


def inconclusive_since(ctx: Ctx, since: str) -> list[api.MetricResult]:
    """The Inconclusive results of the latest round, if that round ran at or after `since`
    (a round from before the step was reached measured pods that are not the step's)."""
    st = ctx.st.analysis
    if st.last_round is None or parse_time(st.last_round) < parse_time(since):
        return []
    return [r for r in st.metrics if r.phase == "Inconclusive"]


def analysis_ok_since(ctx: Ctx, since: str) -> bool:
    analysis = ctx.spec.analysis
    if analysis is None or not analysis.metrics:
        return True
    st = ctx.st.analysis
    if st.last_round is None or parse_time(st.last_round) < parse_time(since):
        return False
    names = {m.name for m in analysis.metrics}
    ok = {r.name for r in st.metrics if r.phase == "Successful"}
    return names <= ok
