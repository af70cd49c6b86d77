"""Kubernetes writes that build the free-threaded twin (and the probe ConfigMap it mounts)."""

from __future__ import annotations

import json
import logging
from typing import Any

from ftrollout.model import api
from ftrollout.plan import Result
from ftrollout.plan import twin as workloads
from ftrollout.plan.observe import DeploymentSummary, summarize_deployment
from ftrollout.plan.preflight import PROBE_CONFIGMAP
from ftrollout.shell.state import State

log = logging.getLogger("ftrollout")


class TwinReplaced(Exception):
    """The twin was deleted to be re-created on the target's new selector."""


class TwinChanged(Exception):
    """The twin observed is no longer the Deployment under its name (the watch lags): the cache
    now holds the live one, and nothing decided on the old one may be written."""


async def ensure_twin(
    state: State,
    body: Any,
    spec: api.RolloutSpec,
    target: DeploymentSummary,
    twin: DeploymentSummary | None,
    result: Result,
) -> None:
    revision = result.status.revision or ""
    namespace = target.namespace
    needs_create = twin is None
    needs_update = twin is not None and twin.revision_annotation != revision
    if not (needs_create or needs_update):
        return
    full = await state.kube.get_deployment(namespace, target.name)
    if full is None:
        return
    manifest = workloads.twin_manifest(
        rollout_name=body["metadata"]["name"],
        rollout_uid=body["metadata"].get("uid", ""),
        target=full,
        spec=spec.free_threaded,
        revision=revision,
        replicas=result.twin_replicas or 0,
        probe_configmap=PROBE_CONFIGMAP if spec.free_threaded.probe.enabled else None,
        service_replicas=result.status.replicas.target,
    )
    if spec.free_threaded.probe.enabled:
        await ensure_probe_configmap(state, namespace)
    if needs_create:
        created = await state.kube.create_deployment(manifest)
        state.cache.wrote_deployment(summarize_deployment(created))
        log.info(
            "created twin %s/%s with %d replicas (revision %s)",
            namespace,
            manifest["metadata"]["name"],
            result.twin_replicas,
            revision,
        )
    else:
        assert twin is not None
        if not workloads.twin_pods_may_be_replaced(
            result.status.replicas.target, target.ready, twin.ready
        ):
            return  # the standard track's readiness brings the next look
        if twin.selector != _canonical_selector(manifest):
            # The selector of a Deployment is immutable: replace the twin. Only the one
            # observed (uid precondition): one created under its name since is not ours.
            state.cache.drop_deployment(namespace, twin.name, twin.uid)
            if not await state.kube.delete_deployment(namespace, twin.name, twin.uid):
                log.info("%s/%s: replaced since it was seen: not deleted", namespace, twin.name)
                live = await state.kube.get_deployment(namespace, twin.name)
                if live is not None:
                    state.cache.put_deployment(live)
                raise TwinChanged
            log.info("%s/%s: twin on an old selector deleted", namespace, twin.name)
            raise TwinReplaced
        await state.kube.replace_twin_template(manifest)
        log.info("twin %s/%s moved to revision %s", namespace, twin.name, revision)


async def ensure_probe_configmap(state: State, namespace: str) -> None:
    from ftrollout.probe import probe_configmap_data

    if namespace in state.probe_configmaps:
        return
    await state.kube.ensure_configmap(
        namespace,
        PROBE_CONFIGMAP,
        probe_configmap_data(),
        {"app.kubernetes.io/managed-by": "ftrollout"},
    )
    state.probe_configmaps.add(namespace)


def twin_selector(target_selector: str, rollout: str) -> str:
    """Canonical JSON of the twin's selector for a target selector (as workloads builds it)."""
    selector = json.loads(target_selector or "{}")
    labels = dict(selector.get("matchLabels") or {})
    labels[workloads.LABEL_TRACK] = workloads.TRACK_FREE_THREADED
    labels[workloads.LABEL_ROLLOUT] = rollout
    selector["matchLabels"] = labels
    return json.dumps(selector, sort_keys=True, separators=(",", ":"))


def _canonical_selector(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest["spec"]["selector"], sort_keys=True, separators=(",", ":"))
