"""What the planner reads and returns: observations in, a Result out (frozen values, no I/O)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ftrollout.model import api

ACTIONS = ("promote", "promote-full", "pause", "resume", "rollback", "retry")

EventType = Literal["Normal", "Warning"]

# The field manager of every write the operator makes; replicas set by another manager are
# someone else's scale (plan.replicas).
FIELD_MANAGER = "ftrollout"


@dataclass(frozen=True)
class Workload:
    """What the plan needs of a Deployment: desired and ready replicas."""

    replicas: int
    ready: int
    # Field manager that last set spec.replicas (from managedFields), when known.
    replicas_manager: str | None = None


@dataclass(frozen=True)
class PodGil:
    """GIL state of one free-threaded pod; enabled None = not known (yet)."""

    pod: str
    enabled: bool | None
    modules: tuple[str, ...] = ()
    build: bool | None = None  # False: the interpreter is not a free-threading build at all
    running: bool = True  # status.phase Running
    terminating: bool = False  # has a deletionTimestamp
    revision: str | None = None  # revision annotation of the pod; None: not known
    failure: str | None = None  # why it is not Ready (plan.observe.pod_failure); None: nothing

    def counts_for(self, revision: str | None) -> bool:
        """Whether the pod speaks for `revision`: a pod on its way out, not started yet, or
        made from an earlier template says nothing about the current one."""
        if not self.running or self.terminating:
            return False
        return self.revision is None or self.revision == revision


@dataclass(frozen=True)
class AnalysisRound:
    """One completed round of every metric, computed by the analysis loop."""

    time: str
    results: tuple[api.MetricResult, ...]
    # The round queried running standard pods (not only the standard value kept from an
    # earlier round): its compare results are a real comparison of both tracks.
    standard_measured: bool = False


@dataclass(frozen=True)
class Claim:
    """A rollout that targets a Deployment."""

    name: str
    created: str  # metadata.creationTimestamp (RFC 3339); "" when not known


@dataclass(frozen=True)
class Ownership:
    """Who else claims the target, and who controls the Deployment named like the twin."""

    rollout: str  # this rollout's name
    uid: str  # this rollout's uid
    claims: tuple[Claim, ...]  # every rollout known to target the same Deployment
    twin: str  # the twin's name
    # The twin's controller ownerReference ("Kind/name", uid); None: no controller reference.
    # Only looked at when the twin exists (Observation.twin).
    twin_controller: tuple[str, str] | None = None
    target: str = ""  # the target's name
    # The target's controller ownerReference and rollout label: a target that is itself a
    # rollout's twin is that rollout's free-threaded track, never a target.
    target_controller: tuple[str, str] | None = None
    target_rollout_label: str | None = None
    # The same for the Deployment named like the fresh baseline (plan.baseline); only looked
    # at when it exists (Observation.baseline).
    baseline_controller: tuple[str, str] | None = None


@dataclass(frozen=True)
class RouteObservation:
    """One HTTPRoute as read: its spec, or None when it does not exist."""

    name: str
    spec: dict[str, Any] | None


@dataclass(frozen=True)
class Observation:
    now: datetime
    generation: int
    revision: str | None  # None when the target is missing
    target: Workload | None
    twin: Workload | None
    pods: tuple[PodGil, ...] = ()
    incidents: tuple[api.Incident, ...] = ()
    # (pod, python_freethreading_incidents_total) of free-threaded pods: counted against the
    # baseline in status.races.probeCounters, never as incidents themselves.
    probe_counts: tuple[tuple[str, float], ...] = ()
    analysis: AnalysisRound | None = None
    action: str | None = None  # the freethreaded.dev/action value: `verb` or `verb@<id>`
    action_written_at: str | None = None  # managedFields time of the annotation, if known
    # The annotation still shows a request this operator is removing (the body is the one it
    # was read from): hidden from `action`, and not gone either (lastAction stays).
    action_consuming: bool = False
    preflight: api.PreflightStatus | None = None
    spec_error: api.SpecError | None = None
    ownership: Ownership | None = None  # None: not checked (the planner's own tests)
    # Why the stored status could not be read (it was reset); None when it was read.
    status_error: str | None = None
    # The twin carries this rollout's label: it is this rollout's free-threaded track.
    twin_owned: bool = True
    # N as recorded on the twin (annotation), for a first sight; None: not recorded.
    twin_service_replicas: int | None = None
    # The target's spec.selector as a label-selector string (status.selector, the scale
    # subresource's); None: not known.
    target_selector: str | None = None
    # HTTPRoutes named by spec.trafficRouting or status.trafficRouting, as read (spec None:
    # not found); routing_error: what the shell found wrong (the stable Service...).
    routes: tuple[RouteObservation, ...] = ()
    routing_error: str | None = None
    # (Service, rollout): the free-threaded Services of the other rollouts in this namespace,
    # to refuse a rule one of them splits already.
    other_ft_services: tuple[tuple[str, str], ...] = ()
    # The Deployment named like the fresh baseline, when there is one (whoever owns it).
    baseline: Workload | None = None
    # Values the operator itself wrote to the target's spec.replicas lately (shell.state): one
    # of them set again by another manager is a stale copy re-applied, not a scale.
    own_target_writes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str
    # The freethreaded.dev/action request this Event answers (applied or ignored), if any:
    # `kubectl ftr <action> --wait` tells its own request's outcome from another's by it.
    action: str | None = None


@dataclass(frozen=True)
class Result:
    status: api.RolloutStatus
    target_replicas: int | None  # None: leave the target alone
    twin_replicas: int | None  # None: leave the twin alone (or do not create it)
    events: tuple[Event, ...] = ()
    clear_action: bool = False
    set_paused: bool | None = None  # pause/resume actions flip spec.paused
    requeue_after: float | None = None  # seconds until the plan wants to look again
    run_preflight: bool = False
    # Take over the twin an earlier rollout of this name left (plan.ownership.adoptable).
    adopt_twin: bool = False
    # HTTPRoute specs to write (name, spec), after the status that records them.
    route_writes: tuple[tuple[str, dict[str, Any]], ...] = ()
    # The fresh baseline's replicas (plan.baseline): 0 removes it; None: leave it alone.
    baseline_replicas: int | None = None


@functools.lru_cache(maxsize=64)  # one plan formats its clock several times
def rfc3339(t: datetime) -> str:
    """RFC 3339 in UTC, with microseconds when there are any: a round that started 0.3 s
    before its step was reached must compare as earlier, not as the same second. Compare
    these strings only through `parse_time` ("...:10Z" sorts after "...:10.5Z")."""
    u = t.astimezone(UTC)
    if u.microsecond:
        return u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return u.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
