"""Steps and pauses: when the rollout starts, reaches a step, holds, and moves to the next."""

from __future__ import annotations

from ftrollout.model.api import OnInconclusive, Phase, RollbackReason
from ftrollout.model.durations import format_duration
from ftrollout.plan import routing
from ftrollout.plan.actions import promote_full_done, rollback
from ftrollout.plan.analysis import analysis_ok_since, describe, inconclusive_since
from ftrollout.plan.conditions import held_by_guardrail
from ftrollout.plan.context import Ctx
from ftrollout.plan.preflight import gate_key, preflight_settled
from ftrollout.plan.replicas import step_split
from ftrollout.plan.types import Workload, parse_time


def gate_outdated(ctx: Ctx) -> bool:
    """dependencyGate.modules changed after step 1 started (the image is part of the revision,
    the module list is not): the verdict in status is for another list, or the check of the
    list now asked for is still running. (A Pending verdict recorded in status let the steps
    go on at the next reconcile, before the gate had passed: found by the property test.)"""
    gate = ctx.spec.guardrails.dependency_gate
    if gate is None or not gate.modules:
        return False
    pf = ctx.st.preflight
    if pf is None or pf.checked != gate_key(ctx.spec.free_threaded.image, gate.modules):
        return True
    return pf.phase in ("Pending", "Running")


def steps_shortened(ctx: Ctx) -> None:
    """`spec.steps` was edited to fewer steps than the current step's index.

    The rollout carries on at the first remaining step whose weight is at least the current
    weight (the last step, 100 %, at worst): the user removed steps, not progress, so no
    free-threaded pod is taken away and none is added beyond the nearest step they kept. That
    step's pause and analysis start anew. Promoted, RolledBack and Failed stay what they are.
    """
    idx = ctx.st.step_index
    total = len(ctx.spec.steps)
    if idx is None or idx < total:
        return
    current = ctx.st.weight or 0
    weights = [s.weight for s in ctx.spec.steps]
    nxt = next((i for i, w in enumerate(weights) if w >= current), total - 1)
    if held_by_guardrail(ctx.st):
        ctx.update(step_index=nxt)  # the weight in force stays until resumed
    elif ctx.st.phase in (Phase.PROGRESSING, Phase.PAUSED):
        ctx.update(step_index=nxt, weight=weights[nxt], step_started_at=None)
        if ctx.st.phase == Phase.PROGRESSING or ctx.st.message.startswith("paused by spec"):
            ctx.update(
                phase=Phase.PROGRESSING,
                message=f"step {nxt + 1}/{total} ({weights[nxt]}%): scaling",
            )
    else:
        ctx.update(step_index=total - 1 if ctx.st.phase == Phase.PROMOTED else nxt)
    at = ctx.st.step_index if ctx.st.step_index is not None else nxt
    ctx.event(
        "Normal",
        "StepsChanged",
        f"spec.steps has {total} steps, the rollout was at step {idx + 1}: carrying on at step "
        f"{at + 1}/{total} ({weights[at]}%)",
    )


def advance(ctx: Ctx, now: str) -> None:
    obs = ctx.obs
    assert obs.target is not None
    n = ctx.st.replicas.target
    twin = obs.twin or Workload(0, 0)

    if ctx.st.phase == Phase.PENDING:
        gate = ctx.spec.guardrails.dependency_gate
        if gate is not None and gate.modules and not preflight_settled(ctx):
            return
        if ctx.spec.paused:
            ctx.update(message="paused by spec.paused before step 1")
            return
        why = routing.problem(ctx)
        if why is not None:
            ctx.update(message=f"waiting for traffic routing before step 1: {why}")
            return
        if routing.restoring(ctx):
            # Routing removed: step 1 is a replica split, and the routes the last revision
            # split are the user's again first (else their record would read as this one's).
            ctx.update(message="waiting for the routes to be restored before step 1")
            return
        if obs.target.ready >= n and obs.target.replicas >= n:
            first = ctx.spec.steps[0]
            ctx.update(
                phase=Phase.PROGRESSING,
                step_index=0,
                weight=first.weight,
                step_started_at=None,
                races=ctx.st.races.model_copy(update={"since": now}),
                message=f"step 1/{len(ctx.spec.steps)}: scaling free-threaded to {first.weight}%",
            )
            ctx.event("Normal", "StepStarted", f"step 1 ({first.weight}%)")
        else:
            ctx.update(message=f"waiting for {n} Ready standard replicas before step 1")
            return

    if ctx.st.phase not in (Phase.PROGRESSING, Phase.PAUSED) or ctx.st.step_index is None:
        return
    if ctx.st.phase == Phase.PROGRESSING and gate_outdated(ctx) and not preflight_settled(ctx):
        return  # the step is held until the gate has judged the module list now asked for
    idx = ctx.st.step_index
    step = ctx.spec.steps[idx]
    if held_by_guardrail(ctx.st):
        # The held share stays (replicas.desired_split): an edited step applies on resume.
        if ctx.st.weight is not None:
            step = step.model_copy(update={"weight": ctx.st.weight})
    elif ctx.st.weight != step.weight:  # spec.steps edited: the step's weight now in force
        ctx.update(weight=step.weight, step_started_at=None)
    std_d, ft_d = step_split(ctx, step.weight)
    reached = (
        twin.ready >= ft_d
        and twin.replicas == ft_d
        and obs.target.replicas == std_d
        and routing.reached(ctx, step.weight)
    )
    total = len(ctx.spec.steps)
    if not reached:
        if not ctx.spec.paused and ctx.st.phase == Phase.PROGRESSING:
            ctx.update(
                message=f"step {idx + 1}/{total} ({step.weight}%): scaling to {std_d} standard "
                f"+ {ft_d} free-threaded"
            )
        return
    if ctx.st.step_started_at is None:
        ctx.update(step_started_at=now)
        ctx.event(
            "Normal",
            "StepReached",
            f"step {idx + 1}/{total} ({step.weight}%): {ft_d} free-threaded Ready",
        )
    if ctx.spec.paused:
        # A guardrail or inconclusive-analysis hold keeps its own message (it is how that hold
        # is recognised on the next reconcile).
        if not (ctx.st.phase == Phase.PAUSED and ctx.st.message.startswith("paused (")):
            ctx.update(
                phase=Phase.PAUSED, message=f"paused by spec.paused at step {idx + 1}/{total}"
            )
        return
    if ctx.st.phase == Phase.PAUSED and not ctx.st.message.startswith("paused by spec.paused"):
        return  # a guardrail or inconclusive analysis holds the step
    started = ctx.st.step_started_at
    assert started is not None
    if step.waits_for_promote:
        ctx.update(
            phase=Phase.PAUSED,
            message=f"step {idx + 1}/{total} ({step.weight}%) reached: waiting for "
            "`kubectl ftr promote`",
        )
        return
    pause = step.hold_seconds
    elapsed = obs.now.timestamp() - parse_time(started).timestamp()
    if elapsed < pause:
        ctx.update(
            phase=Phase.PROGRESSING,
            message=f"step {idx + 1}/{total} ({step.weight}%): pausing "
            f"{format_duration(pause)} from {started}",
        )
        ctx.requeue.append(pause - elapsed)
        return
    if not analysis_ok_since(ctx, started):
        analysis = ctx.spec.analysis
        if analysis is not None and analysis.on_inconclusive == OnInconclusive.ROLLBACK:
            recent = inconclusive_since(ctx, started)
            if recent:
                detail = describe(recent)
                rollback(ctx, RollbackReason.ANALYSIS_INCONCLUSIVE, f"no usable data: {detail}")
                return
        inconclusive = [r for r in ctx.st.analysis.metrics if r.phase == "Inconclusive"]
        if (
            inconclusive
            and analysis is not None
            and analysis.on_inconclusive == OnInconclusive.PAUSE
        ):
            detail = describe(inconclusive)
            ctx.update(phase=Phase.PAUSED, message=f"paused (AnalysisInconclusive): {detail}")
            ctx.event("Warning", "AnalysisInconclusive", f"holding the step: {detail}")
            return
        ctx.update(
            phase=Phase.PROGRESSING,
            message=f"step {idx + 1}/{total} ({step.weight}%): waiting for a successful "
            "analysis round",
        )
        return
    if idx == total - 1:
        promote_full_done(ctx, f"step {total}/{total} (100%) complete")
        return
    nxt = idx + 1
    ctx.update(
        step_index=nxt,
        weight=ctx.spec.steps[nxt].weight,
        step_started_at=None,
        phase=Phase.PROGRESSING,
        message=f"step {nxt + 1}/{total} ({ctx.spec.steps[nxt].weight}%): scaling",
    )
    ctx.event("Normal", "StepStarted", f"step {nxt + 1} ({ctx.spec.steps[nxt].weight}%)")
    advance(ctx, now)
