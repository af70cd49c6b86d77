"""Traffic routing I/O: the free-threaded Service, reading and patching HTTPRoutes.

The decisions are `plan.routing`'s; here the operator reads what the planner needs (the routes,
what is wrong with the Services) and writes what it returns, after the status that records it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ftrollout.model import api
from ftrollout.plan import routing
from ftrollout.plan import twin as workloads
from ftrollout.plan.observe import controller_of
from ftrollout.plan.types import RouteObservation
from ftrollout.shell.state import State

log = logging.getLogger("ftrollout")


@dataclass
class Routes:
    """What was read for one reconcile: routes (with their resourceVersions) and any error."""

    observed: tuple[RouteObservation, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def ft_service_manifest(
    rollout: dict[str, Any], stable: dict[str, Any], name: str
) -> dict[str, Any]:
    """The free-threaded Service: the stable Service's ports, its selector narrowed to the
    twin's pods (track and rollout labels), owned by the rollout."""
    meta = rollout["metadata"]
    selector = dict((stable.get("spec") or {}).get("selector") or {})
    selector[workloads.LABEL_TRACK] = workloads.TRACK_FREE_THREADED
    selector[workloads.LABEL_ROLLOUT] = meta["name"]
    keep = ("name", "port", "targetPort", "protocol", "appProtocol")
    ports = [
        {k: v for k, v in p.items() if k in keep}
        for p in (stable.get("spec") or {}).get("ports") or []
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": "ftrollout",
                workloads.LABEL_ROLLOUT: meta["name"],
                workloads.LABEL_TRACK: workloads.TRACK_FREE_THREADED,
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{api.GROUP}/{api.VERSION}",
                    "kind": api.KIND,
                    "name": meta["name"],
                    "uid": meta.get("uid", ""),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"selector": selector, "ports": ports},
    }


def selects_twin_pods(
    stable: dict[str, Any], template_labels: dict[str, str], rollout: str
) -> bool:
    """Whether the stable Service's selector also matches the free-threaded pods (their labels
    are the target's template labels plus the track and rollout labels)."""
    selector = (stable.get("spec") or {}).get("selector") or {}
    twin_labels = {
        **template_labels,
        workloads.LABEL_TRACK: workloads.TRACK_FREE_THREADED,
        workloads.LABEL_ROLLOUT: rollout,
    }
    return bool(selector) and all(twin_labels.get(k) == v for k, v in selector.items())


async def ensure_ft_service(state: State, body: Any, spec: api.RolloutSpec) -> str | None:
    """Create or align the free-threaded Service; what is wrong, for the planner, or None."""
    gw = spec.traffic_routing.gateway_api if spec.traffic_routing is not None else None
    if gw is None:
        return None
    meta = body["metadata"]
    namespace = meta["namespace"]
    stable = await state.kube.get_service(namespace, gw.stable_service)
    if stable is None:
        return f"stable Service {gw.stable_service!r} not found in this namespace"
    target = await state.kube.get_deployment(namespace, spec.target_ref.name)
    labels = (((target or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
    if selects_twin_pods(stable, labels.get("labels") or {}, meta["name"]):
        return (
            f"stable Service {gw.stable_service!r} also selects the free-threaded pods: give "
            f"the target's pod template the label {workloads.LABEL_TRACK}: "
            f"{workloads.TRACK_STANDARD} and add it to the Service's selector"
        )
    name = routing.ft_service_name(spec.target_ref.name)
    wanted = ft_service_manifest(body, stable, name)
    current = await state.kube.get_service(namespace, name)
    if current is None:
        await state.kube.create_service(wanted)
        log.info("%s/%s: created Service %s", namespace, meta["name"], name)
        return None
    owner = controller_of(current.get("metadata") or {})
    if owner is None or owner[1] != meta.get("uid"):
        return f"Service {name!r} exists and is not this rollout's"
    have = current.get("spec") or {}
    if have.get("selector") != wanted["spec"]["selector"] or _ports(have) != _ports(wanted["spec"]):
        await state.kube.patch_service(namespace, name, {"spec": wanted["spec"]})
    return None


def _ports(spec: dict[str, Any]) -> str:
    keep = ("name", "port", "targetPort", "protocol")
    return json.dumps(
        [{k: p.get(k) for k in keep} for p in spec.get("ports") or []], sort_keys=True
    )


async def observe_routes(
    state: State, body: Any, spec: api.RolloutSpec | None, status: api.RolloutStatus
) -> Routes:
    names = routing.route_names(spec, status)
    if not names:
        return Routes()
    namespace = body["metadata"]["namespace"]
    out = Routes()
    if spec is not None:
        out.error = await ensure_ft_service(state, body, spec)
    observed = []
    for name in names:
        obj = await state.kube.get_httproute(namespace, name)
        if obj is None:
            observed.append(RouteObservation(name, None))
            continue
        out.versions[name] = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        observed.append(RouteObservation(name, obj.get("spec") or {}))
    out.observed = tuple(observed)
    return out


async def write_routes(
    state: State,
    namespace: str,
    rollout: str,
    writes: tuple[tuple[str, dict[str, Any]], ...],
    versions: dict[str, str],
) -> None:
    for name, route_spec in writes:
        await state.kube.patch_httproute_rules(
            namespace, name, versions.get(name, ""), list(route_spec.get("rules") or [])
        )
        log.info("%s/%s: HTTPRoute %s updated", namespace, rollout, name)


async def restore_routes(state: State, body: Any) -> None:
    """Deletion: every route the status records, or the spec names, goes back to what the
    user had. A route the spec names but the status has no record of is still read: with the
    record lost, the free-threaded backend (about to be deleted with its Service) is taken out
    rather than left receiving its share of the requests."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace", "")
    status = api.parse_status(body.get("status"))
    recorded = status.traffic_routing
    records = {r.name: list(r.rules) for r in recorded.routes} if recorded is not None else {}
    raw = ((body.get("spec") or {}).get("trafficRouting") or {}).get("gatewayAPI") or {}
    names = list(records)
    for ref in raw.get("httpRoutes") or []:
        name = ref.get("name") if isinstance(ref, dict) else None
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    if not names:
        return
    target = ((body.get("spec") or {}).get("targetRef") or {}).get("name") or ""
    target = status.target or target
    svc = routing.Services(stable="", free_threaded=routing.ft_service_name(str(target)))
    matches = raw.get("matches") or []
    for name in names:
        obj = await state.kube.get_httproute(namespace, name)
        if obj is None:
            continue
        current = obj.get("spec") or {}
        restored = routing.restore(current, records.get(name, []), svc, matches)
        if restored != current:
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            await state.kube.patch_httproute_rules(
                namespace, name, rv, list(restored.get("rules") or [])
            )
            log.info("%s/%s: deleting: HTTPRoute %s restored", namespace, meta.get("name"), name)
