"""Kubernetes writes of the fresh baseline `<target>-baseline` (plan.baseline decides its size).

Only a baseline this rollout controls (ownerReference uid) is ever scaled or deleted; a
Deployment of that name held by anyone else is left as it is (the plan fails the rollout).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ftrollout.plan import FIELD_MANAGER
from ftrollout.plan import baseline as plan_baseline
from ftrollout.plan.observe import DeploymentSummary, summarize_deployment
from ftrollout.shell.state import State

log = logging.getLogger("ftrollout")


def controls(d: DeploymentSummary | None, uid: str) -> bool:
    return d is not None and d.controller is not None and d.controller[1] == uid


async def ensure_baseline(
    state: State,
    body: Any,
    held: str,
    target: DeploymentSummary | None,
    baseline: DeploymentSummary | None,
    replicas: int | None,
    revision: str,
) -> None:
    """Create, scale, re-create (new revision or selector) or delete the baseline of the
    target `held`; `target` is that Deployment as observed (None: missing, deleting, or the
    rollout failed before reading it: only a removal can be done)."""
    meta = body["metadata"]
    uid = str(meta.get("uid") or "")
    namespace = meta["namespace"]
    name = plan_baseline.baseline_name(held)
    if replicas is None:
        return
    if baseline is not None and not controls(baseline, uid):
        return  # someone else's: never touched
    if baseline is not None and baseline.deleting:
        return  # on its way out: its DELETED event brings the next look
    if replicas == 0:
        if baseline is not None:
            await delete_baseline(state, namespace, baseline)
        return
    if target is None:
        return
    if baseline is None:
        # Read, not only the cache: a Deployment of that name may be there already (the watch
        # has not shown it yet, or it is someone else's) and must not be fought over.
        live = await state.kube.get_deployment(namespace, name)
        if live is not None:
            state.cache.put_deployment(live)
            state.poke(namespace, meta["name"])
            return
        full = await state.kube.get_deployment(namespace, target.name)
        if full is None:
            return
        manifest = plan_baseline.baseline_manifest(
            rollout_name=meta["name"],
            rollout_uid=uid,
            target=full,
            revision=revision,
            replicas=replicas,
        )
        created = await state.kube.create_deployment(manifest)
        state.cache.wrote_deployment(summarize_deployment(created))
        log.info("created baseline %s/%s with %d replicas", namespace, name, replicas)
        return
    wanted_selector = plan_baseline.selector_of(target.selector, meta["name"])
    if baseline.revision_annotation != revision or baseline.selector != wanted_selector:
        # A new revision starts its steps with a new twin's pods: the baseline is started
        # afresh beside them (same age again), and that also covers a selector, which is
        # immutable. It is extra capacity, so nothing waits for readiness first.
        await delete_baseline(state, namespace, baseline)
        state.poke(namespace, meta["name"])
        return
    if baseline.replicas != replicas:
        rv = await state.kube.scale_deployment(namespace, name, replicas)
        state.cache.wrote_deployment(
            replace(
                baseline, replicas=replicas, replicas_manager=FIELD_MANAGER, resource_version=rv
            )
        )
        log.info("scaled baseline %s/%s %d -> %d", namespace, name, baseline.replicas, replicas)


async def delete_baseline(state: State, namespace: str, baseline: DeploymentSummary) -> None:
    """Delete the baseline as observed: the uid precondition leaves alone a Deployment of that
    name created since (the watch lags), which is then read into the cache for the next look."""
    if await state.kube.delete_deployment(namespace, baseline.name, baseline.uid):
        state.cache.drop_deployment(namespace, baseline.name, baseline.uid)
        log.info("deleted baseline %s/%s", namespace, baseline.name)
        return
    log.info("baseline %s/%s was replaced since it was seen: not deleted", namespace, baseline.name)
    state.cache.drop_deployment(namespace, baseline.name, baseline.uid)
    live = await state.kube.get_deployment(namespace, baseline.name)
    if live is not None:
        state.cache.put_deployment(live)
