"""The fresh baseline (opt-in `spec.analysis.baseline`): its size per phase and its manifest.

The baseline `<target>-baseline` is the target's pod template unchanged (the standard image),
started with the twin and kept at the twin's size at every step, so a compare metric measures
free-threaded pods against standard pods of the same age and the same traffic share rather
than against long-running, warm ones. It is extra capacity: the standard track is sized as
without it (plan.replicas never reads it), and it is removed (0 here: the shell deletes it)
at promotion, rollback, in Pending/Failed (also a Failed for the spec, the target or the twin,
which leaves both tracks as they are) and when the spec turns it off.

Its pods carry the target's labels, so the target's selector matches them, as it matches the
twin's pods: neither the target's Deployment nor its ReplicaSets adopt them, because they
already have a controller (the baseline's own ReplicaSet); the baseline's selector adds the
track and rollout labels, so it matches neither the target's pods nor the twin's.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan.context import Ctx
from ftrollout.plan.replicas import desired_split
from ftrollout.plan.twin import ANNOTATION_REVISION, LABEL_ROLLOUT, LABEL_TRACK, owner_reference
from ftrollout.plan.types import Observation

TRACK_BASELINE = "baseline"
REASON_BASELINE_NOT_OWNED = "BaselineNotOwned"


BASELINE_SUFFIX = "-baseline"


def baseline_name(target: str) -> str:
    return f"{target}{BASELINE_SUFFIX}"


def wanted(spec: api.RolloutSpec) -> bool:
    return spec.analysis is not None and spec.analysis.baseline_enabled


def baseline_replicas(ctx: Ctx) -> int:
    """The baseline's replicas now: the twin's size at the current step, 0 (removed) otherwise.

    The step's split, not what the twin is written at: the capacity rule may hold the twin
    above its step while the standard track catches up, and that surplus is not part of the
    canary being measured.
    """
    if not wanted(ctx.spec) or ctx.st.phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return 0
    if ctx.st.step_index is None:
        return 0
    _, ft = desired_split(ctx)
    return ft


def removed(obs: Observation, serving: int | None = None) -> int | None:
    """The baseline's replicas when the rollout fails before its steps are planned (spec,
    target or twin not usable): 0, removed as in any phase that does not measure, when the
    observed `<target>-baseline` is this rollout's; None (left alone) when there is none or it
    is someone else's (another rollout holding the target runs its own under that name).

    `serving` is N when the target is gone (deleted or being deleted): its standard pods are
    then the baseline's, serving next to the twin's, so it stays until the twin alone is
    Ready at N.

    An unreadable spec leaves ownership unobserved: 0, and the shell deletes only a baseline
    whose controller is this rollout's uid whatever it is told.
    """
    own = obs.ownership
    if obs.baseline is None:
        return None
    if serving is not None and (obs.twin.ready if obs.twin is not None else 0) < serving:
        return None
    if own is None:
        return 0
    ours = own.baseline_controller is not None and own.baseline_controller[1] == own.uid
    return 0 if ours else None


def _selector(selector: dict[str, Any], rollout: str) -> dict[str, Any]:
    out = copy.deepcopy(selector)
    out["matchLabels"] = {
        **(out.get("matchLabels") or {}),
        LABEL_TRACK: TRACK_BASELINE,
        LABEL_ROLLOUT: rollout,
    }
    return out


def selector_of(target_selector: str, rollout: str) -> str:
    """Canonical JSON of the baseline's selector for the target's (canonical JSON, as
    plan.observe summarises a Deployment): a difference means the baseline must be rebuilt."""
    selector = _selector(json.loads(target_selector or "{}"), rollout)
    return json.dumps(selector, sort_keys=True, separators=(",", ":"))


def baseline_manifest(
    *,
    rollout_name: str,
    rollout_uid: str,
    target: dict[str, Any],
    revision: str,
    replicas: int,
) -> dict[str, Any]:
    """The baseline Deployment for a target Deployment (as read from the apiserver)."""
    tmeta = target["metadata"]
    tspec = target["spec"]
    template = copy.deepcopy(tspec["template"])
    labels = dict(template.get("metadata", {}).get("labels") or {})
    labels[LABEL_ROLLOUT] = rollout_name
    labels[LABEL_TRACK] = TRACK_BASELINE
    template.setdefault("metadata", {})["labels"] = labels

    selector = _selector(tspec.get("selector") or {}, rollout_name)
    spec: dict[str, Any] = {"replicas": replicas, "selector": selector, "template": template}
    for key in ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"):
        if key in tspec:
            spec[key] = copy.deepcopy(tspec[key])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": baseline_name(tmeta["name"]),
            "namespace": tmeta["namespace"],
            "labels": {
                **(tmeta.get("labels") or {}),
                LABEL_ROLLOUT: rollout_name,
                LABEL_TRACK: TRACK_BASELINE,
            },
            "annotations": {ANNOTATION_REVISION: revision},
            "ownerReferences": [owner_reference(rollout_name, rollout_uid)],
        },
        "spec": spec,
    }


def conflict(ctx: Ctx) -> tuple[str, str] | None:
    """(reason, message) when a Deployment named like the baseline is someone else's while this
    rollout runs (or is about to run) one.

    Comparing against the standard pods instead would quietly bring back the bias the user
    asked to remove, so the rollout stops as for a twin it does not own: Failed, nothing
    scaled, carried on once the name is free. Promoted and rolled-back rollouts need no
    baseline and ignore it.
    """
    own, existing = ctx.obs.ownership, ctx.obs.baseline
    if own is None or existing is None or not wanted(ctx.spec):
        return None
    if ctx.st.phase in (Phase.PROMOTED, Phase.ROLLED_BACK):
        return None
    if own.baseline_controller is not None and own.baseline_controller[1] == own.uid:
        return None
    holder = "no controller" if own.baseline_controller is None else own.baseline_controller[0]
    name = baseline_name(ctx.spec.target_ref.name)
    return (
        REASON_BASELINE_NOT_OWNED,
        f"Deployment {name!r} exists and is not this rollout's baseline (controller: {holder}): "
        "it is left as it is and nothing is scaled; rename or delete it, or turn "
        "spec.analysis.baseline off",
    )
