"""Ownership: the operator changes or deletes only a twin it controls, and one rollout per target.

A Deployment named `<target>-ft` without a controller reference to this rollout is someone
else's (their own Deployment, or the twin of another rollout): it is never scaled, re-templated
or deleted. Of several rollouts on one target the one whose twin exists (the twin's controller)
rolls; only while no twin exists the first (oldest creationTimestamp, then name) does. The
others are Failed naming it and touch nothing. Age alone would hand the target to an older
rollout whose targetRef is edited onto it mid-rollout: the active one would stop and the older
one could not touch the other's twin, leaving the service with no guardrail at all.
"""

from __future__ import annotations

from ftrollout.plan.types import Claim, Observation, Ownership

REASON_TWIN_NOT_OWNED = "TwinNotOwned"
REASON_TARGET_CLAIMED = "TargetClaimed"
REASON_TARGET_IS_A_TWIN = "TargetIsATwin"


def first_claim(claims: tuple[Claim, ...]) -> Claim | None:
    """The rollout that rolls a target several rollouts claim: the oldest; a tie (or unknown
    times) decided by name, so every reconcile of every rollout agrees."""
    if not claims:
        return None
    return min(claims, key=lambda c: (c.created == "", c.created, c.name))


ROLLOUT_KIND = "FreeThreadedRollout"


def twin_holder(obs: Observation) -> str | None:
    """The rollout among the claims that controls the existing twin: it holds the target."""
    own = obs.ownership
    if own is None or obs.twin is None or own.twin_controller is None:
        return None
    kind, _, name = own.twin_controller[0].partition("/")
    if kind != ROLLOUT_KIND or name not in {c.name for c in own.claims}:
        return None
    return name


def target_twin_of(own: Ownership) -> str | None:
    """The rollout whose twin the target is: its controller, or (an ownerReference removed by
    hand) the rollout label a twin carries."""
    if own.target_controller is not None:
        kind, _, name = own.target_controller[0].partition("/")
        if kind == ROLLOUT_KIND:
            return name
    if own.target_rollout_label is not None and own.target.endswith("-ft"):
        return own.target_rollout_label
    return None


def adoptable(obs: Observation) -> bool:
    """The twin was made by an earlier rollout of this name, now gone (names are unique: a
    different uid under the same name is a deleted object), or lost its ownerReference to an
    orphaning delete, and still carries this rollout's label. It is adopted, as a Deployment
    adopts its orphaned ReplicaSets: failing instead would let garbage collection remove the
    free-threaded half of a split service, and the next first sight take N from the rest."""
    own = obs.ownership
    if own is None or obs.twin is None or not obs.twin_owned:
        return False
    if own.twin_controller is None:
        return True
    kind, _, name = own.twin_controller[0].partition("/")
    return kind == ROLLOUT_KIND and name == own.rollout and own.twin_controller[1] != own.uid


def conflict(obs: Observation) -> tuple[str, str] | None:
    """(reason, message) when this rollout must not touch the target or the twin."""
    own = obs.ownership
    if own is None:
        return None
    twin_of = target_twin_of(own)
    if twin_of is not None:
        return (
            REASON_TARGET_IS_A_TWIN,
            f"the target {own.target!r} is the free-threaded twin of FreeThreadedRollout "
            f"{twin_of!r}: it is scaled by that rollout only; this rollout touches nothing, "
            "point spec.targetRef at the standard Deployment",
        )
    holder = twin_holder(obs)
    if holder is not None and holder != own.rollout:
        return (
            REASON_TARGET_CLAIMED,
            f"the target is already rolled by FreeThreadedRollout {holder!r} (it controls the "
            f"twin {own.twin!r}): this rollout touches nothing; delete it or point it at "
            "another target",
        )
    first = first_claim(tuple({c.name: c for c in own.claims}.values()))
    if holder is None and first is not None and first.name != own.rollout:
        return (
            REASON_TARGET_CLAIMED,
            f"the target is already rolled by FreeThreadedRollout {first.name!r} (the first to "
            "target it): this rollout touches nothing; delete it or point it at another target",
        )
    if (
        obs.twin is not None
        and (own.twin_controller is None or own.twin_controller[1] != own.uid)
        and not adoptable(obs)
    ):
        holder = "no controller" if own.twin_controller is None else own.twin_controller[0]
        return (
            REASON_TWIN_NOT_OWNED,
            f"Deployment {own.twin!r} exists and is not this rollout's twin (controller: "
            f"{holder}): it is left as it is and nothing is scaled; rename or delete it",
        )
    return None
