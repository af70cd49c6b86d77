"""Kubernetes objects summarised into what the planner and the cache need (pure, no I/O).

A Deployment or pod body is reduced to a few fields (a hash instead of the pod template), so the
marginal memory of a rollout stays in kilobytes; the kubectl plugin reads pods the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ftrollout.model import api
from ftrollout.plan.twin import (
    ANNOTATION_REVISION,
    ANNOTATION_SERVICE_REPLICAS,
    LABEL_ROLLOUT,
    LABEL_TRACK,
)
from ftrollout.plan.types import FIELD_MANAGER

RACE_EXIT_CODES = (139, 134)  # SIGSEGV, SIGABRT: what data races in C extensions end in
# A pod's failure is quoted in status and events: a termination message may be a whole log tail.
MAX_FAILURE_PART = 160
MAX_FAILURE = 400

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class DeploymentSummary:
    name: str
    namespace: str
    uid: str
    replicas: int
    ready: int
    template_hash: str
    revision_annotation: str | None
    selector: str  # canonical JSON of spec.selector (a change means the twin must be rebuilt)
    rollout_label: str | None
    deleting: bool
    replicas_manager: str | None = None
    resource_version: int = 0  # 0: unknown (etcd revisions; comparable since Kubernetes 1.35)
    # The controller ownerReference ("Kind/name", uid); None: no controller at all.
    controller: tuple[str, str] | None = None
    service_replicas: int | None = None  # the twin's N annotation, when readable
    label_selector: str = ""  # spec.selector as a label-selector string (`label_selector`)


@dataclass(frozen=True)
class Termination:
    container: str
    exit_code: int
    finished_at: str


@dataclass(frozen=True)
class PodSummary:
    name: str
    namespace: str
    deployment: str | None  # from the owning ReplicaSet's name
    track: str | None
    rollout: str | None
    ready: bool
    terminations: tuple[Termination, ...]
    running: bool = False  # status.phase Running
    terminating: bool = False  # a deletionTimestamp: on its way out, whatever its phase says
    revision: str | None = None  # the twin template's revision annotation the pod was made from
    failure: str | None = None  # why it is not Ready, in the kubelet's words (`pod_failure`)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def template_hash(template: Mapping[str, Any]) -> str:
    t = json.loads(_canonical(template))
    annotations = (t.get("metadata") or {}).get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/restartedAt", None)
    return hashlib.sha256(_canonical(t).encode()).hexdigest()[:16]


def revision_of(template_hash_: str, free_threaded: api.FreeThreadedSpec) -> str:
    payload = template_hash_ + _canonical(api.dump(free_threaded))
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def summarize_deployment(body: Mapping[str, Any]) -> DeploymentSummary:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    labels = meta.get("labels") or {}
    return DeploymentSummary(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        uid=meta.get("uid", ""),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        template_hash=template_hash(spec.get("template") or {}),
        revision_annotation=(meta.get("annotations") or {}).get(ANNOTATION_REVISION),
        selector=_canonical(spec.get("selector") or {}),
        rollout_label=labels.get(LABEL_ROLLOUT),
        deleting=meta.get("deletionTimestamp") is not None,
        replicas_manager=_replicas_manager(meta.get("managedFields") or []),
        resource_version=resource_version(meta),
        controller=controller_of(meta),
        service_replicas=_count((meta.get("annotations") or {}).get(ANNOTATION_SERVICE_REPLICAS)),
        label_selector=label_selector(spec.get("selector") or {}),
    )


def _count(text: Any) -> int | None:
    """A non-negative count written by the operator; anything else (a hand edit) is unknown."""
    try:
        value = int(str(text))
    except ValueError:
        return None
    return value if value >= 0 else None


def label_selector(selector: Mapping[str, Any]) -> str:
    """A LabelSelector as the string `kubectl get -l` and an HPA's scale status take.

    The twin's pods carry the target's template labels plus the track label, so the target's
    selector matches the pods of both tracks.
    """
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def controller_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """("Kind/name", uid) of the ownerReference with controller: true, if any."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return f"{ref.get('kind', '')}/{ref.get('name', '')}", str(ref.get("uid") or "")
    return None


def resource_version(meta: Mapping[str, Any]) -> int:
    """metadata.resourceVersion as a number, 0 when absent or not a number."""
    rv = str(meta.get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else 0


def _replicas_manager(managed: list[Mapping[str, Any]]) -> str | None:
    """Who last set spec.replicas: the operator while it still owns the field, else the newest
    managedFields entry that owns it.

    The apiserver lets managers co-own a field only while they agree on its value: anyone who
    changes it takes it from the operator. So a GitOps tool re-applying the live value (Argo CD's
    `RespectIgnoreDifferences`) leaves the operator a co-owner of its own value, which is not a
    scale. The newest entry cannot say so: an update through the scale subresource, as the
    operator's, carries no time, so any timed Apply entry looks newer.
    """
    owners = [
        (str(m.get("time") or ""), str(m.get("manager") or ""))
        for m in managed
        if "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    if any(manager == FIELD_MANAGER for _, manager in owners):
        return FIELD_MANAGER
    return max(owners)[1] if owners else None


def annotation_written_at(meta: Mapping[str, Any], key: str) -> str | None:
    """When annotation `key` was last written: the newest managedFields entry that owns it."""
    times = [
        str(m.get("time") or "")
        for m in meta.get("managedFields") or []
        if f"f:{key}"
        in (((m.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {})
    ]
    return max(times) or None if times else None


def slim_managed_fields(
    managed: Sequence[Mapping[str, Any]], annotations: Collection[str]
) -> list[dict[str, Any]]:
    """A rollout's managedFields reduced to what the operator reads of them: the entries that own
    one of `annotations` (annotation_written_at), with only those annotations in their fields.

    kopf keeps the last body of every rollout for its daemon; the full managedFields were more
    than half of it (18 of 32 KB in Python objects per rollout, issue 22)."""
    out = []
    for m in managed:
        if not isinstance(m, Mapping):
            continue
        owned = ((m.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
        kept: dict[str, Any] = {f"f:{a}": {} for a in annotations if f"f:{a}" in owned}
        if kept:
            entry = {k: m[k] for k in ("manager", "operation", "subresource", "time") if k in m}
            entry["fieldsV1"] = {"f:metadata": {"f:annotations": kept}}
            out.append(entry)
    return out


def _owner_deployment(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet":
            name = str(ref.get("name", ""))
            labels = meta.get("labels") or {}
            pth = labels.get("pod-template-hash")
            if pth and name.endswith("-" + pth):
                return name[: -len(pth) - 1]
            return name.rsplit("-", 1)[0]
    return None


def summarize_pod(body: Mapping[str, Any]) -> PodSummary:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    labels = meta.get("labels") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    terms: list[Termination] = []
    for cs in status.get("containerStatuses") or []:
        for state_key in ("state", "lastState"):
            term = (cs.get(state_key) or {}).get("terminated")
            if term and term.get("exitCode") in RACE_EXIT_CODES:
                terms.append(
                    Termination(
                        container=str(cs.get("name", "")),
                        exit_code=int(term["exitCode"]),
                        finished_at=str(term.get("finishedAt") or term.get("startedAt") or ""),
                    )
                )
    return PodSummary(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        deployment=_owner_deployment(meta),
        track=labels.get(LABEL_TRACK),
        rollout=labels.get(LABEL_ROLLOUT),
        ready=ready,
        terminations=tuple(dict.fromkeys(terms)),
        running=status.get("phase") == "Running",
        terminating=meta.get("deletionTimestamp") is not None,
        revision=(meta.get("annotations") or {}).get(ANNOTATION_REVISION),
        failure=pod_failure(status),
    )


def _clip(text: Any) -> str:
    """One line of a kubelet message: a termination message is often a traceback (the
    `FallbackToLogsOnError` log tail) whose last line names the error."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= MAX_FAILURE_PART else last[: MAX_FAILURE_PART - 3] + "..."


def _reason(reason: Any, message: Any) -> str:
    message = _clip(message)
    return f"{reason}: {message}" if message else str(reason)


def pod_failure(status: Mapping[str, Any]) -> str | None:
    """Why a pod is not Ready, quoted from its status: the first container that is not Ready
    with its waiting reason (CrashLoopBackOff, ImagePullBackOff...) and its last termination
    (reason, exit code, message: `ModuleNotFoundError: No module named '_foo'`); an
    unscheduled pod's scheduler message. None when nothing is wrong or nothing is said."""
    groups = (
        ("init container", status.get("initContainerStatuses") or []),
        ("container", status.get("containerStatuses") or []),
    )
    for kind, statuses in groups:
        for cs in statuses:
            if cs.get("ready"):
                continue
            state = cs.get("state") or {}
            waiting = state.get("waiting")
            term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
            parts = []
            if waiting and waiting.get("reason"):
                parts.append(_reason(waiting["reason"], waiting.get("message")))
            if term:
                what = f"{term.get('reason') or 'Terminated'} (exit code {term.get('exitCode')})"
                parts.append("last termination: " + _reason(what, term.get("message")))
            if parts:
                text = f"{kind} {cs.get('name', '')}: " + "; ".join(parts)
                return text if len(text) <= MAX_FAILURE else text[: MAX_FAILURE - 3] + "..."
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return _reason(c.get("reason") or "NotScheduled", c.get("message"))[:MAX_FAILURE]
    return None
