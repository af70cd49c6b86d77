"""In-memory view of the cluster, fed by watch events, read by reconciles and the analysis loop.

Only small summaries are kept (`plan.observe`), so the marginal memory of a rollout stays in
kilobytes. Everything here is synchronous and I/O-free; the handlers feed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ftrollout.plan.baseline import BASELINE_SUFFIX
from ftrollout.plan.observe import (
    DeploymentSummary,
    Key,
    PodSummary,
    Termination,
    summarize_deployment,
    summarize_pod,
)
from ftrollout.plan.twin import TWIN_SUFFIX
from ftrollout.plan.types import Claim, rfc3339
from ftrollout.shell.versioned import VersionedDict

MAX_TERMINATIONS = 200  # per deployment: more than any race budget worth having
MAX_DELETED = 1024  # deleted Deployment uids remembered (far more than writes in flight)


@dataclass
class Cache:
    deployments: dict[Key, DeploymentSummary] = field(default_factory=dict)
    # pods grouped by (namespace, owning deployment) so a track's pods are one lookup
    pods: dict[Key, dict[str, PodSummary]] = field(default_factory=dict)
    # (namespace, target deployment) -> rollout names, to route deployment/pod events
    targets: dict[Key, set[str]] = field(default_factory=dict)
    rollout_targets: VersionedDict[Key, str] = field(default_factory=VersionedDict)
    rollout_created: dict[Key, str] = field(default_factory=dict)  # creationTimestamp
    # metadata.uid of the object last seen under each rollout name: kopf handles each object in
    # its own worker, so a deleted rollout's DELETED may come after its successor's ADDED.
    rollout_uids: dict[Key, str] = field(default_factory=dict)
    # (namespace, rollout) -> the HTTPRoutes it names or still has edits in, to route their events
    rollout_routes: dict[Key, frozenset[str]] = field(default_factory=dict)
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
    # (namespace, pod) of every cached pod, built again only when a pod comes or goes: the
    # guardrail round filters every answer by it (rebuilt each round, a fifth of idle CPU at
    # 1000 rollouts). The same object until then, so `is` tells whether it changed.
    _pod_keys: frozenset[Key] | None = field(default=None, init=False, repr=False)

    # --- rollouts
    def set_rollout_target(
        self, namespace: str, rollout: str, target: str | None, created: str = ""
    ) -> None:
        key = (namespace, rollout)
        if target is None:
            self.rollout_created.pop(key, None)
        else:
            self.rollout_created[key] = created
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

    def set_rollout_routes(self, namespace: str, rollout: str, routes: Iterable[str]) -> None:
        names = frozenset(routes)
        if names:
            self.rollout_routes[(namespace, rollout)] = names
        else:
            self.rollout_routes.pop((namespace, rollout), None)

    def rollouts_for_route(self, namespace: str, route: str) -> set[str]:
        return {
            rollout
            for (ns, rollout), names in self.rollout_routes.items()
            if ns == namespace and route in names
        }

    def claims(self, namespace: str, target: str) -> tuple[Claim, ...]:
        """Every rollout the watch has shown targeting `target`, with its creation time."""
        return tuple(
            Claim(name, self.rollout_created.get((namespace, name), ""))
            for name in sorted(self.targets.get((namespace, target), ()))
        )

    def rollouts_for_deployment(self, d: DeploymentSummary) -> set[str]:
        out = set(self.targets.get((d.namespace, d.name), set()))
        # A Deployment under a name the rollout needs (its twin, its baseline), whoever owns
        # it: one that is not the rollout's holds it (TwinNotOwned, BaselineNotOwned) until it
        # is renamed or deleted, which must wake the rollout.
        for suffix in (TWIN_SUFFIX, BASELINE_SUFFIX):
            if d.name.endswith(suffix):
                out |= self.targets.get((d.namespace, d.name[: -len(suffix)]), set())
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
            group = self.pods.setdefault((p.namespace, p.deployment), {})
            if p.name not in group:
                self._pod_keys = None
            group[p.name] = p
            if p.terminations:
                seen = self.terminations.setdefault((p.namespace, p.deployment), {})
                for t in p.terminations:
                    if not t.finished_at:
                        # finishedAt is optional: the time first seen keeps one identity.
                        if (p.name, "") not in seen:
                            seen[(p.name, "")] = replace(t, finished_at=rfc3339(datetime.now(UTC)))
                        continue
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
            if group is not None and group.pop(p.name, None) is not None:
                self._pod_keys = None
                if not group:
                    del self.pods[(p.namespace, p.deployment)]
        return p

    def pod_keys(self) -> frozenset[Key]:
        if self._pod_keys is None:
            self._pod_keys = frozenset(
                (ns, name) for (ns, _), group in self.pods.items() for name in group
            )
        return self._pod_keys

    def pods_of(self, namespace: str, deployment: str) -> Iterable[PodSummary]:
        return self.pods.get((namespace, deployment), {}).values()


def _older(a: DeploymentSummary, b: DeploymentSummary) -> bool:
    """`a` is known to be an older version than `b` (both resourceVersions known)."""
    return 0 < a.resource_version < b.resource_version
