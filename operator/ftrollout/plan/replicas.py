"""Replica counts of both tracks: the capacity rule, and scaling by someone else.

Capacity rule (DESIGN "Traffic split"): with N the target's replicas when the revision began,
the standard track is only lowered to `N - ready free-threaded`, and the free-threaded track is
only lowered to `N - ready standard`. Ready capacity therefore never drops below N because of
the operator, whatever order the pods become Ready in.

With traffic routing (`plan.routing`) each track also keeps the replicas for the traffic the
routes send it as observed, and the standard track stays at N until promotion.
"""

from __future__ import annotations

from ftrollout.model.api import Phase
from ftrollout.plan import routing
from ftrollout.plan.bake import warm_standard
from ftrollout.plan.conditions import held_by_guardrail
from ftrollout.plan.context import Ctx
from ftrollout.plan.twin import split, twin_name
from ftrollout.plan.types import FIELD_MANAGER, Workload


def desired_split(ctx: Ctx) -> tuple[int, int]:
    n = ctx.st.replicas.target
    phase = ctx.st.phase
    if phase == Phase.PROMOTED:
        return warm_standard(ctx, 100), n
    if phase in (Phase.ROLLED_BACK, Phase.PENDING, Phase.FAILED) or ctx.st.step_index is None:
        return n, 0
    if held_by_guardrail(ctx.st) and ctx.st.weight is not None:
        # A hold for crashes or GIL fallback holds the share in force: an edit of spec.steps
        # applies on resume, not while free-threaded pods are under suspicion.
        weight = ctx.st.weight
    else:
        weight = ctx.spec.steps[ctx.st.step_index].weight
    return step_split(ctx, weight)


def step_split(ctx: Ctx, weight: int) -> tuple[int, int]:
    """(standard, free-threaded) replicas of a step. With traffic routing the standard track
    stays at N until promotion: the route, not the replica share, decides what it serves, and
    a request share is not a pod share (with matches, the standard pods serve all the rest).
    Warm standard replicas of a post-promotion bake are kept from the last step on."""
    n = ctx.st.replicas.target
    std, ft = split(n, weight)
    # Routing removed mid-rollout: the stable Service still selects the standard pods only.
    if routing.gateway(ctx) is not None or routing.removed(ctx):
        std = n
    return max(std, warm_standard(ctx, weight)), ft


def standard_to_write(ctx: Ctx) -> int:
    """Standard replicas to write: never below what Ready free-threaded pods stand in for.

    Until promotion the standard track also covers free-threaded pods that went unReady after
    it was lowered (a crash loop, a failing readiness probe, a guardrail that only pauses): it
    is raised to N - ready free-threaded, and lowered again as they come back. This is the
    same bound that holds it up while the twin scales up, so the two never pull apart. A
    promoted rollout keeps the standard track at 0 (or the replicas kept warm during the
    bake): the twin's own Deployment replaces pods.
    """
    assert ctx.obs.target is not None
    std_d, _ = desired_split(ctx)
    twin_ready = ctx.obs.twin.ready if ctx.obs.twin is not None else 0
    n = ctx.st.replicas.target
    # With routing, also whatever the routes still send to the standard track (as observed).
    floor, _ = routing.capacity_floor(ctx)
    if ctx.st.phase == Phase.PROMOTED:
        return max(std_d, min(ctx.obs.target.replicas, n - twin_ready), floor)
    return max(std_d, n - twin_ready, floor)


def follow_external_scale(ctx: Ctx) -> None:
    """Someone else (a person, an autoscaler, GitOps) scaled the service: take it as the new N.

    The service is what users scale, so in every phase a scale of the target by another manager
    sets the new total N and the split is recomputed; the operator never writes the old N back.
    In RolledBack and Failed the standard track is the whole service. Promoted: the target is at
    0 and the twin has everything; the target scaled to M > 0 is the new total M (all of it
    free-threaded once Ready), and so is the twin scaled by someone else (an HPA cannot scale a
    Deployment at 0 replicas, so after promotion it points at the twin). Before promotion the
    twin is the operator's own split and a scale of it is undone; so is a promoted twin scaled to
    0 (no autoscaler does that; the way back to standard is `kubectl ftr rollback`).

    The value the operator last wrote is in status, so a difference means someone else changed
    it; managedFields settle it when known.
    """
    target = ctx.obs.target
    assert target is not None
    if ctx.st.phase is None:
        return
    promoted_at_zero = ctx.st.phase == Phase.PROMOTED and target.replicas == 0
    last_std = ctx.st.replicas.standard
    if (
        not promoted_at_zero
        and not _stale_copy(ctx, target)
        and _scaled_by_someone_else(ctx, target, last_std, standard_to_write(ctx))
    ):
        take_new_total(ctx, target.replicas, "target")
        return
    _warn_of_a_reapplied_total(ctx, target)
    twin = ctx.obs.twin
    if ctx.st.phase != Phase.PROMOTED or twin is None or twin.replicas == 0:
        return
    if _scaled_by_someone_else(ctx, twin, ctx.st.replicas.free_threaded, twin_to_write(ctx)):
        take_new_total(ctx, twin.replicas, "twin")


def follow_rollout_scale(ctx: Ctx, total: int) -> None:
    """spec.replicas set (by an HPA through the rollout's scale subresource, or by hand): the
    total of both tracks, in every phase, split per step like any N.

    The target's replicas are then the operator's alone: a scale of the target Deployment is
    undone, so an HPA must point at the rollout, never at the target (Argo Rollouts' design).
    """
    last = ctx.st.replicas.target
    if total == last:
        return
    ctx.event(
        "Normal",
        "RolloutScaled",
        f"spec.replicas of the rollout set to {total}: total replicas {last} -> {total}, split "
        "recomputed",
    )
    ctx.update(replicas=ctx.st.replicas.model_copy(update={"target": total}))


def _stale_copy(ctx: Ctx, target: Workload) -> bool:
    """A value the operator itself wrote to the target a moment ago, set again by another
    manager: a tool that copies the live value (Argo CD's RespectIgnoreDifferences) read it
    before the operator's next write and applied it after. Not a scale: the split is written
    again; after promotion too, where the copy lands on a target the operator has set to 0. (A
    person who scales to exactly one of those values within a couple of minutes of the
    operator's write is undone; any other value is taken.)"""
    manager = target.replicas_manager
    return manager not in (None, FIELD_MANAGER) and target.replicas in ctx.obs.own_target_writes


def _scaled_by_someone_else(ctx: Ctx, live: Workload, last_written: int, would_write: int) -> bool:
    if live.replicas == ctx.st.replicas.target:
        return False  # the same total: nothing to follow
    if live.replicas_manager == FIELD_MANAGER:
        return False  # the apiserver says the value is ours, whatever status may have missed
    if live.replicas_manager is not None:
        return True
    # The operator's own last write may have landed while its status write did not, and the
    # pods may have moved on since: a value between the last write in status and what it
    # would write now is one of its own writes in flight, not someone else's.
    lo, hi = sorted((last_written, would_write))
    return not lo <= live.replicas <= hi


def _warn_of_a_reapplied_total(ctx: Ctx, target: Workload) -> None:
    """The total set back on a split target by someone else: a GitOps copy holding spec.replicas.

    It is the total, not a new one, so the operator writes its split again (the surplus pods
    cost no capacity); but every re-apply starts and stops pods, and the tool will do it again.
    Each one is reported with the manager's name and the fix, so the fight is visible.
    """
    manager = target.replicas_manager
    if manager in (None, FIELD_MANAGER) or target.replicas != ctx.st.replicas.target:
        return
    if target.replicas == standard_to_write(ctx):
        return  # nothing to undo: the target is the whole service in this phase
    ctx.event(
        "Warning",
        "ReplicasReapplied",
        f"spec.replicas of {ctx.spec.target_ref.name} set back to {target.replicas} by field "
        f"manager {manager} while the operator splits it: written again. If {manager} re-applies "
        "a Git copy, leave spec.replicas out of it (Flux, kustomize) or ignore /spec/replicas "
        "(Argo CD ignoreDifferences)",
    )


def twin_to_write(ctx: Ctx) -> int:
    """Free-threaded replicas to write: never below what Ready standard pods stand in for."""
    assert ctx.obs.target is not None
    _, ft_d = desired_split(ctx)
    twin = ctx.obs.twin or Workload(0, 0)
    # With routing, also whatever the routes still send to it: a rollback restores the route
    # before the free-threaded pods go.
    _, floor = routing.capacity_floor(ctx)
    return max(ft_d, min(twin.replicas, ctx.st.replicas.target - ctx.obs.target.ready), floor)


def take_new_total(ctx: Ctx, new_n: int, track: str) -> None:
    last = ctx.st.replicas
    name = ctx.spec.target_ref.name if track == "target" else twin_name(ctx.spec.target_ref.name)
    ctx.event(
        "Normal",
        "TargetScaled",
        f"{track} {name} scaled to {new_n} by someone else: total replicas {last.target} -> "
        f"{new_n}, split recomputed",
    )
    ctx.update(replicas=last.model_copy(update={"target": new_n}))
