"""In-memory view of the cluster, fed by watch events, read by reconciles and the analysis loop.

Only small summaries are kept (a hash instead of each pod template, a few fields per pod), so
the marginal memory of a rollout stays in kilobytes. Everything here is synchronous and
I/O-free; the handlers feed it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ftrollout import api
from ftrollout.workloads import ANNOTATION_REVISION, LABEL_ROLLOUT, LABEL_TRACK

RACE_EXIT_CODES = (139, 134)  # SIGSEGV, SIGABRT: what data races in C extensions end in

Key = tuple[str, str]  # (namespace, name)
MAX_TERMINATIONS = 200  # per deployment: more than any race budget worth having
MAX_DELETED = 1024  # deleted Deployment uids remembered (far more than writes in flight)


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
    )


def resource_version(meta: Mapping[str, Any]) -> int:
    """metadata.resourceVersion as a number, 0 when absent or not a number."""
    rv = str(meta.get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else 0


def _replicas_manager(managed: list[Mapping[str, Any]]) -> str | None:
    """Who last set spec.replicas: the newest managedFields entry that owns it."""
    owners = [
        (str(m.get("time") or ""), str(m.get("manager") or ""))
        for m in managed
        if "f:replicas" in ((m.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    return max(owners)[1] if owners else None


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
    )


@dataclass
class Cache:
    deployments: dict[Key, DeploymentSummary] = field(default_factory=dict)
    # pods grouped by (namespace, owning deployment) so a track's pods are one lookup
    pods: dict[Key, dict[str, PodSummary]] = field(default_factory=dict)
    # (namespace, target deployment) -> rollout names, to route deployment/pod events
    targets: dict[Key, set[str]] = field(default_factory=dict)
    rollout_targets: dict[Key, str] = field(default_factory=dict)
    # Crash terminations seen per (namespace, deployment), kept after the pod changes or goes:
    # a watch event may show a termination that the next event (or kwok) already overwrote.
    terminations: dict[Key, dict[tuple[str, str], Termination]] = field(default_factory=dict)
    # What the operator itself wrote (a created twin, a scale), until the watch shows it: the
    # response of a write may come back after the watch already brought a newer version (the
    # twin's pods Ready), and must not hide it.
    written: dict[Key, DeploymentSummary] = field(default_factory=dict)
    # uids of recently deleted Deployments: a write's response handled after the watch showed
    # the deletion must not bring the Deployment back (bounded: only in-flight writes need it).
    deleted: dict[str, None] = field(default_factory=dict)

    # --- rollouts
    def set_rollout_target(self, namespace: str, rollout: str, target: str | None) -> None:
        key = (namespace, rollout)
        old = self.rollout_targets.pop(key, None)
        if old is not None:
            names = self.targets.get((namespace, old))
            if names is not None:
                names.discard(rollout)
                if not names:
                    del self.targets[(namespace, old)]
        if target is not None:
            self.rollout_targets[key] = target
            self.targets.setdefault((namespace, target), set()).add(rollout)

    def rollouts_for_deployment(self, d: DeploymentSummary) -> set[str]:
        out = set(self.targets.get((d.namespace, d.name), set()))
        if d.rollout_label:
            out.add(d.rollout_label)
        return out

    def rollouts_for_pod(self, p: PodSummary) -> set[str]:
        out: set[str] = set()
        if p.rollout:
            out.add(p.rollout)
        if p.deployment:
            out |= self.targets.get((p.namespace, p.deployment), set())
        return out

    # --- deployments
    def put_deployment(self, body: Mapping[str, Any]) -> DeploymentSummary:
        """A Deployment as the watch (or a GET) shows it; never replaces a newer one."""
        d = summarize_deployment(body)
        key = (d.namespace, d.name)
        known = self.deployments.get(key)
        if known is not None and _older(d, known):
            return known
        self.deployments[key] = d
        mine = self.written.get(key)
        if mine is not None and not _older(d, mine):
            del self.written[key]  # the watch caught up with our write (or cannot tell: trust it)
        return d

    def wrote_deployment(self, d: DeploymentSummary) -> None:
        """The operator created or scaled `d`; read as such until the watch catches up."""
        key = (d.namespace, d.name)
        known = self.deployments.get(key)
        if known is not None and 0 < d.resource_version <= known.resource_version:
            return  # the watch already brought this version or a newer one
        if d.uid and d.uid in self.deleted:
            return  # and already its deletion
        self.written[key] = d

    def deployment(self, namespace: str, name: str) -> DeploymentSummary | None:
        """The watch's view with the operator's own newer replicas on top; readiness always
        comes from the watch when it has the object."""
        key = (namespace, name)
        seen = self.deployments.get(key)
        mine = self.written.get(key)
        if mine is None:
            return seen
        if seen is None or seen.uid != mine.uid:
            return mine
        return replace(seen, replicas=mine.replicas, replicas_manager=mine.replicas_manager)

    def drop_deployment(self, namespace: str, name: str, uid: str = "") -> None:
        self.deployments.pop((namespace, name), None)
        self.written.pop((namespace, name), None)
        if uid:
            self.deleted[uid] = None
            if len(self.deleted) > MAX_DELETED:
                del self.deleted[next(iter(self.deleted))]

    # --- pods
    def put_pod(self, body: Mapping[str, Any]) -> PodSummary:
        p = summarize_pod(body)
        if p.deployment is not None:
            self.pods.setdefault((p.namespace, p.deployment), {})[p.name] = p
            if p.terminations:
                seen = self.terminations.setdefault((p.namespace, p.deployment), {})
                for t in p.terminations:
                    seen[(p.name, t.finished_at)] = t
                if len(seen) > MAX_TERMINATIONS:
                    for k in sorted(seen, key=lambda k: k[1])[: len(seen) - MAX_TERMINATIONS]:
                        del seen[k]
        return p

    def terminations_of(self, namespace: str, deployment: str) -> list[tuple[str, Termination]]:
        return [
            (pod, t) for (pod, _), t in self.terminations.get((namespace, deployment), {}).items()
        ]

    def drop_pod(self, body: Mapping[str, Any]) -> PodSummary:
        p = summarize_pod(body)
        if p.deployment is not None:
            group = self.pods.get((p.namespace, p.deployment))
            if group is not None:
                group.pop(p.name, None)
                if not group:
                    del self.pods[(p.namespace, p.deployment)]
        return p

    def pods_of(self, namespace: str, deployment: str) -> Iterable[PodSummary]:
        return self.pods.get((namespace, deployment), {}).values()


def _older(a: DeploymentSummary, b: DeploymentSummary) -> bool:
    """`a` is known to be an older version than `b` (both resourceVersions known)."""
    return 0 < a.resource_version < b.resource_version
