"""Thin kopf wiring: watch events feed the cache, one daemon per rollout runs reconcile.

Watch events of related Deployments and Pods "poke" the rollout's daemon, so a crash is acted on
within one event round-trip instead of a polling interval. The reconcile itself is
`shell.reconcile`; the finalizer restores the target before the twin goes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Any

import kopf

from ftrollout.model import api
from ftrollout.plan import baseline as plan_baseline
from ftrollout.plan import routing
from ftrollout.plan import twin as workloads
from ftrollout.plan.observe import DeploymentSummary, Key, controller_of, slim_managed_fields
from ftrollout.shell import metrics
from ftrollout.shell.kube import short_error
from ftrollout.shell.reconcile import Logger, reconcile
from ftrollout.shell.routing import restore_routes
from ftrollout.shell.state import State, spread, wait_set

log = logging.getLogger("ftrollout")

# A periodic look even without events. Everything a reconcile reads comes from a watch (and
# pokes the daemon) or is asked for by the plan (clock-driven pauses, deadlines, the bake, the
# race window: `requeue_after`). HTTPRoutes are watched too, but only once the Gateway API CRDs
# were there when the watch started (namespaced mode: at the operator's start), so a rollout
# with `trafficRouting` still looks again every RESYNC_SECONDS. Any other rollout with nothing
# due waits IDLE_RESYNC_SECONDS, a safety net only (controller-runtime's default is 10 hours,
# Argo Rollouts' 15 minutes): a look costs about a millisecond, so at 1000 paused rollouts a
# look every 60 s was 17 reconciles a second that found nothing to do, and even one every 15
# minutes would cost more CPU than Argo Rollouts' whole idle process (issue 22). The looks of
# rollouts created together are spread over the last quarter of the period. Nothing else
# depends on them: a promoted rollout's Prometheus stays on the guardrail loop's list until the
# rollout is deleted or leaves Promoted (Scheduler.watch), not for a time.
RESYNC_SECONDS = 60.0
DEFAULT_IDLE_RESYNC_SECONDS = 3600.0


def _idle_resync(raw: str | None) -> float:
    """FTR_IDLE_RESYNC_SECONDS: for benchmarks that measure what the looks cost (a shorter
    period puts every rollout's look in a five-minute window); not a tuning knob. Read at
    import: a value that is not a number of seconds >= 1 is said and ignored, since a typo
    must not stop the operator from starting and 0 would make every idle daemon look again
    at once, for ever."""
    if not raw:
        return DEFAULT_IDLE_RESYNC_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (1.0 <= seconds < math.inf):
        log.warning(
            "FTR_IDLE_RESYNC_SECONDS=%r is not a number of seconds >= 1: using %.0f",
            raw,
            DEFAULT_IDLE_RESYNC_SECONDS,
        )
        return DEFAULT_IDLE_RESYNC_SECONDS
    return seconds


IDLE_RESYNC_SECONDS = _idle_resync(os.environ.get("FTR_IDLE_RESYNC_SECONDS"))
ERROR_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)

STATE = State()


# ------------------------------------------------------------------------ watches


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def rollout_event(
    *, event: kopf.RawEvent, name: str, namespace: str | None, spec: kopf.Spec, **_: Any
) -> None:
    namespace = namespace or ""
    key = (namespace, name)
    uid = str(((event.get("object") or {}).get("metadata") or {}).get("uid") or "")
    if event.get("type") == "DELETED" and uid and STATE.cache.rollout_uids.get(key, uid) != uid:
        # An object deleted after another was created under its name (`kubectl replace
        # --force`): everything kept for the name is the new rollout's, still running.
        return
    # A rollout waiting for this one's target (TargetClaimed) carries on once it is free: its
    # next look may be an hour away, so it is woken when the claim goes.
    held = STATE.cache.rollout_targets.get(key)
    if held is not None:
        target_now = (spec.get("targetRef") or {}).get("name")
        if event.get("type") == "DELETED" or target_now != held:
            STATE.poke(namespace, STATE.cache.targets.get((namespace, held), set()) - {name})
    if event.get("type") == "DELETED":
        STATE.cache.set_rollout_target(namespace, name, None)
        STATE.cache.set_rollout_routes(namespace, name, ())
        STATE.cache.rollout_uids.pop(key, None)
        STATE.forget_rollout(key)
        if STATE.scheduler is not None:
            STATE.scheduler.forget(key)
        metrics.forget(key)
        return
    if uid:
        STATE.cache.rollout_uids[key] = uid
    _slim(event.get("object") or {})
    target = (spec.get("targetRef") or {}).get("name")
    created = ((event.get("object") or {}).get("metadata") or {}).get("creationTimestamp")
    STATE.cache.set_rollout_target(
        namespace, name, target if isinstance(target, str) else None, str(created or "")
    )
    STATE.cache.set_rollout_routes(namespace, name, _route_names(event.get("object") or {}))
    if _needs_look(STATE, (namespace, name), event.get("object") or {}):
        STATE.poke(namespace, name)


def _slim(raw: Any) -> None:
    """Drop what the operator never reads from the body kopf keeps for the rollout's daemon (the
    same dict: kopf hands event handlers the raw event it stores), as client-go informers'
    transform functions do: most of a rollout's managedFields."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if not isinstance(meta, dict):
        return
    managed = meta.get("managedFields")
    if isinstance(managed, list) and managed:
        meta["managedFields"] = slim_managed_fields(managed, (workloads.ANNOTATION_ACTION,))


def _route_names(body: Any) -> list[str]:
    """The HTTPRoutes a rollout names in its spec or still has edits in (its status), read
    leniently: an invalid spec still gets its routes watched for the restore."""
    raw = ((body.get("spec") or {}).get("trafficRouting") or {}).get("gatewayAPI") or {}
    recorded = ((body.get("status") or {}).get("trafficRouting") or {}).get("routes") or []
    refs = [*(raw.get("httpRoutes") or []), *recorded]
    return [r["name"] for r in refs if isinstance(r, dict) and isinstance(r.get("name"), str)]


def _needs_look(state: State, key: Key, body: Any) -> bool:
    """Whether a rollout event wakes its daemon. The echo of our own status write does not
    wake an analysed rollout: its next round reconciles anyway, and echo reconciles were half
    of all reconciles. Any other rollout is looked at once more: that reconcile finds nothing
    to do and is remembered (shell.memo), so its hourly looks skip the plan from the first."""
    if not _own_status_echo(state, key, body):
        return True
    return state.scheduler is None or key not in state.scheduler.targets


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
    if pending is None or pending != body.get("status"):
        return False
    # The write came back: what the next reconcile would forget first. Kept until then, an
    # idle rollout held its last status and up to PENDING_BASES earlier ones in memory for
    # its whole pause (issue 22: memory per rollout).
    state.forget_pending(key)
    return previous == trigger


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


# An edit of a route by someone else (a GitOps tool re-applying it from Git, a person) is
# acted on at once: after promotion the standard track has no pods, and a route sending to it
# must not wait for the resync. Without the Gateway API CRDs kopf only warns that the resource
# is unresolved, and starts watching once they are installed.
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes")
async def httproute_event(*, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    names = STATE.cache.rollouts_for_route(namespace, str(meta.get("name") or ""))
    if names:
        STATE.poke(namespace, names)


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
            try:
                # A bounded number at once: 1000 rollouts taken over together held 1000
                # reconciles' bodies, models and requests while they queued for the client's
                # rate limit (RSS high water, issue 22); a poke meanwhile is this reconcile's.
                async with STATE.reconcile_slots():
                    if stopped:  # paused (peering) or deleted while queued: no new writes
                        break
                    poke.clear()
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
                    short_error(exc),
                )
            await wait_set(poke, next_look(body, delay))
    finally:
        # A daemon started again for the same rollout (kopf restarts it) has its own event by
        # now: removing that one would leave the new daemon deaf to every watch event.
        if STATE.pokes.get(key) is poke:
            del STATE.pokes[key]


def next_look(body: Any, delay: float | None) -> float:
    """Seconds until the daemon reconciles again without a poke."""
    routed = bool((body.get("spec") or {}).get("trafficRouting"))
    resync = RESYNC_SECONDS if routed else IDLE_RESYNC_SECONDS
    meta = body.get("metadata") or {}
    resync *= 1 - 0.25 * spread((str(meta.get("namespace")), str(meta.get("name"))))
    return resync if delay is None else min(max(delay, 0.05), resync)


# ---------------------------------------------------------------------- finalizer


# No `timeout` and no `retries`: kopf releases the finalizer when either runs out, and garbage
# collection then removes the twin whatever the standard track's readiness. The handler waits
# (TemporaryError) for as long as the target needs, reporting progress instead.
@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
async def rollout_deleted(
    *, body: kopf.Body, namespace: str | None, logger: Logger, **_: Any
) -> None:
    """Restore the target to N Ready standard replicas, then remove the twin (only a twin this
    rollout controls: anything else named like it is left as it is, and the target with it)."""
    namespace = namespace or ""
    status = api.parse_status(body.get("status"))
    # The target the rollout holds (status.target), not a targetRef edited since: that one was
    # never split.
    target_name = status.target or ((body.get("spec") or {}).get("targetRef") or {}).get("name")
    if not isinstance(target_name, str):
        return
    kube = STATE.kube
    await _delete_baseline(body, namespace, target_name)
    twin_name = workloads.twin_name(target_name)
    twin = await kube.get_deployment(namespace, twin_name)
    if twin is not None and not _controls(body, twin):
        message = (
            f"Deployment {twin_name!r} is not this rollout's twin: deleted without touching "
            f"it or the target {target_name!r}"
        )
        log.info("%s/%s: %s", namespace, body.get("metadata", {}).get("name"), message)
        await kube.emit_event(body, "Warning", "TwinNotOwned", message)
        return
    n = status.replicas.target
    target = await kube.get_deployment(namespace, target_name)
    if target is not None and twin is not None and n == 0:
        # No N in the status (never written, or unreadable): both tracks' replicas stand for it.
        n = ((target.get("spec") or {}).get("replicas") or 0) + (
            (twin.get("spec") or {}).get("replicas") or 0
        )
    if target is not None and n > 0:
        replicas = (target.get("spec") or {}).get("replicas") or 0
        ready = (target.get("status") or {}).get("readyReplicas") or 0
        if replicas < n:
            await kube.scale_deployment(namespace, target_name, n)
            log.info("%s: deleting: restoring target %s to %d", namespace, target_name, n)
        if replicas < n or ready < n:
            await _deletion_waits(
                body,
                f"deleting: waiting for {n} Ready standard replicas on {target_name} "
                f"({ready} now); the free-threaded twin stays until then",
            )
    # Standard pods Ready: the routes go back to them before the free-threaded pods go.
    await restore_routes(STATE, body)
    if (body.get("spec") or {}).get("trafficRouting"):
        service = await kube.get_service(namespace, routing.ft_service_name(target_name))
        if service is not None and _controls(body, service):
            await kube.delete_service(namespace, routing.ft_service_name(target_name))
    if twin is not None:
        # The one read and checked above: the wait for the standard track may be long.
        await kube.delete_deployment(namespace, twin_name, _uid(twin))
    log.info("%s: deleted: target %s back at %d, twin removed", namespace, target_name, n)


async def _delete_baseline(body: kopf.Body, namespace: str, target_name: str) -> None:
    """The fresh baseline goes first: it is extra capacity, so nothing waits for it, and only
    one this rollout controls (garbage collection through its ownerReference is the backstop)."""
    name = plan_baseline.baseline_name(target_name)
    baseline = await STATE.kube.get_deployment(namespace, name)
    if baseline is None or not _controls(body, baseline):
        return
    # The one just read: a Deployment created under that name since is someone else's.
    if await STATE.kube.delete_deployment(namespace, name, _uid(baseline)):
        log.info("%s: deleting: baseline %s removed", namespace, name)


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _controls(rollout: kopf.Body, deployment: dict[str, Any]) -> bool:
    owner = controller_of(deployment.get("metadata") or {})
    return owner is not None and owner[1] == (rollout.get("metadata") or {}).get("uid")


async def _deletion_waits(body: kopf.Body, message: str) -> None:
    """Report why the deletion waits (status message, an Event, a log line: once per change),
    then ask kopf to call again."""
    meta = body.get("metadata") or {}
    if (body.get("status") or {}).get("message") != message:
        log.info("%s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        await STATE.kube.emit_event(body, "Normal", "Finalizing", message)
        await STATE.kube.patch_rollout_status_fields(
            meta.get("namespace", ""), meta.get("name", ""), {"message": message}
        )
    raise kopf.TemporaryError(message, delay=5)
