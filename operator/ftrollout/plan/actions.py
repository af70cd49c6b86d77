"""User actions (the freethreaded.dev/action annotation) and the transitions they share.

promote, promote-full, pause, resume, rollback, retry; a new revision and a retry both start the
steps again from 0 (`start_revision`).

Each request is applied once: status.lastAction records it until the annotation is seen gone
(not merely hidden by the shell while it removes it), and status.recentActions keeps the last
few requests with their outcome: one with an id found there is never applied again (written
again after its annotation was seen gone, it is answered Ignored: "already answered at ..."),
and `kubectl ftr <action> --wait` reads its outcome there. A request read in the reconcile
that first sees a new revision is Ignored: it was meant for the revision the user saw.
The shell records the Events (each naming the request it answers) and then removes the
annotation, only while it still holds that request: one written over it meanwhile stays, for
the next reconcile. If that removal fails or the operator dies in between, the request is seen
again and only removed. A request is its value (`kubectl
ftr` writes `promote@<unique id>`) and, for a plain value (`kubectl annotate ...=promote`),
when the annotation was written.
"""

from __future__ import annotations

from dataclasses import replace

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan import routing
from ftrollout.plan.context import Ctx
from ftrollout.plan.preflight import gate_unpassed, retry_gate
from ftrollout.plan.types import ACTIONS, Event, Observation, rfc3339


def action_ignored(action: str, why: str) -> Event:
    return Event("Warning", "ActionIgnored", f"action {action!r} ignored: {why}", action=action)


def start_revision(ctx: Ctx, n: int, first: bool) -> None:
    assert ctx.obs.revision is not None
    if first:
        msg = f"started: {n} replicas, revision {ctx.obs.revision}"
        ctx.event("Normal", "RolloutStarted", msg)
    elif ctx.obs.revision == ctx.st.revision:  # retry: its own Retry event says so
        msg = f"retry: standard back to {n}, steps start again from 0"
    else:
        msg = (
            f"new revision {ctx.obs.revision} (was {ctx.st.revision}): standard back to {n}, "
            "steps start again from 0"
        )
        ctx.event("Normal", "NewRevision", msg)
    ctx.update(
        revision=ctx.obs.revision,
        phase=Phase.PENDING,
        step_index=None,
        weight=0,
        step_started_at=None,
        replicas=ctx.st.replicas.model_copy(update={"target": n}),
        analysis=api.AnalysisStatus(),
        races=api.RaceStatus(),
        rollback=None,
        promoted_at=None,
        preflight=None if not first else ctx.st.preflight,
        # A restart of the steps (new revision, retry) ends what StatusUnreadable explained.
        conditions=[c for c in ctx.st.conditions if c.type != "StatusReadable"],
        message=msg,
    )


def verb_of(value: str) -> str:
    """`promote@<id>` -> `promote`."""
    return value.split("@", 1)[0]


def same_request(record: api.ActionRecord | None, value: str, written_at: str | None) -> bool:
    if record is None or record.value != value:
        return False
    # A value with an id names one request; a plain value also needs the time it was written.
    return "@" in value or record.written_at == written_at


def already_read(st: api.RolloutStatus, value: str, written_at: str | None) -> bool:
    """Whether this request was applied (or ignored) already. A request with an id is one
    request for as long as status.recentActions remembers it, even once lastAction was cleared
    (an echo of an earlier write can show the annotation again after that)."""
    if same_request(st.last_action, value, written_at):
        return True
    return "@" in value and any(r.value == value for r in st.recent_actions)


IGNORED_REASONS = ("ActionIgnored", "UnknownAction")


def remember(
    st: api.RolloutStatus, obs: Observation, events: list[Event]
) -> list[api.ActionOutcome]:
    """status.recentActions with the request in `obs` and its outcome (from its Events)."""
    assert obs.action is not None
    ignored = any(e.reason in IGNORED_REASONS for e in events)
    entry = api.ActionOutcome(
        value=obs.action,
        written_at=obs.action_written_at,
        outcome="Ignored" if ignored else "Applied",
        message="; ".join(e.message for e in events)[:512],
        time=rfc3339(obs.now),
    )
    return [*st.recent_actions, entry][-api.RECENT_ACTIONS :]


def record(obs: Observation) -> api.ActionRecord | None:
    """The status record of the request in `obs`."""
    if obs.action is None:
        return None
    return api.ActionRecord(
        value=obs.action, written_at=obs.action_written_at, time=rfc3339(obs.now)
    )


def ignore_request(
    st: api.RolloutStatus, obs: Observation, why: str
) -> tuple[api.RolloutStatus, tuple[Event, ...]]:
    """A request that cannot apply now (invalid spec, no target, not ours): said once per
    request, and recorded like an applied one."""
    if obs.action is None or already_read(st, obs.action, obs.action_written_at):
        return st, ()
    event = action_ignored(obs.action, why)
    update = {"last_action": record(obs), "recent_actions": remember(st, obs, [event])}
    return st.model_copy(update=update), (event,)


def handle_action(ctx: Ctx, new_revision: bool = False) -> None:
    """`new_revision`: this reconcile is the first to see the target's current revision."""
    value = ctx.obs.action
    if value is None:
        # Gone, unless the shell only hid a request it is still removing: lastAction is what
        # keeps an echo of an earlier write that still shows it from applying it again.
        if ctx.st.last_action is not None and not ctx.obs.action_consuming:
            ctx.update(last_action=None)  # its annotation is gone: any later one is new
        return
    if same_request(ctx.st.last_action, value, ctx.obs.action_written_at):
        # Applied already; the shell removes the annotation again. spec.paused is written
        # after the status that records a pause: a stop in between left it unwritten.
        verb = verb_of(value)
        if verb in ("pause", "resume") and ctx.spec.paused != (verb == "pause"):
            ctx.pause(verb == "pause")
        return
    if already_read(ctx.st, value, ctx.obs.action_written_at):
        # An id written again after its annotation was seen gone (a script re-using a fixed
        # id): answered, so that nobody waits for it, but never applied twice.
        earlier = next(r for r in reversed(ctx.st.recent_actions) if r.value == value)
        event = action_ignored(
            value,
            f"already answered at {earlier.time} ({earlier.outcome}): a request id is "
            "applied once, write a new id to request it again",
        )
        ctx.events.append(event)
        ctx.update(last_action=record(ctx.obs), recent_actions=remember(ctx.st, ctx.obs, [event]))
        return
    ctx.update(last_action=record(ctx.obs))
    first = len(ctx.events)
    if new_revision:
        # Written for the revision the user saw: applied to one nobody has looked at, a
        # promote would skip its steps, its gate and its analysis.
        ctx.events.append(
            action_ignored(
                value,
                f"the target changed to revision {ctx.obs.revision} in the same moment: "
                "request again for the new revision",
            )
        )
    else:
        _apply(ctx, value)
    # Every Event of this request names it (the shell puts it in an annotation of the Event).
    ctx.events[first:] = [replace(e, action=value) for e in ctx.events[first:]]
    ctx.update(recent_actions=remember(ctx.st, ctx.obs, ctx.events[first:]))


def _apply(ctx: Ctx, value: str) -> None:
    action = verb_of(value)
    st = ctx.st
    if action not in ACTIONS:
        ctx.event(
            "Warning",
            "UnknownAction",
            f"annotation freethreaded.dev/action={value!r} ignored: use one of "
            + ", ".join(ACTIONS),
        )
        return
    if action in ("promote", "promote-full", "resume") and routing.removed_mid_rollout(ctx):
        # Promoted, the standard track would go to 0 while the stable Service is all there is.
        ctx.events.append(action_ignored(value, routing.removed_why(ctx)))
        return
    if action == "rollback":
        if st.phase == Phase.ROLLED_BACK:
            ctx.event("Normal", "ActionIgnored", "rollback: already rolled back")
        else:
            rollback(ctx, RollbackReason.MANUAL, "rollback requested by the user")
    elif action == "retry":
        if st.phase in (Phase.ROLLED_BACK, Phase.FAILED):
            ctx.event("Normal", "Retry", "retry requested: steps start again from 0")
            start_revision(ctx, n=st.replicas.target, first=False)
            retry_gate(ctx, st.preflight)
        else:
            ctx.event("Normal", "ActionIgnored", f"retry: nothing to retry in phase {st.phase}")
    elif action == "pause":
        ctx.pause(True)
        ctx.event("Normal", "PauseRequested", "pause requested: holding at the current step")
    elif action == "resume":
        ctx.pause(False)
        ctx.event("Normal", "ResumeRequested", "resume requested")
        if waiting_for_promote(ctx):
            promote_step(ctx, "resume")
        elif st.phase == Phase.PAUSED and st.message.startswith("paused ("):
            # Lift a guardrail / inconclusive hold; guardrails below re-hold if still breached.
            ctx.update(phase=Phase.PROGRESSING, message="resumed by the user")
    elif action in ("promote", "promote-full"):
        if st.phase in (Phase.ROLLED_BACK, Phase.PROMOTED, Phase.FAILED):
            ctx.event("Normal", "ActionIgnored", f"{action}: not possible in phase {st.phase}")
        elif action == "promote-full" and (why := gate_unpassed(ctx)) is not None:
            # Skipping the steps is the user's call; skipping the image check is not.
            ctx.events.append(action_ignored(value, f"{why}: request again once it has passed"))
        elif action == "promote-full":
            # Promoted at once: the capacity rule still scales standard down only as
            # free-threaded pods become Ready.
            promote_full_done(ctx, "promote-full: skipping the remaining steps and pauses")
        else:
            promote_step(ctx, "promote")


def waiting_for_promote(ctx: Ctx) -> bool:
    st = ctx.st
    if st.step_index is None or st.step_started_at is None:
        return False
    return ctx.spec.steps[st.step_index].waits_for_promote


def promote_step(ctx: Ctx, why: str) -> None:
    st = ctx.st
    if st.step_index is None:
        ctx.update(step_index=0, weight=ctx.spec.steps[0].weight, step_started_at=None)
        ctx.event("Normal", "StepPromoted", f"{why}: starting step 1")
        return
    if st.step_index >= len(ctx.spec.steps) - 1:
        if st.step_started_at is not None:
            promote_full_done(ctx, f"{why}: last step promoted")
        else:
            ctx.event("Normal", "ActionIgnored", f"{why}: last step not reached yet")
        return
    nxt = st.step_index + 1
    ctx.update(
        step_index=nxt,
        weight=ctx.spec.steps[nxt].weight,
        step_started_at=None,
        phase=Phase.PROGRESSING,
    )
    ctx.event("Normal", "StepPromoted", f"{why}: to step {nxt + 1} ({ctx.spec.steps[nxt].weight}%)")


def promote_full_done(ctx: Ctx, message: str) -> None:
    ctx.update(
        phase=Phase.PROMOTED,
        weight=100,
        step_index=len(ctx.spec.steps) - 1,
        promoted_at=rfc3339(ctx.obs.now),
    )
    ctx.update(message=f"promoted: all {ctx.st.replicas.target} replicas free-threaded")
    ctx.event("Normal", "Promoted", message)


def rollback(ctx: Ctx, reason: RollbackReason, message: str) -> None:
    now = rfc3339(ctx.obs.now)
    ctx.update(
        phase=Phase.ROLLED_BACK,
        weight=0,
        step_started_at=None,
        rollback=api.RollbackStatus(reason=reason, message=message, time=now),
        message=f"rolled back ({reason.value}): {message}",
    )
    ctx.event("Warning", "RolledBack", f"{reason.value}: {message}")
