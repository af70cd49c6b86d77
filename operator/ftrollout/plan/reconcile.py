"""The pure rollout state machine: spec + observations + status -> replicas, status, events.

No I/O here. The shell (`ftrollout.shell.reconcile`) observes the cluster and Prometheus, calls
`plan`, and applies the result; a result equal to what is already there means no write at all.
Each concern lives in its own module; this one orders them and computes status once, at the end
(`finish`).
"""

from __future__ import annotations

from ftrollout.model import api
from ftrollout.model.api import GuardAction, Phase
from ftrollout.plan import baseline
from ftrollout.plan.actions import handle_action, ignore_request, start_revision
from ftrollout.plan.analysis import observe_analysis
from ftrollout.plan.bake import baking, post_promotion
from ftrollout.plan.conditions import cond, progressing_condition, set_condition, summarise
from ftrollout.plan.context import Ctx
from ftrollout.plan.guardrails import observe_guardrails
from ftrollout.plan.ownership import (
    REASON_TARGET_CLAIMED,
    REASON_TARGET_IS_A_TWIN,
    REASON_TWIN_NOT_OWNED,
    adoptable,
    conflict,
)
from ftrollout.plan.progress import progress_deadline
from ftrollout.plan.replicas import (
    desired_split,
    follow_external_scale,
    follow_rollout_scale,
    standard_to_write,
    twin_to_write,
)
from ftrollout.plan.routing import hold_removed, plan_routes
from ftrollout.plan.steps import advance, steps_shortened
from ftrollout.plan.types import FIELD_MANAGER, Event, Observation, Result, Workload, rfc3339

REASON_TARGET_CHANGED = "TargetChanged"


def plan(spec: api.RolloutSpec | None, status: api.RolloutStatus, obs: Observation) -> Result:
    if spec is None or obs.spec_error is not None:
        return invalid_spec(status, obs)
    ctx = Ctx(spec=spec, obs=obs, st=status)
    now = rfc3339(obs.now)

    held = ctx.st.target
    if held is not None and held != spec.target_ref.name:
        return not_ours(
            ctx,
            REASON_TARGET_CHANGED,
            f"spec.targetRef changed from {held!r} to {spec.target_ref.name!r} while this "
            f"rollout holds {held!r} (its replicas split, its twin running): neither is "
            f"touched; set spec.targetRef.name back to {held!r}, or delete this rollout (it "
            f"restores {held!r}) and create another for {spec.target_ref.name!r}",
        )
    if obs.target is None or obs.revision is None:
        return target_missing(ctx)
    clash = conflict(obs) or baseline.conflict(ctx)
    if clash is not None:
        return not_ours(ctx, *clash)

    # From here on the target may be scaled: this is the one the rollout holds.
    if held is None:
        ctx.update(target=spec.target_ref.name)

    # First sight, or a new revision (target template or spec.freeThreaded changed).
    first_sight = ctx.st.revision is None or ctx.st.phase is None
    new_revision = not first_sight and ctx.st.revision != obs.revision
    if first_sight:
        n = spec.replicas if spec.replicas is not None else first_sight_total(obs)
        start_revision(ctx, n=n, first=True)
        if obs.status_error is not None:
            status_unreadable(ctx, obs.status_error)
    elif new_revision:
        start_revision(ctx, n=ctx.st.replicas.target, first=False)
    elif ctx.st.phase == Phase.FAILED and failed_for_spec_or_target(ctx.st):
        # The spec or target became valid again: carry on from where the status says. A
        # rollback stays a rollback (status.rollback is cleared only by retry/new revision).
        if ctx.st.rollback is not None:
            rb = ctx.st.rollback
            ctx.update(
                phase=Phase.ROLLED_BACK, message=f"rolled back ({rb.reason.value}): {rb.message}"
            )
        elif ctx.st.promoted_at is not None:  # a promotion stays a promotion
            ctx.update(
                phase=Phase.PROMOTED,
                message=f"promoted: all {ctx.st.replicas.target} replicas free-threaded",
            )
        else:
            ctx.update(phase=Phase.PROGRESSING if ctx.st.step_index is not None else Phase.PENDING)

    steps_shortened(ctx)
    if spec.replicas is not None:
        follow_rollout_scale(ctx, spec.replicas)
    elif not first_sight:
        follow_external_scale(ctx)
    if obs.target_selector is not None:
        ctx.update(selector=obs.target_selector)
    handle_action(ctx, new_revision)
    hold_removed(ctx)
    observe_guardrails(ctx, now)
    observe_analysis(ctx, now)
    advance(ctx, now)
    progress_deadline(ctx, status)
    post_promotion(ctx)
    ctx.route_writes = plan_routes(ctx)
    return finish(ctx)


def first_sight_total(obs: Observation) -> int:
    """N when status says nothing: what the twin recorded, else both tracks once the operator
    has split the service.

    A status lost mid-step (unreadable, edited away, a rollout re-created after its finalizer
    was removed) at 5 + 5 must not halve the service to N = 5, nor count the pods of a step
    change in flight (9 + 5 asked at 10 -> 50 %: N is 10, not 14). The twin's annotation is
    N as the operator last kept it; the target's own replicas only raise it (scaled by someone
    since). A twin made before the annotation existed falls back to both tracks' replicas
    when the target's replicas were last set by the operator (managedFields): that tells a
    split service from a first status write that failed after the twin was created (10 + 1:
    N is still 10, the target untouched).
    """
    assert obs.target is not None
    if obs.twin is not None and obs.twin_owned and obs.twin_service_replicas:
        return max(obs.twin_service_replicas, obs.target.replicas)
    split_by_us = obs.target.replicas_manager == FIELD_MANAGER
    if obs.twin is None or not obs.twin_owned or not split_by_us:
        return obs.target.replicas
    return obs.target.replicas + obs.twin.replicas


def status_unreadable(ctx: Ctx, error: str) -> None:
    n = ctx.st.replicas.target
    message = (
        f"the stored status could not be read ({error}); started afresh with N = {n} from "
        "both tracks, steps from 0"
    )
    ctx.event("Warning", "StatusUnreadable", message)
    cond(ctx, "StatusReadable", "False", "StatusUnreadable", message)


def failed_for_spec_or_target(st: api.RolloutStatus) -> bool:
    cond = next((c for c in st.conditions if c.type == "Progressing"), None)
    return cond is not None and cond.reason in (
        "InvalidSpec",
        "TargetNotFound",
        REASON_TWIN_NOT_OWNED,
        REASON_TARGET_CLAIMED,
        REASON_TARGET_IS_A_TWIN,
        REASON_TARGET_CHANGED,
        baseline.REASON_BASELINE_NOT_OWNED,
    )


def invalid_spec(status: api.RolloutStatus, obs: Observation) -> Result:
    err = obs.spec_error
    message = str(err) if err is not None else "spec is missing"
    conditions = set_condition(
        status.conditions, "Progressing", "False", "InvalidSpec", message, obs
    )
    status, ignored = ignore_request(status, obs, "the spec is invalid")
    new = status.model_copy(
        update={
            "phase": Phase.FAILED,
            "message": f"invalid spec: {message}",
            "conditions": conditions,
            "observed_generation": obs.generation,
        }
    )
    new = summarise(new, obs)
    events: list[Event] = []
    if status.phase != Phase.FAILED or status.message != new.message:
        events.append(Event("Warning", "InvalidSpec", message))
    events.extend(ignored)
    # Never touch replicas on bad input: capacity stays where it is. The baseline is not
    # capacity: nothing is measured while Failed, so its pods would only take traffic.
    return Result(
        status=new,
        target_replicas=None,
        twin_replicas=None,
        events=tuple(events),
        clear_action=obs.action is not None,
        baseline_replicas=baseline.removed(obs),
    )


def target_missing(ctx: Ctx) -> Result:
    name = ctx.spec.target_ref.name
    message = f"target Deployment {name!r} not found in this namespace"
    if ctx.st.phase != Phase.FAILED or ctx.st.message != message:
        ctx.event("Warning", "TargetNotFound", message)
    ctx.st, ignored = ignore_request(ctx.st, ctx.obs, "the target Deployment is missing")
    ctx.events.extend(ignored)
    ctx.update(
        phase=Phase.FAILED,
        message=message,
        conditions=set_condition(
            ctx.st.conditions, "Progressing", "False", "TargetNotFound", message, ctx.obs
        ),
        observed_generation=ctx.obs.generation,
    )
    # The baseline's pods are then the only standard ones serving.
    return finish(ctx, touch_replicas=False, serving=ctx.st.replicas.target)


def not_ours(ctx: Ctx, reason: str, message: str) -> Result:
    """Another rollout or someone else holds the target or the twin's name: Failed, nothing
    scaled, created or deleted; carried on from the status once the conflict is gone."""
    if ctx.st.phase != Phase.FAILED or ctx.st.message != message:
        ctx.event("Warning", reason, message)
    ctx.st, ignored = ignore_request(ctx.st, ctx.obs, message)
    ctx.events.extend(ignored)
    ctx.update(
        phase=Phase.FAILED,
        message=message,
        conditions=set_condition(
            ctx.st.conditions, "Progressing", "False", reason, message, ctx.obs
        ),
        observed_generation=ctx.obs.generation,
    )
    return finish(ctx, touch_replicas=False)


def finish(ctx: Ctx, touch_replicas: bool = True, serving: int | None = None) -> Result:
    """The Result of a reconcile; `serving` as in `baseline.removed` when the tracks are not
    touched."""
    obs = ctx.obs
    target_set: int | None = None
    twin_set: int | None = None
    baseline_set: int | None = None
    st = ctx.st
    # Failed here means blocked by the dependency gate (spec/target failures return early or
    # recover first): like a rollback, standard back to N, free-threaded down as it is Ready.
    if touch_replicas and obs.target is not None:
        n = st.replicas.target
        std_d, ft_d = desired_split(ctx)
        twin = obs.twin or Workload(0, 0)
        target_set = standard_to_write(ctx)
        twin_set = twin_to_write(ctx)
        # Extra capacity, sized apart: neither track above reads it.
        baseline_set = baseline.baseline_replicas(ctx)
        st = st.model_copy(
            update={
                "replicas": st.replicas.model_copy(
                    update={
                        "standard": target_set,
                        "free_threaded": twin_set,
                        "standard_ready": obs.target.ready,
                        "free_threaded_ready": twin.ready,
                        "ready": obs.target.ready + twin.ready,
                    }
                )
            }
        )
        ctx.st = st
        ready = obs.target.ready + twin.ready
        if ready >= n:
            cond(ctx, "Available", "True", "CapacityMet", f"{ready}/{n} replicas Ready")
        else:
            cond(ctx, "Available", "False", "CapacityLow", f"{ready}/{n} replicas Ready")
        if target_set != std_d or twin_set != ft_d:
            ctx.requeue.append(5.0)
    elif not touch_replicas:
        # Failed before the steps: both tracks stay as they are, the baseline goes.
        baseline_set = baseline.removed(obs, serving)
    progressing_condition(ctx)
    ctx.update(observed_generation=obs.generation)
    guards = ctx.spec.guardrails
    ctx.st = summarise(
        ctx.st,
        obs,
        baking=baking(ctx),
        bake_rolls_back=GuardAction.ROLLBACK
        in (guards.gil_fallback.action, guards.race_budget.action),
    )
    requeue = min(ctx.requeue) if ctx.requeue else None
    return Result(
        status=ctx.st,
        target_replicas=target_set,
        twin_replicas=twin_set,
        events=tuple(ctx.events),
        clear_action=obs.action is not None,
        set_paused=ctx.set_paused,
        requeue_after=requeue,
        run_preflight=ctx.run_preflight,
        adopt_twin=touch_replicas and adoptable(obs),
        route_writes=tuple(ctx.route_writes),
        baseline_replicas=baseline_set,
    )
