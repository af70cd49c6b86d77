"""What the shell's parts share in one operator process: the cache, pending writes, readings.

A lower module than the handlers, the scheduler and the log scanner, so they can all use it
without importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ftrollout.model import api
from ftrollout.plan import AnalysisRound
from ftrollout.plan.observe import Key
from ftrollout.shell import status_writes
from ftrollout.shell.cache import Cache
from ftrollout.shell.memo import Memo
from ftrollout.shell.prometheus_config import PrometheusConfig
from ftrollout.shell.spec_cache import ParsedSpec
from ftrollout.shell.versioned import VersionedDict, VersionedSet

# Reconciles running at once (a semaphore): at 200 client QPS more would only queue, holding
# their memory, for the rate limiter.
RECONCILES_AT_ONCE = 32

# How long a value the operator wrote to a target is remembered as its own (State.target_writes):
# longer than a GitOps tool takes from reading the live object to applying it.
OWN_WRITES_SECONDS = 120.0


@dataclass
class GilReading:
    enabled: bool | None
    modules: tuple[str, ...] = ()
    build: bool | None = None
    source: str = "probe"  # "probe" (metrics, best) or "log" (the CPython warning)


@dataclass
class State:
    """Everything the handlers share; one per operator process."""

    cache: Cache = field(default_factory=Cache)
    kube: Any = None  # ftrollout.shell.kube.Kube, created at startup (tests may inject a fake)
    pokes: dict[Key, asyncio.Event] = field(default_factory=dict)
    pending_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # The statuses the API may still show while pending_status is on its way (the one it was
    # written over, earlier writes of ours in flight): any other status was written by someone
    # else (another replica during a peering handover) and is newer than our memory.
    pending_bases: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)
    # A newer status than the one in the API whose only news are analysis numbers: the planner
    # reads it from here; it is written with the next material change or after status_refresh.
    deferred_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # The status deferred_status was planned from: once the API (or our own pending write)
    # shows another, the deferred copy is stale and dropped.
    deferred_base: dict[Key, dict[str, Any]] = field(default_factory=dict)
    written_at: dict[Key, float] = field(default_factory=dict)  # monotonic time of the write
    status_refresh: float = status_writes.DEFAULT_REFRESH_SECONDS
    # (generation, deletionTimestamp, action annotation) of the latest watch event per rollout
    last_trigger: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    # resourceVersion at which an action annotation was consumed: until the watch brings a
    # newer version, the live body still shows it and it must not be acted on twice.
    consumed_action: dict[Key, str] = field(default_factory=dict)
    analysis: dict[Key, AnalysisRound] = field(default_factory=dict)
    # (namespace, pod); versioned like `active` and `containers`: the log scanner keeps its
    # list of pods to read while none of them changed (shell.versioned)
    gil: VersionedDict[Key, GilReading] = field(default_factory=VersionedDict)
    preflight: dict[Key, api.PreflightStatus] = field(default_factory=dict)
    # (ns, pod) -> highest python_freethreading_incidents_total seen by this process; the
    # planner counts it against the baseline kept in status (survives a restart).
    probe_counts: dict[Key, float] = field(default_factory=dict)
    probe_configmaps: set[str] = field(default_factory=set)  # namespaces with it up to date
    active: VersionedSet[Key] = field(default_factory=VersionedSet)  # Progressing/Paused/Pending
    # spec.freeThreaded.container of each active rollout
    containers: VersionedDict[Key, str | None] = field(default_factory=VersionedDict)
    scheduler: Any = None  # ftrollout.shell.scheduler.Scheduler, when analysis runs
    default_prometheus: str | None = None  # normalised --prometheus-url
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    # (monotonic time, value) of the operator's own writes of each target's spec.replicas, for
    # the last OWN_WRITES_SECONDS: a re-applier that copies the live value may apply one of them
    # after the operator has moved on (a stale copy), which is not a scale (plan.replicas).
    target_writes: dict[Key, list[tuple[float, int]]] = field(default_factory=dict)
    # The last refused write of each rollout's baseline, so its Warning is said once per error.
    baseline_errors: dict[Key, str] = field(default_factory=dict)
    reconciles: int = 0
    # The last plan that wrote nothing, per rollout: a reconcile of the same world skips the
    # plan (shell.memo); `skipped` counts those.
    memos: dict[Key, Memo] = field(default_factory=dict)
    specs: dict[Key, ParsedSpec] = field(default_factory=dict)  # the last parse of each spec
    skipped: int = 0
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)
    _slots_loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    on_result: list[Any] = field(default_factory=list)  # hooks (metrics) called per result

    def reconcile_slots(self) -> asyncio.Semaphore:
        """The semaphore of the running event loop (tests run many loops in one process)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(RECONCILES_AT_ONCE), loop
        return self._slots

    def wrote_target(self, key: Key, value: int, now: float) -> None:
        kept = [w for w in self.target_writes.get(key, []) if now - w[0] < OWN_WRITES_SECONDS]
        self.target_writes[key] = [*kept, (now, value)]

    def own_target_writes(self, key: Key, now: float) -> tuple[int, ...]:
        writes = self.target_writes.get(key, [])
        return tuple(v for t, v in writes if now - t < OWN_WRITES_SECONDS)

    def poke(self, namespace: str, names: set[str] | str) -> None:
        for name in {names} if isinstance(names, str) else names:
            ev = self.pokes.get((namespace, name))
            if ev is not None:
                ev.set()

    def forget_pending(self, key: Key) -> None:
        self.pending_status.pop(key, None)
        self.pending_bases.pop(key, None)

    def forget_deferred(self, key: Key) -> None:
        self.deferred_status.pop(key, None)
        self.deferred_base.pop(key, None)

    def forget_rollout(self, key: Key) -> None:
        """Everything kept for a rollout that is gone (its watch event DELETED): a rollout
        created again under the same name starts afresh (no preflight result, consumed action
        or remembered plan of the old one), and churn leaves nothing behind. Its daemon's poke
        event is the daemon's own (it removes it when it stops)."""
        self.forget_pending(key)
        self.forget_deferred(key)
        for kept in (
            self.written_at,
            self.last_trigger,
            self.consumed_action,
            self.analysis,
            self.preflight,
            self.containers,
            self.target_writes,
            self.baseline_errors,
            self.memos,
            self.specs,
        ):
            kept.pop(key, None)
        self.active.discard(key)


async def wait_set(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. asyncio.timeout, not wait_for: no task of its own
    per wait (a rollout's daemon waits after every reconcile, 33 times a second at 1000
    analysed rollouts)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


@functools.lru_cache(maxsize=8192)  # every daemon's wait asks for it
def spread(key: Key) -> float:
    """A stable fraction in [0, 1] for a rollout: the timers of rollouts created together
    (their looks, their analysis rounds) are spread by it instead of all falling together."""
    digest = hashlib.sha256(f"{key[0]}/{key[1]}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF
