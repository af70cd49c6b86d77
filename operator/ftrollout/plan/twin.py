"""Twin Deployment maths and manifests (pure: dicts in, dicts out).

The target Deployment is the standard track and is never edited except `spec.replicas`. The
twin `<target>-ft` is the target's pod template with one container's image swapped, an extra
track label in its selector, and an ownerReference to the FreeThreadedRollout.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ftrollout.model import api

LABEL_ROLLOUT = f"{api.GROUP}/rollout"
LABEL_TRACK = f"{api.GROUP}/track"
TRACK_FREE_THREADED = "free-threaded"
TRACK_STANDARD = "standard"
ANNOTATION_REVISION = f"{api.GROUP}/revision"
ANNOTATION_ACTION = f"{api.GROUP}/action"
# N on the twin itself: a status lost mid-step (unreadable, a re-created rollout) cannot tell
# the pods of a step change in flight (9 standard + 5 free-threaded asked at 10 -> 50 %) from
# the service's size; the twin, made and kept by the operator, remembers it.
ANNOTATION_SERVICE_REPLICAS = f"{api.GROUP}/service-replicas"


TWIN_SUFFIX = "-ft"


def twin_name(target: str) -> str:
    return f"{target}{TWIN_SUFFIX}"


def split(total: int, weight: int) -> tuple[int, int]:
    """(standard, free_threaded) for a weight: ft = ceil(N * weight / 100), standard = N - ft."""
    ft = min(total, math.ceil(total * weight / 100))
    return total - ft, ft


def twin_pods_may_be_replaced(n: int, standard_ready: int, twin_ready: int) -> bool:
    """Whether the twin's pods may be replaced now (new template, or deleted for a new selector).

    The twin copies the target's strategy: `Recreate` kills every free-threaded pod at once,
    `RollingUpdate` a quarter of them. So only once the standard track alone has N Ready, or
    when the twin has no Ready pod to lose.
    """
    return standard_ready >= n or twin_ready == 0


class TwinError(ValueError):
    """The target cannot be turned into a twin (e.g. the named container does not exist)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def container_index(template: dict[str, Any], spec: api.FreeThreadedSpec) -> int:
    containers = template.get("spec", {}).get("containers") or []
    if not containers:
        raise TwinError("spec.targetRef", "the target's pod template has no containers")
    if spec.container is None:
        return 0
    for i, c in enumerate(containers):
        if c.get("name") == spec.container:
            return i
    names = ", ".join(str(c.get("name")) for c in containers)
    raise TwinError(
        "spec.freeThreaded.container",
        f"container {spec.container!r} not found in the target's pod template (has: {names})",
    )


def twin_manifest(
    *,
    rollout_name: str,
    rollout_uid: str,
    target: dict[str, Any],
    spec: api.FreeThreadedSpec,
    revision: str,
    replicas: int,
    probe_configmap: str | None = None,
    service_replicas: int | None = None,
) -> dict[str, Any]:
    """The twin Deployment for a target Deployment (as read from the apiserver)."""
    tmeta = target["metadata"]
    tspec = target["spec"]
    template = copy.deepcopy(tspec["template"])
    idx = container_index(template, spec)
    container = template["spec"]["containers"][idx]
    container["image"] = spec.image

    labels = dict(template.get("metadata", {}).get("labels") or {})
    labels[LABEL_ROLLOUT] = rollout_name
    labels[LABEL_TRACK] = TRACK_FREE_THREADED
    template.setdefault("metadata", {})["labels"] = labels
    tpl_annotations = dict(template["metadata"].get("annotations") or {})
    tpl_annotations[ANNOTATION_REVISION] = revision
    template["metadata"]["annotations"] = tpl_annotations

    if probe_configmap is not None and spec.probe.enabled:
        _inject_probe(template, container, probe_configmap, spec.probe.port)

    selector = copy.deepcopy(tspec.get("selector") or {})
    match_labels = dict(selector.get("matchLabels") or {})
    match_labels[LABEL_TRACK] = TRACK_FREE_THREADED
    match_labels[LABEL_ROLLOUT] = rollout_name
    selector["matchLabels"] = match_labels

    twin_spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": selector,
        "template": template,
    }
    for key in ("strategy", "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"):
        if key in tspec:
            twin_spec[key] = copy.deepcopy(tspec[key])

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": twin_name(tmeta["name"]),
            "namespace": tmeta["namespace"],
            "labels": {
                **(tmeta.get("labels") or {}),
                LABEL_ROLLOUT: rollout_name,
                LABEL_TRACK: TRACK_FREE_THREADED,
            },
            "annotations": {
                ANNOTATION_REVISION: revision,
                **(
                    {ANNOTATION_SERVICE_REPLICAS: str(service_replicas)} if service_replicas else {}
                ),
            },
            "ownerReferences": [owner_reference(rollout_name, rollout_uid)],
        },
        "spec": twin_spec,
    }


PROBE_MOUNT = "/opt/ftrollout-probe"
PROBE_VOLUME = "ftrollout-probe"
#: The probe's container port name (<= 15 characters, IANA_SVC_NAME): what a PodMonitor selects.
PROBE_PORT_NAME = "ftr-probe"
SCRAPE_ANNOTATION_PREFIX = "prometheus.io/"


def _inject_probe(
    template: dict[str, Any], container: dict[str, Any], configmap: str, port: int
) -> None:
    pod_spec = template["spec"]
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") != PROBE_VOLUME]
    volumes.append({"name": PROBE_VOLUME, "configMap": {"name": configmap}})
    pod_spec["volumes"] = volumes
    mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != PROBE_VOLUME]
    mounts.append({"name": PROBE_VOLUME, "mountPath": PROBE_MOUNT, "readOnly": True})
    container["volumeMounts"] = mounts
    env = _probe_pythonpath(container)
    env.append({"name": "FTR_PROBE_PORT", "value": str(port)})
    container["env"] = env
    ports = [p for p in container.get("ports") or [] if p.get("name") != PROBE_PORT_NAME]
    ports.append({"name": PROBE_PORT_NAME, "containerPort": port, "protocol": "TCP"})
    container["ports"] = ports
    annotations = template["metadata"].setdefault("annotations", {})
    if any(key.startswith(SCRAPE_ANNOTATION_PREFIX) for key in annotations):
        # The app's own scrape annotations point at its SLO metrics: replacing them would make the
        # free-threaded pods' SLO series vanish and analysis stay Inconclusive. The probe is then
        # scraped through its named port (PodMonitor, or a port-name relabel rule).
        return
    annotations.update(
        {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }
    )


#: Holds the app's ``valueFrom`` PYTHONPATH in the twin, so that PYTHONPATH itself can name the
#: probe's mount first and the app's value after it through ``$(FTR_APP_PYTHONPATH)``.
APP_PYTHONPATH_VAR = "FTR_APP_PYTHONPATH"


def _probe_pythonpath(container: dict[str, Any]) -> list[dict[str, Any]]:
    """The container's env with the probe's mount first on PYTHONPATH and the app's path kept.

    - ``value``: the mount is prepended (``$(VAR)`` references in it expand as before).
    - ``valueFrom``: the source moves, unchanged and at the same place, to ``FTR_APP_PYTHONPATH``;
      PYTHONPATH becomes ``<mount>:$(FTR_APP_PYTHONPATH)`` (kubelet's dependent env expansion).
    - none in ``env`` but ``envFrom`` present: ``<mount>:$(PYTHONPATH)`` picks up a PYTHONPATH
      from the ConfigMap/Secret. Where there is none, kubelet leaves the reference as literal text;
      the probe's sitecustomize drops that entry from ``sys.path`` and from ``PYTHONPATH``.
    - an ``ENV PYTHONPATH`` of the image cannot be seen from here and is replaced, as any pod env
      replaces image ENV: declare it in the Deployment's env to keep it.
    The entry stays where it was, so later variables that reference ``$(PYTHONPATH)`` still do.
    """
    env = [
        e
        for e in container.get("env") or []
        if e.get("name") not in ("FTR_PROBE_PORT", APP_PYTHONPATH_VAR)
    ]
    # kubelet applies env entries in order, so with duplicates the last one is the app's value.
    at = max((i for i, e in enumerate(env) if e.get("name") == "PYTHONPATH"), default=None)
    if at is None:
        value = f"{PROBE_MOUNT}:$(PYTHONPATH)" if container.get("envFrom") else PROBE_MOUNT
        return [*env, {"name": "PYTHONPATH", "value": value}]
    entry = env[at]
    if "valueFrom" in entry:
        env[at : at + 1] = [
            {"name": APP_PYTHONPATH_VAR, "valueFrom": copy.deepcopy(entry["valueFrom"])},
            {"name": "PYTHONPATH", "value": f"{PROBE_MOUNT}:$({APP_PYTHONPATH_VAR})"},
        ]
        return env
    own = entry.get("value") or ""
    env[at] = {"name": "PYTHONPATH", "value": f"{PROBE_MOUNT}:{own}" if own else PROBE_MOUNT}
    return env


def owner_reference(rollout_name: str, rollout_uid: str) -> dict[str, Any]:
    """The twin's controller reference: garbage collection removes it with the rollout."""
    return {
        "apiVersion": f"{api.GROUP}/{api.VERSION}",
        "kind": api.KIND,
        "name": rollout_name,
        "uid": rollout_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
