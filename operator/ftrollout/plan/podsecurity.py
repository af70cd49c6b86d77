"""Pod Security for the pods the operator builds itself: the preflight Job (pure).

The twin copies the target's pod template, so it is admitted wherever the target is. The
preflight Job is the operator's own pod: it must pass the "restricted" Pod Security Standard
(pod-security.kubernetes.io/enforce=restricted) whatever the target says, and still run as the
service's user where the target names one, so that it reads the image as the service does.
"""

from __future__ import annotations

from typing import Any

from ftrollout.model import api

# The distroless "nonroot" uid: any non-root uid can import modules and write the termination log.
DEFAULT_UID = 65532
_POD_IDENTITY = ("runAsUser", "runAsGroup", "fsGroup", "supplementalGroups", "seLinuxOptions")
_CONTAINER_IDENTITY = ("runAsUser", "runAsGroup", "seLinuxOptions")


def _container(target_pod_spec: dict[str, Any], name: str | None) -> dict[str, Any]:
    containers = target_pod_spec.get("containers") or [{}]
    found = next((c for c in containers if c.get("name") == name), None) if name else None
    chosen: dict[str, Any] = found or containers[0]
    return chosen


def preflight_security(
    target_pod_spec: dict[str, Any], container: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod securityContext, container securityContext) of the preflight Job."""
    target_pod = target_pod_spec.get("securityContext") or {}
    target_c = _container(target_pod_spec, container).get("securityContext") or {}
    pod = {k: target_pod[k] for k in _POD_IDENTITY if k in target_pod}
    pod["runAsNonRoot"] = True
    pod["seccompProfile"] = {"type": "RuntimeDefault"}
    c: dict[str, Any] = {k: target_c[k] for k in _CONTAINER_IDENTITY if k in target_c}
    # The service's uid unless it is root (or unnamed): restricted forbids root, and the
    # image's USER may be a name, which runAsNonRoot cannot check.
    uid = c.get("runAsUser", pod.pop("runAsUser", None)) or DEFAULT_UID
    gid = c.get("runAsGroup", pod.pop("runAsGroup", None))
    if gid is not None:
        c["runAsGroup"] = gid
    c.update(
        runAsUser=uid,
        runAsNonRoot=True,
        allowPrivilegeEscalation=False,
        capabilities={"drop": ["ALL"]},
        seccompProfile={"type": "RuntimeDefault"},
    )
    return pod, c


def preflight_resources(gate: api.DependencyGate) -> dict[str, Any]:
    """The container's resources: the gate's, cpu and memory only where set."""
    out: dict[str, Any] = {}
    for key, amounts in (("requests", gate.resources.requests), ("limits", gate.resources.limits)):
        if amounts is None:
            continue
        values = {k: v for k, v in (("cpu", amounts.cpu), ("memory", amounts.memory)) if v}
        if values:
            out[key] = values
    return out
