"""Thin kopf wiring: watch events feed the cache, one daemon per rollout runs reconcile.

reconcile = observe (cache, a GET only on a cache miss) -> plan (pure) -> act (patches). A
reconcile whose plan equals what is already there writes nothing. Watch events of related
Deployments and Pods "poke" the rollout's daemon, so a crash is acted on within one event
round-trip instead of a polling interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from ftrollout import api, status_writes, workloads
from ftrollout.gate import PROBE_CONFIGMAP, from_job, job_manifest, job_name
from ftrollout.observe import Cache, DeploymentSummary, Key, revision_of, summarize_deployment
from ftrollout.plan import (
    FIELD_MANAGER,
    AnalysisRound,
    Observation,
    PodGil,
    Result,
    Workload,
    plan,
)

log = logging.getLogger("ftrollout")
Logger = logging.Logger | logging.LoggerAdapter[Any]

RESYNC_SECONDS = 60.0  # a periodic look even without events (clock-driven pauses, lost events)
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


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
    kube: Any = None  # ftrollout.kube.Kube, created at startup (tests may inject a fake)
    pokes: dict[Key, asyncio.Event] = field(default_factory=dict)
    pending_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # A newer status than the one in the API whose only news are analysis numbers: the planner
    # reads it from here; it is written with the next material change or after status_refresh.
    deferred_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    written_at: dict[Key, float] = field(default_factory=dict)  # monotonic time of the write
    status_refresh: float = status_writes.DEFAULT_REFRESH_SECONDS
    # (generation, deletionTimestamp, action annotation) of the latest watch event per rollout
    last_trigger: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    # resourceVersion at which an action annotation was consumed: until the watch brings a
    # newer version, the live body still shows it and it must not be acted on twice.
    consumed_action: dict[Key, str] = field(default_factory=dict)
    analysis: dict[Key, AnalysisRound] = field(default_factory=dict)
    gil: dict[Key, GilReading] = field(default_factory=dict)  # (namespace, pod)
    preflight: dict[Key, api.PreflightStatus] = field(default_factory=dict)
    probe_incidents: dict[Key, list[str]] = field(default_factory=dict)  # (ns, pod) -> times
    probe_configmaps: set[str] = field(default_factory=set)  # namespaces with it up to date
    active: set[Key] = field(default_factory=set)  # rollouts in Progressing/Paused/Pending
    containers: dict[Key, str | None] = field(default_factory=dict)  # spec.freeThreaded.container
    scheduler: Any = None  # ftrollout.prometheus.Scheduler, when analysis runs
    default_prometheus: str | None = None
    reconciles: int = 0
    on_result: list[Any] = field(default_factory=list)  # hooks (metrics) called per result

    def poke(self, namespace: str, names: set[str] | str) -> None:
        for name in {names} if isinstance(names, str) else names:
            ev = self.pokes.get((namespace, name))
            if ev is not None:
                ev.set()


STATE = State()


# ------------------------------------------------------------------------ watches


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def rollout_event(
    *, event: kopf.RawEvent, name: str, namespace: str | None, spec: kopf.Spec, **_: Any
) -> None:
    namespace = namespace or ""
    if event.get("type") == "DELETED":
        STATE.cache.set_rollout_target(namespace, name, None)
        STATE.pending_status.pop((namespace, name), None)
        STATE.deferred_status.pop((namespace, name), None)
        STATE.written_at.pop((namespace, name), None)
        STATE.last_trigger.pop((namespace, name), None)
        STATE.analysis.pop((namespace, name), None)
        if STATE.scheduler is not None:
            STATE.scheduler.unregister((namespace, name))
        return
    target = (spec.get("targetRef") or {}).get("name")
    STATE.cache.set_rollout_target(namespace, name, target if isinstance(target, str) else None)
    if not _own_status_echo(STATE, (namespace, name), event.get("object") or {}):
        STATE.poke(namespace, name)


def _own_status_echo(state: State, key: Key, body: Any) -> bool:
    """True for the watch event of the operator's own status write, nothing else changed: its
    reconcile would only find that status there and write nothing (half of all reconciles at
    steady state, one per analysis round)."""
    meta = body.get("metadata") or {}
    trigger = (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        (meta.get("annotations") or {}).get(workloads.ANNOTATION_ACTION),
    )
    previous = state.last_trigger.get(key)
    state.last_trigger[key] = trigger
    pending = state.pending_status.get(key)
    return previous == trigger and pending is not None and pending == body.get("status")


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata") or {}
    if event.get("type") == "DELETED":
        STATE.cache.drop_deployment(
            meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")
        )
        d = DeploymentSummary(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            uid="",
            replicas=0,
            ready=0,
            template_hash="",
            revision_annotation=None,
            selector="",
            rollout_label=(meta.get("labels") or {}).get(workloads.LABEL_ROLLOUT),
            deleting=True,
        )
    else:
        d = STATE.cache.put_deployment(body)
    STATE.poke(d.namespace, STATE.cache.rollouts_for_deployment(d))


@kopf.on.event("", "v1", "pods")
async def pod_event(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    deleted = event.get("type") == "DELETED"
    p = STATE.cache.drop_pod(body) if deleted else STATE.cache.put_pod(body)
    names = STATE.cache.rollouts_for_pod(p)
    if names:
        STATE.poke(p.namespace, names)


# ------------------------------------------------------------------------- daemon


@kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, cancellation_timeout=10.0)
async def rollout_daemon(
    *,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    logger: Logger,
    **_: Any,
) -> None:
    key = (namespace or "", name)
    poke = STATE.pokes[key] = asyncio.Event()
    failures = 0
    try:
        while not stopped:
            poke.clear()
            try:
                delay = await reconcile(STATE, body, logger)
                failures = 0
            except Exception as exc:
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                failures += 1
                log.warning(
                    "%s/%s: reconcile failed (attempt %d), retrying in %.0fs: %s",
                    key[0],
                    key[1],
                    failures,
                    delay,
                    _short(exc),
                )
            timeout = RESYNC_SECONDS if delay is None else min(max(delay, 0.05), RESYNC_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poke.wait(), timeout=timeout)
    finally:
        # A daemon started again for the same rollout (kopf restarts it) has its own event by
        # now: removing that one would leave the new daemon deaf to every watch event.
        if STATE.pokes.get(key) is poke:
            del STATE.pokes[key]


# ---------------------------------------------------------------------- finalizer


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL, timeout=900)
async def rollout_deleted(
    *, body: kopf.Body, namespace: str | None, logger: Logger, **_: Any
) -> None:
    """Restore the target to N Ready standard replicas, then remove the twin."""
    namespace = namespace or ""
    status = api.parse_status(body.get("status"))
    target_name = ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    n = status.replicas.target
    kube = STATE.kube
    if isinstance(target_name, str) and n > 0:
        target = await kube.get_deployment(namespace, target_name)
        if target is not None:
            replicas = (target.get("spec") or {}).get("replicas") or 0
            ready = (target.get("status") or {}).get("readyReplicas") or 0
            if replicas < n:
                await kube.scale_deployment(namespace, target_name, n)
                log.info("%s: deleting: restoring target %s to %d", namespace, target_name, n)
                raise kopf.TemporaryError(f"waiting for {n} Ready standard replicas", delay=2)
            if ready < n:
                raise kopf.TemporaryError(
                    f"waiting for {n} Ready standard replicas ({ready} now)", delay=2
                )
        await kube.delete_deployment(namespace, workloads.twin_name(target_name))
        log.info("%s: deleted: target %s back at %d, twin removed", namespace, target_name, n)


# ---------------------------------------------------------------------- reconcile


async def _deployment(state: State, namespace: str, name: str) -> DeploymentSummary | None:
    d = state.cache.deployment(namespace, name)
    if d is not None:
        return d
    body = await state.kube.get_deployment(namespace, name)
    return None if body is None else state.cache.put_deployment(body)


def _pods(state: State, namespace: str, twin: str) -> tuple[PodGil, ...]:
    out = []
    for p in sorted(state.cache.pods_of(namespace, twin), key=lambda p: p.name):
        reading = state.gil.get((namespace, p.name))
        if reading is None:
            out.append(PodGil(pod=p.name, enabled=None))
        else:
            out.append(PodGil(p.name, reading.enabled, reading.modules, reading.build))
    return tuple(out)


def _incidents(state: State, namespace: str, twin: str) -> tuple[api.Incident, ...]:
    out = [
        api.Incident(pod=pod, exit_code=t.exit_code, time=t.finished_at)
        for pod, t in state.cache.terminations_of(namespace, twin)
    ]
    for p in state.cache.pods_of(namespace, twin):
        for when in state.probe_incidents.get((namespace, p.name), ()):
            out.append(api.Incident(pod=p.name, source="Probe", time=when))
    return tuple(out)


async def reconcile(state: State, body: Any, logger: Logger) -> float | None:
    started = time.perf_counter()
    state.reconciles += 1
    meta = body.get("metadata") or {}
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name)
    if meta.get("deletionTimestamp"):
        return None
    status_raw = dict(body.get("status") or {})
    pending = state.pending_status.get(key)
    if pending is not None:
        if pending == status_raw:
            del state.pending_status[key]
        else:
            status_raw = pending  # our last write has not come back through the watch yet
    written = status_raw
    status_raw = state.deferred_status.get(key, written)
    status = api.parse_status(status_raw)
    generation = int(meta.get("generation") or 0)
    action = (meta.get("annotations") or {}).get(workloads.ANNOTATION_ACTION)
    if action is not None and state.consumed_action.get(key) == meta.get("resourceVersion"):
        action = None
    now = datetime.now(UTC)

    spec: api.RolloutSpec | None
    try:
        spec = api.parse_spec(body.get("spec"))
        spec_error = None
    except api.SpecError as exc:
        spec, spec_error = None, exc

    target: DeploymentSummary | None = None
    twin: DeploymentSummary | None = None
    revision = None
    twin_name = ""
    if spec is not None:
        twin_name = workloads.twin_name(spec.target_ref.name)
        target = await _deployment(state, namespace, spec.target_ref.name)
        twin = await _deployment(state, namespace, twin_name)
        if target is not None:
            revision = revision_of(target.template_hash, spec.free_threaded)
        if target is not None and target.deleting:
            target = None

    stale_twin = (
        twin is not None
        and target is not None
        and twin.selector != _twin_selector(target.selector, name)
    )
    obs = Observation(
        now=now,
        generation=generation,
        revision=revision,
        target=None
        if target is None
        else Workload(target.replicas, target.ready, target.replicas_manager),
        # A twin on another selector (the target was re-created with a new one) runs the old
        # template and cannot be patched: its pods count for nothing, so the standard track
        # goes back to N before that twin is replaced.
        twin=None if twin is None else Workload(twin.replicas, 0 if stale_twin else twin.ready),
        pods=_pods(state, namespace, twin_name) if twin_name and not stale_twin else (),
        incidents=_incidents(state, namespace, twin_name) if twin_name else (),
        analysis=state.analysis.get(key),
        action=action,
        preflight=state.preflight.get(key),
        spec_error=spec_error,
    )
    result = plan(spec, status, obs)

    if spec is not None and target is not None and result.twin_replicas is not None:
        try:
            await _ensure_twin(state, body, spec, target, twin, result)
        except _TwinReplaced:
            obs = Observation(**{**obs.__dict__, "twin": None, "pods": ()})
            result = plan(spec, status, obs)
        except workloads.TwinError as exc:
            obs = Observation(
                **{**obs.__dict__, "spec_error": api.SpecError(exc.field, exc.message)}
            )
            result = plan(spec, status, obs)

    await _act(state, body, key, written, target, twin, result, logger)
    _register_analysis(state, key, spec, result)
    if result.status.phase in (api.Phase.PROGRESSING, api.Phase.PAUSED, api.Phase.PENDING):
        state.active.add(key)
        state.containers[key] = spec.free_threaded.container if spec is not None else None
    else:
        state.active.discard(key)
    if result.run_preflight and spec is not None and target is not None:
        await _preflight(state, body, spec, target)
    for hook in state.on_result:
        hook(key, result, time.perf_counter() - started)
    return result.requeue_after


ANALYSED_PHASES = (api.Phase.PROGRESSING, api.Phase.PAUSED)


def _register_analysis(
    state: State, key: Key, spec: api.RolloutSpec | None, result: Result
) -> None:
    if state.scheduler is None:
        return
    from ftrollout.prometheus import AnalysisTarget

    analysis = spec.analysis if spec is not None else None
    if spec is None or analysis is None or not analysis.metrics:
        state.scheduler.unregister(key)
        return
    if result.status.phase not in ANALYSED_PHASES:
        state.scheduler.unregister(key)
        return
    state.scheduler.register(
        AnalysisTarget(
            namespace=key[0],
            name=key[1],
            target=spec.target_ref.name,
            twin=workloads.twin_name(spec.target_ref.name),
            analysis=analysis,
            url=analysis.prometheus.address or state.default_prometheus,
        )
    )


async def _ensure_twin(
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
    )
    if spec.free_threaded.probe.enabled:
        await _ensure_probe_configmap(state, namespace)
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
        if twin.selector != _canonical_selector(manifest):
            # The selector of a Deployment is immutable: replace the twin, once the standard
            # track alone has N Ready (or the twin has nothing left to lose).
            idle = (result.twin_replicas or 0) == 0 and twin.ready == 0
            if idle or target.ready >= result.status.replicas.target:
                await state.kube.delete_deployment(namespace, twin.name)
                state.cache.drop_deployment(namespace, twin.name, twin.uid)
                log.info("%s/%s: twin on an old selector deleted", namespace, twin.name)
                raise _TwinReplaced
            return
        await state.kube.replace_twin_template(manifest)
        log.info("twin %s/%s moved to revision %s", namespace, twin.name, revision)


async def _ensure_probe_configmap(state: State, namespace: str) -> None:
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


async def _preflight(
    state: State, body: Any, spec: api.RolloutSpec, target: DeploymentSummary
) -> None:
    """Start the preflight Job, or read its verdict and clean it up."""
    gate = spec.guardrails.dependency_gate
    assert gate is not None
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    image = spec.free_threaded.image
    name = job_name(meta["name"], image, gate.modules)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = await state.kube.get_job(key[0], name)
    if job is None:
        full = await state.kube.get_deployment(key[0], target.name)
        if full is None:
            return
        await _ensure_probe_configmap(state, key[0])
        manifest = job_manifest(
            rollout=meta["name"],
            rollout_uid=meta.get("uid", ""),
            namespace=key[0],
            free_threaded=spec.free_threaded,
            gate=gate,
            target_pod_spec=full["spec"]["template"].get("spec") or {},
        )
        await state.kube.create_job(manifest)
        state.preflight[key] = api.PreflightStatus.model_validate(
            {"phase": "Running", "image": image, "message": f"preflight Job {name} started",
             "time": now}
        )  # fmt: skip
        return
    pods = await state.kube.list_pods(key[0], f"job-name={name}")
    verdict = from_job(job, pods, image, gate, now)
    if verdict.phase == "Running":
        return
    state.preflight[key] = verdict
    state.poke(key[0], key[1])
    await state.kube.delete_job(key[0], name)


class _TwinReplaced(Exception):
    """The twin was deleted to be re-created on the target's new selector."""


def _twin_selector(target_selector: str, rollout: str) -> str:
    """Canonical JSON of the twin's selector for a target selector (as workloads builds it)."""
    import json

    selector = json.loads(target_selector or "{}")
    labels = dict(selector.get("matchLabels") or {})
    labels[workloads.LABEL_TRACK] = workloads.TRACK_FREE_THREADED
    labels[workloads.LABEL_ROLLOUT] = rollout
    selector["matchLabels"] = labels
    return json.dumps(selector, sort_keys=True, separators=(",", ":"))


def _canonical_selector(manifest: dict[str, Any]) -> str:
    import json

    return json.dumps(manifest["spec"]["selector"], sort_keys=True, separators=(",", ":"))


async def _act(
    state: State,
    body: Any,
    key: Key,
    written: dict[str, Any],
    target: DeploymentSummary | None,
    twin: DeploymentSummary | None,
    result: Result,
    logger: Logger,
) -> None:
    namespace, name = key
    kube = state.kube
    for current, wanted, track in (
        (twin, result.twin_replicas, "twin"),
        (target, result.target_replicas, "target"),
    ):
        if current is None or wanted is None or wanted == current.replicas:
            continue
        rv = await kube.scale_deployment(namespace, current.name, wanted)
        state.cache.wrote_deployment(
            replace(current, replicas=wanted, replicas_manager=FIELD_MANAGER, resource_version=rv)
        )
        log.info(
            "%s/%s: scaled %s %s %d -> %d",
            namespace,
            name,
            track,
            current.name,
            current.replicas,
            wanted,
        )
    new_status = api.dump(result.status)
    since_write = time.monotonic() - state.written_at.get(key, float("-inf"))
    if new_status == written:
        state.deferred_status.pop(key, None)
    elif status_writes.can_wait(written, new_status, since_write, state.status_refresh):
        state.deferred_status[key] = new_status
    else:
        # Known before the write: its watch event may arrive before the call returns.
        previous = state.pending_status.get(key)
        state.pending_status[key] = new_status
        try:
            await kube.patch_rollout_status(namespace, name, new_status)
        except BaseException:
            if previous is None:
                state.pending_status.pop(key, None)
            else:
                state.pending_status[key] = previous
            raise
        state.deferred_status.pop(key, None)
        state.written_at[key] = time.monotonic()
    for ev in result.events:
        log.info("%s/%s: %s: %s", namespace, name, ev.reason, ev.message)
        await kube.emit_event(body, ev.type, ev.reason, ev.message)
    patch: dict[str, Any] = {}
    if result.clear_action:
        patch["metadata"] = {"annotations": {workloads.ANNOTATION_ACTION: None}}
    if result.set_paused is not None:
        patch["spec"] = {"paused": result.set_paused}
    if patch:
        await kube.patch_rollout(namespace, name, patch)
        if result.clear_action:
            state.consumed_action[key] = str(body["metadata"].get("resourceVersion"))


def _short(exc: Exception) -> str:
    """One line for a log: the apiserver's message rather than its whole HTTP response."""
    body = getattr(exc, "body", None)
    if isinstance(body, str | bytes):
        try:
            import json

            return f"{getattr(exc, 'status', '')} {json.loads(body).get('message', '')}".strip()
        except ValueError:
            pass
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
