"""The progress deadline: a step whose free-threaded pods are not all Ready in time rolls back.

The likeliest failure of a free-threaded image is one that never starts: a dependency without a
free-threaded wheel (ImportError, exit 1, CrashLoopBackOff) or a wrong tag (ImagePullBackOff).
No guardrail sees it (no GIL reading, no race exit code), so without a deadline the rollout
would wait at its step for ever.

The clock starts when a step starts scaling (`status.stepProgressSince`) and stops only when the
step is reached: all of its free-threaded pods Ready at once. Pods that are Ready for a moment
and crash again do not restart it (Argo Rollouts #3765). spec.paused stops it; a resume, a new
step, a retry or a new revision starts it again.
"""

from __future__ import annotations

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.model.durations import format_duration
from ftrollout.plan.actions import rollback
from ftrollout.plan.context import Ctx
from ftrollout.plan.twin import split
from ftrollout.plan.types import parse_time, rfc3339

MAX_QUOTED = 3  # distinct pod failures quoted in the rollback message


def progress_deadline(ctx: Ctx, before: api.RolloutStatus) -> None:
    """Run after the step was (or was not) reached in this reconcile; `before` is the status
    this reconcile started from (a different step or revision starts a new clock)."""
    st = ctx.st
    idx = st.step_index
    scaling = (
        st.phase == Phase.PROGRESSING
        and idx is not None
        and st.step_started_at is None
        and not ctx.spec.paused
    )
    if not scaling or idx is None:
        if st.step_progress_since is not None:
            ctx.update(step_progress_since=None)
        return
    same_step = before.revision == st.revision and before.step_index == idx
    since = st.step_progress_since if same_step else None
    if since is None:
        since = rfc3339(ctx.obs.now)
        ctx.update(step_progress_since=since)
    deadline = ctx.spec.progress_deadline_seconds
    elapsed = ctx.obs.now.timestamp() - parse_time(since).timestamp()
    if elapsed < deadline:
        ctx.requeue.append(max(1.0, deadline - elapsed))
        return
    step = ctx.spec.steps[idx]
    _, ft = split(st.replicas.target, step.weight)
    ready = ctx.obs.twin.ready if ctx.obs.twin is not None else 0
    message = (
        f"step {idx + 1}/{len(ctx.spec.steps)} ({step.weight}%): {min(ready, ft)}/{ft} "
        f"free-threaded pods Ready {format_duration(deadline)} after the step started "
        f"scaling (spec.progressDeadline {ctx.spec.progress_deadline}); {pod_failures(ctx)}"
    )
    rollback(ctx, RollbackReason.PROGRESS_DEADLINE, message)
    ctx.update(step_progress_since=None)


def pod_failures(ctx: Ctx) -> str:
    """The distinct failures of this revision's free-threaded pods, each with a pod that has it."""
    by_failure: dict[str, list[str]] = {}
    for p in ctx.obs.pods:
        if p.failure is None or p.terminating:
            continue
        if p.revision is not None and p.revision != ctx.obs.revision:
            continue
        by_failure.setdefault(p.failure, []).append(p.pod)
    if not by_failure:
        return "no free-threaded pod reported a failure"
    quoted = []
    for failure, pods in sorted(by_failure.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        who = pods[0] + (f" and {len(pods) - 1} more" if len(pods) > 1 else "")
        quoted.append(f"pod {who}: {failure}")
    more = len(quoted) - MAX_QUOTED
    return "; ".join(quoted[:MAX_QUOTED]) + (f"; {more} other failure(s)" if more > 0 else "")
