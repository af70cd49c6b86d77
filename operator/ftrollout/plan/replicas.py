"""Replica counts of both tracks: the capacity rule, and scaling by someone else.

Capacity rule (DESIGN "Traffic split"): with N the target's replicas when the revision began,
the standard track is only lowered to `N - ready free-threaded`, and the free-threaded track is
only lowered to `N - ready standard`. Ready capacity therefore never drops below N because of
the operator, whatever order the pods become Ready in.
"""

from __future__ import annotations

from ftrollout.model.api import Phase
from ftrollout.plan.context import Ctx
from ftrollout.plan.twin import split
from ftrollout.plan.types import FIELD_MANAGER


def desired_split(ctx: Ctx) -> tuple[int, int]:
    n = ctx.st.replicas.target
    phase = ctx.st.phase
    if phase == Phase.PROMOTED:
        return 0, n
    if phase in (Phase.ROLLED_BACK, Phase.PENDING, Phase.FAILED) or ctx.st.step_index is None:
        return n, 0
    return split(n, ctx.spec.steps[ctx.st.step_index].weight)


def standard_to_write(ctx: Ctx) -> int:
    """Standard replicas to write: never below what Ready free-threaded pods stand in for."""
    assert ctx.obs.target is not None
    std_d, _ = desired_split(ctx)
    twin_ready = ctx.obs.twin.ready if ctx.obs.twin is not None else 0
    n = ctx.st.replicas.target
    return max(std_d, min(ctx.obs.target.replicas, n - twin_ready))


def follow_external_scale(ctx: Ctx) -> None:
    """Someone ran `kubectl scale` on the target: take the new value as the new total N.

    Only while a split is in force; the value the operator last wrote is in status, so a
    difference means a person or an autoscaler changed it.
    """
    target = ctx.obs.target
    assert target is not None
    last = ctx.st.replicas
    if ctx.st.phase not in (Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING):
        return
    if last.standard == 0 and last.free_threaded == 0:
        return  # nothing written yet
    if target.replicas_manager == FIELD_MANAGER:
        return  # the apiserver says the value is ours, whatever status may have missed
    if target.replicas_manager is not None and target.replicas != last.target:
        take_new_total(ctx, target.replicas)
        return
    # The operator's own last write may have landed while its status write did not, and the
    # pods may have moved on since: a value between the last write in status and what it
    # would write now is one of its own writes in flight, not someone else's.
    lo, hi = sorted((last.standard, standard_to_write(ctx)))
    if lo <= target.replicas <= hi:
        return
    if target.replicas != last.target:
        take_new_total(ctx, target.replicas)


def take_new_total(ctx: Ctx, new_n: int) -> None:
    last = ctx.st.replicas
    target = ctx.obs.target
    assert target is not None
    ctx.event(
        "Normal",
        "TargetScaled",
        f"target scaled to {target.replicas} by someone else: total replicas {last.target} -> "
        f"{new_n}, split recomputed at the current step",
    )
    ctx.update(replicas=last.model_copy(update={"target": new_n}))
