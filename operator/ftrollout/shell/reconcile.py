"""One reconcile: observe (cache, a GET only on a cache miss) -> plan (pure) -> act (writes).

A reconcile whose plan equals what is already there writes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ftrollout.model import api
from ftrollout.plan import FIELD_MANAGER, Observation, PodGil, Result, Workload, plan, routing
from ftrollout.plan import baseline as plan_baseline
from ftrollout.plan import twin as workloads
from ftrollout.plan.observe import (
    DeploymentSummary,
    Key,
    annotation_written_at,
    summarize_deployment,
)
from ftrollout.plan.prometheus import normalise
from ftrollout.plan.types import Claim, Ownership, parse_time
from ftrollout.shell import memo, status_writes
from ftrollout.shell.baseline import ensure_baseline
from ftrollout.shell.gate_job import run_preflight
from ftrollout.shell.kube import short_error
from ftrollout.shell.routing import Routes, observe_routes, write_routes
from ftrollout.shell.spec_cache import parsed_spec, release_unless_analysed
from ftrollout.shell.state import GilReading, State
from ftrollout.shell.twin import TwinChanged, TwinReplaced, ensure_twin, twin_selector

log = logging.getLogger("ftrollout")
Logger = logging.Logger | logging.LoggerAdapter[Any]

ANALYSED_PHASES = (api.Phase.PROGRESSING, api.Phase.PAUSED)
REASON_BASELINE_WRITE_FAILED = "BaselineWriteFailed"


async def _deployment(state: State, namespace: str, name: str) -> DeploymentSummary | None:
    d = state.cache.deployment(namespace, name)
    if d is not None:
        return d
    body = await state.kube.get_deployment(namespace, name)
    return None if body is None else state.cache.put_deployment(body)


def _pods(state: State, namespace: str, twin: str) -> tuple[PodGil, ...]:
    out = []
    for p in sorted(state.cache.pods_of(namespace, twin), key=lambda p: p.name):
        reading = state.gil.get((namespace, p.name)) or GilReading(enabled=None)
        out.append(
            PodGil(
                p.name,
                reading.enabled,
                reading.modules,
                reading.build,
                running=p.running,
                terminating=p.terminating,
                revision=p.revision,
                failure=p.failure,
            )
        )
    return tuple(out)


def _incidents(state: State, namespace: str, twin: str) -> tuple[api.Incident, ...]:
    return tuple(
        api.Incident(pod=pod, exit_code=t.exit_code, time=t.finished_at)
        for pod, t in state.cache.terminations_of(namespace, twin)
    )


def _probe_counts(state: State, namespace: str, twin: str) -> tuple[tuple[str, float], ...]:
    out = []
    for p in sorted(state.cache.pods_of(namespace, twin), key=lambda p: p.name):
        value = state.probe_counts.get((namespace, p.name))
        if value is not None:
            out.append((p.name, value))
    return tuple(out)


# Our own status writes still in flight that the API may show before the latest one.
PENDING_BASES = 8


async def reconcile(state: State, body: Any, logger: Logger) -> float | None:
    started = time.perf_counter()
    state.reconciles += 1
    writes_before = state.kube.writes
    meta = body.get("metadata") or {}
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name)
    if meta.get("deletionTimestamp"):
        return None
    status_raw = dict(body.get("status") or {})
    pending = state.pending_status.get(key)
    if pending is not None:
        if pending == status_raw:
            state.forget_pending(key)
        elif status_raw in state.pending_bases.get(key, ()):
            status_raw = pending  # our last write has not come back through the watch yet
        else:
            # Written by someone else since (another replica while this one was paused by
            # peering): newer than our memory, which would undo it (a rollback, a request).
            state.forget_pending(key)
    written = status_raw
    if state.deferred_base.get(key, written) != written:
        state.forget_deferred(key)  # planned from a status that is no longer the current one
    status_raw = state.deferred_status.get(key, written)
    status, status_error = api.parse_status_checked(status_raw)
    generation = int(meta.get("generation") or 0)
    action = (meta.get("annotations") or {}).get(workloads.ANNOTATION_ACTION)
    consuming = action is not None and state.consumed_action.get(key) == meta.get("resourceVersion")
    if consuming:
        action = None
    now = datetime.now(UTC)

    parsed = parsed_spec(state, key, body.get("spec"))
    spec, spec_error = parsed.spec, parsed.error

    target: DeploymentSummary | None = None
    twin: DeploymentSummary | None = None
    revision = None
    twin_name = ""
    if spec is not None:
        twin_name = workloads.twin_name(spec.target_ref.name)
        target = await _deployment(state, namespace, spec.target_ref.name)
        twin = await _deployment(state, namespace, twin_name)
        if target is not None:
            revision = parsed.revision(target.template_hash)
        if target is not None and target.deleting:
            target = None

    # The baseline of the target the rollout holds (status.target: a targetRef edited since
    # was never split, and an unreadable spec names none). The watch's view only: most
    # rollouts have no baseline most of the time, and a GET per reconcile for one that is not
    # there would cost more than it tells. The shell reads it before creating one
    # (shell.baseline).
    held = status.target or (spec.target_ref.name if spec is not None else None)
    baseline: DeploymentSummary | None = None
    if held is not None:
        baseline = state.cache.deployment(namespace, plan_baseline.baseline_name(held))

    routes = Routes()
    if spec is not None:
        routes = await observe_routes(state, body, spec, status)

    stale_twin = (
        twin is not None
        and target is not None
        and twin.selector != twin_selector(target.selector, name)
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
        twin=None
        if twin is None
        else Workload(twin.replicas, 0 if stale_twin else twin.ready, twin.replicas_manager),
        pods=_pods(state, namespace, twin_name) if twin_name and not stale_twin else (),
        incidents=_incidents(state, namespace, twin_name) if twin_name else (),
        probe_counts=_probe_counts(state, namespace, twin_name) if twin_name else (),
        analysis=state.analysis.get(key),
        action=action,
        action_consuming=consuming,
        target_selector=None if target is None else target.label_selector,
        own_target_writes=state.own_target_writes(key, time.monotonic()),
        action_written_at=annotation_written_at(meta, workloads.ANNOTATION_ACTION),
        preflight=state.preflight.get(key),
        spec_error=spec_error,
        ownership=None
        if spec is None
        else _ownership(state, meta, spec.target_ref.name, target, twin_name, twin, baseline),
        status_error=status_error,
        twin_owned=twin is not None and twin.rollout_label == name,
        twin_service_replicas=None if twin is None else twin.service_replicas,
        routes=routes.observed,
        routing_error=routes.error,
        # Only routes are checked against them (a rule another rollout splits): without any,
        # the walk over every rollout of the cluster was a tenth of each reconcile's time at
        # 300 analysed rollouts, and grows with their number (issue 22).
        other_ft_services=tuple(
            sorted(
                (routing.ft_service_name(target), rollout)
                for (ns, rollout), target in state.cache.rollout_targets.items()
                if ns == namespace and rollout != name
            )
        )
        if routes.observed
        else (),
        baseline=None
        if baseline is None
        else Workload(baseline.replicas, baseline.ready, baseline.replicas_manager),
    )
    # Routes are read from the API on every look and change without a poke before the
    # Gateway API CRDs are watched: a routed rollout always plans.
    memorable = spec is not None and spec.traffic_routing is None and not routes.observed
    memorable = memorable and key not in state.baseline_errors  # retried at every reconcile
    version = str(meta.get("resourceVersion") or "")
    workloads_read = (target, twin, baseline)
    remembered = state.memos.get(key) if memorable else None
    skip = memo.answer(
        remembered,
        version,
        body.get("spec"),
        status_raw,
        obs,
        workloads_read,
        now.timestamp(),
    )
    if skip is not None and remembered is not None:
        state.skipped += 1
        # The same world in new objects (kopf lists every rollout again after a 410, the cache
        # summarises a re-listed Deployment anew): the memo holds these, so the ones they
        # replaced are freed, not kept beside them.
        state.memos[key] = replace(
            remembered, spec=body.get("spec"), status=status_raw, workloads=workloads_read
        )
        release_unless_analysed(state, key)
        return skip.delay
    state.memos.pop(key, None)
    result = plan(spec, status, obs)
    if result.adopt_twin and twin is not None:
        twin = await _adopt(state, body, twin)

    if (
        spec is not None
        and target is not None
        and result.twin_replicas is not None
        and _owned(twin, meta)
    ):
        try:
            await ensure_twin(state, body, spec, target, twin, result)
        except TwinReplaced:
            obs = Observation(**{**obs.__dict__, "twin": None, "pods": ()})
            result = plan(spec, status, obs)
        except TwinChanged:
            # Someone else's Deployment under the twin's name now: this plan was made for
            # ours, so nothing of it is written; the next reconcile, right away, sees theirs.
            return 0.0
        except workloads.TwinError as exc:
            obs = Observation(
                **{**obs.__dict__, "spec_error": api.SpecError(exc.field, exc.message)}
            )
            result = plan(spec, status, obs)

    await _act(state, body, key, written, target, twin, result, logger)
    # After the status that records them: a crash in between leaves a record, never an edit
    # without one.
    await write_routes(state, namespace, name, result.route_writes, routes.versions)
    if held is not None:
        await _write_baseline(
            state,
            body,
            key,
            held,
            target if target is not None and target.name == held else None,
            baseline,
            result,
        )
    _register_analysis(state, key, spec, result)
    release_unless_analysed(state, key)
    # Pod logs are read for GIL warnings until the bake ends; after it only the probe tells.
    if result.status.phase in (
        api.Phase.PROGRESSING,
        api.Phase.PAUSED,
        api.Phase.PENDING,
    ) or _baking(result.status):
        state.active.add(key)
        state.containers[key] = spec.free_threaded.container if spec is not None else None
    else:
        state.active.discard(key)
    if result.run_preflight and spec is not None and target is not None:
        await run_preflight(state, body, spec, target, result.status.preflight)
    for hook in state.on_result:
        hook(key, result, time.perf_counter() - started)
    if (
        memorable
        and state.kube.writes == writes_before  # ours and any other reconcile's meanwhile
        and not result.events
        and not result.run_preflight
        and key not in state.deferred_status  # its write waits for a time, not an event
        and api.dump(result.status) == status_raw
    ):
        state.memos[key] = memo.remember(
            version,
            body.get("spec"),
            status_raw,
            obs,
            workloads_read,
            result.requeue_after,
            now.timestamp(),
        )
    return result.requeue_after


async def _adopt(state: State, body: Any, twin: DeploymentSummary) -> DeploymentSummary:
    meta = body["metadata"]
    previous = "no controller" if twin.controller is None else twin.controller[0]
    adopted = await state.kube.set_controller(
        twin.namespace,
        twin.name,
        workloads.owner_reference(meta["name"], str(meta.get("uid") or "")),
    )
    message = (
        f"adopted the twin {twin.name!r} left by an earlier rollout of this name (was "
        f"{previous}): its free-threaded replicas count for N and it is no longer garbage"
    )
    log.info("%s/%s: %s", twin.namespace, meta["name"], message)
    await state.kube.emit_event(body, "Normal", "TwinAdopted", message)
    summary = summarize_deployment(adopted)
    state.cache.wrote_deployment(summary)
    return summary


async def _write_baseline(
    state: State,
    body: Any,
    key: Key,
    held: str,
    target: DeploymentSummary | None,
    baseline: DeploymentSummary | None,
    result: Result,
) -> None:
    """After the status write, and never raising: the baseline is extra capacity, so a refused
    write (a quota on count/deployments.apps, an admission policy, RBAC) must hold back neither
    the tracks nor the analysis registered after it. It is reported once per distinct error
    and tried again at the next reconcile; meanwhile compare rounds say `baseline: no series`
    (they never fall back to the warm standard pods). A pods quota refuses the baseline's pods,
    not the Deployment: that shows only as no series."""
    try:
        await ensure_baseline(
            state,
            body,
            held,
            target,
            baseline,
            result.baseline_replicas,
            result.status.revision or "",
        )
    except Exception as exc:
        name = plan_baseline.baseline_name(held)
        message = (
            f"the baseline {name!r} could not be written ({short_error(exc)}): compare "
            "metrics stay Inconclusive until it runs, the tracks go on without it; tried "
            "again at the next reconcile"
        )
        log.warning("%s/%s: %s", key[0], key[1], message)
        # Said once per distinct error; not recorded (a transport error): said again next time.
        if state.baseline_errors.get(key) != message and await state.kube.emit_event(
            body, "Warning", REASON_BASELINE_WRITE_FAILED, message
        ):
            state.baseline_errors[key] = message
        return
    state.baseline_errors.pop(key, None)


def _baking(status: api.RolloutStatus) -> bool:
    """Promoted and within the bake: analysis and log reading go on (see plan.bake)."""
    if status.phase != api.Phase.PROMOTED or status.bake_until is None:
        return False
    return datetime.now(UTC) < parse_time(status.bake_until)


def _ownership(
    state: State,
    meta: Any,
    target: str,
    target_body: DeploymentSummary | None,
    twin_name: str,
    twin: DeploymentSummary | None,
    baseline: DeploymentSummary | None,
) -> Ownership:
    me = Claim(meta["name"], str(meta.get("creationTimestamp") or ""))
    others = [c for c in state.cache.claims(meta["namespace"], target) if c.name != me.name]
    return Ownership(
        rollout=me.name,
        uid=str(meta.get("uid") or ""),
        claims=(me, *others),
        twin=twin_name,
        twin_controller=None if twin is None else twin.controller,
        target=target,
        target_controller=None if target_body is None else target_body.controller,
        target_rollout_label=None if target_body is None else target_body.rollout_label,
        baseline_controller=None if baseline is None else baseline.controller,
    )


def _owned(twin: DeploymentSummary | None, meta: Any) -> bool:
    """No twin yet, or one whose controller is this rollout (by uid): the only twin the shell
    may scale, re-template or delete."""
    return twin is None or (twin.controller is not None and twin.controller[1] == meta.get("uid"))


def _register_analysis(
    state: State, key: Key, spec: api.RolloutSpec | None, result: Result
) -> None:
    if state.scheduler is None:
        return
    from ftrollout.shell.scheduler import AnalysisTarget

    analysis = spec.analysis if spec is not None else None
    if spec is None or analysis is None or not analysis.metrics:
        state.scheduler.forget(key)
        return
    address = analysis.prometheus.address
    url = normalise(address) if address else state.default_prometheus
    state.scheduler.watch(key, url if result.status.phase == api.Phase.PROMOTED else None)
    if result.status.phase not in ANALYSED_PHASES and not _baking(result.status):
        state.scheduler.unregister(key)
        return
    state.scheduler.register(
        AnalysisTarget(
            namespace=key[0],
            name=key[1],
            target=spec.target_ref.name,
            twin=workloads.twin_name(spec.target_ref.name),
            # Only while the steps run one (plan.baseline): it is deleted at promotion, and
            # the bake compares with the standard pods kept warm (plan.bake), else with the
            # last standard value, never with a baseline that is gone.
            baseline=plan_baseline.baseline_name(spec.target_ref.name)
            if analysis.baseline_enabled and result.status.phase in ANALYSED_PHASES
            else None,
            analysis=analysis,
            # Allowed (checked above): normalised, so one address is one client and one trust.
            url=url,
            last_standard={v.name: v.value for v in result.status.analysis.last_standard},
            step_started_at=result.status.step_started_at,
        )
    )


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
        (twin if _owned(twin, body["metadata"]) else None, result.twin_replicas, "twin"),
        (target, result.target_replicas, "target"),
    ):
        if current is None or wanted is None or wanted == current.replicas:
            continue
        rv = await kube.scale_deployment(namespace, current.name, wanted)
        state.cache.wrote_deployment(
            replace(current, replicas=wanted, replicas_manager=FIELD_MANAGER, resource_version=rv)
        )
        if track == "target":
            state.wrote_target(key, wanted, time.monotonic())
        log.info(
            "%s/%s: scaled %s %s %d -> %d",
            namespace,
            name,
            track,
            current.name,
            current.replicas,
            wanted,
        )
    n = result.status.replicas.target
    if (
        twin is not None
        and _owned(twin, body["metadata"])
        and result.target_replicas is not None
        and n > 0
        and twin.service_replicas != n
    ):
        rv = await kube.annotate_deployment(
            namespace, twin.name, {workloads.ANNOTATION_SERVICE_REPLICAS: str(n)}
        )
        latest = state.cache.deployment(namespace, twin.name) or twin  # after its scale
        state.cache.wrote_deployment(replace(latest, service_replicas=n, resource_version=rv))
    new_status = api.dump(result.status)
    since_write = time.monotonic() - state.written_at.get(key, float("-inf"))
    if new_status == written:
        state.forget_deferred(key)
    elif status_writes.can_wait(written, new_status, since_write, state.status_refresh):
        state.deferred_status[key] = new_status
        state.deferred_base[key] = written
    else:
        # Known before the write: its watch event may arrive before the call returns.
        previous = state.pending_status.get(key)
        previous_bases = state.pending_bases.get(key, [])
        shown = dict(body.get("status") or {})  # what the API showed: ours not yet applied
        bases = [shown] if previous is None else [shown, previous, *previous_bases]
        state.pending_status[key] = new_status
        state.pending_bases[key] = bases[:PENDING_BASES]
        try:
            await kube.patch_rollout_status(namespace, name, new_status)
        except BaseException:
            if previous is None:
                state.forget_pending(key)
            else:
                state.pending_status[key] = previous
                state.pending_bases[key] = previous_bases
            raise
        state.forget_deferred(key)
        state.written_at[key] = time.monotonic()
    # spec.paused before the Events: a pause recorded in status takes effect first.
    if result.set_paused is not None:
        await kube.patch_rollout(namespace, name, {"spec": {"paused": result.set_paused}})
    for ev in result.events:
        log.info("%s/%s: %s: %s", namespace, name, ev.reason, ev.message)
        await kube.emit_event(body, ev.type, ev.reason, ev.message, ev.action)
    consumed = (body["metadata"].get("annotations") or {}).get(workloads.ANNOTATION_ACTION)
    if result.clear_action and consumed is not None:
        # Only the request acted on: one written over it since it was read is not applied yet.
        removed = await kube.remove_rollout_annotation(
            namespace, name, workloads.ANNOTATION_ACTION, str(consumed)
        )
        state.consumed_action[key] = str(body["metadata"].get("resourceVersion"))
        if not removed:
            log.info("%s/%s: a new action request replaced %r; next reconcile", namespace, name,
                     consumed)  # fmt: skip
