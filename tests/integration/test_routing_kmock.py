"""Traffic routing's shell (shell/routing.py, the reconcile's route writes, the finalizer's
restore) against KMock: the HTTPRoute written at a step, a 409 on its resourceVersion (a user
edit between the operator's read and its write), a rule the user adds mid-rollout, the route
restored on deletion, and a missing stable Service reported without touching the route.

KMock stores objects as plain JSON and knows nothing of resourceVersion; `RouteEmulator` adds
what these tests need of the apiserver: every HTTPRoute write bumps its resourceVersion, and a
merge patch carrying another resourceVersion than the stored one is refused with 409 Conflict
(as the apiserver does).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kmock as km
import pytest
from kmock._internal.k8s import KubernetesError
from kubernetes.client.exceptions import ApiException
from test_handlers_kmock import (
    DEPLOYMENTS,
    FTR,
    NS,
    Emulator,
    Shell,
    annotate,
    finalize,
    rollout_body,
    status_writes_of,
    summary,
    target_deployment,
    writes,
)

from ftrollout.shell import handlers
from ftrollout.shell.state import State

ROUTES = "gateway.networking.k8s.io/v1/httproutes"
SERVICES = "v1/services"
TRACK = "freethreaded.dev/track"
ROUTE_PATH = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/web"


class RouteEmulator(Emulator):
    """HTTPRoutes with a resourceVersion, bumped at each write and checked on patches."""

    async def _handle(self, request: Any) -> Any:
        resource = request.resource
        if (
            request.action == km.action.UPDATE
            and resource is not None
            and getattr(resource, "plural", None) == "httproutes"
            and request.name is not None
        ):
            key = (resource, request.namespace, request.name)
            if key in self._objects and not (stored := self._objects[key]).deleted:
                have = str(stored.get("metadata", {}).get("resourceVersion", ""))
                sent = (request.data.get("metadata") or {}).get("resourceVersion")
                if sent and sent != have:
                    raise KubernetesError(
                        status=409,
                        reason="Conflict",
                        message="the object has been modified; please apply your changes "
                        "to the latest version and try again",
                    )
                response = await super()._handle(request)
                stored.patch({"metadata": {"resourceVersion": str(int(have or 0) + 1)}})
                return response
        return await super()._handle(request)


pytestmark = [pytest.mark.timeout(30), pytest.mark.kmock(cls=RouteEmulator)]

STEPS = [
    {"weight": 10, "pause": {"duration": "1h"}},
    {"weight": 50, "pause": {"duration": "1h"}},
    {"weight": 100},
]


def path(value: str) -> list[dict[str, Any]]:
    return [{"path": {"type": "PathPrefix", "value": value}}]


def ref(name: str, weight: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": 80}
    if weight is not None:
        out["weight"] = weight
    return out


MAIN = {"matches": path("/"), "backendRefs": [ref("web", 1)]}
STATIC = {"matches": path("/static"), "backendRefs": [ref("cdn", 1)]}


def split(rule: dict[str, Any], w: int) -> dict[str, Any]:
    return {**rule, "backendRefs": [ref("web", 100 - w), ref("web-ft", w)]}


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def httproute(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NS, "resourceVersion": "1"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": copy.deepcopy(rules)},
    }


def routed(kmock: Any, *, stable: bool = True, **gateway: Any) -> Shell:
    target = target_deployment()
    target["spec"]["template"]["metadata"]["labels"][TRACK] = "standard"
    kmock.objects[DEPLOYMENTS, NS, "web"] = target
    if stable:
        kmock.objects[SERVICES, NS, "web"] = service("web", {"app": "web", TRACK: "standard"})
    kmock.objects[ROUTES, NS, "web"] = httproute([MAIN, STATIC])
    kmock.objects[FTR, NS, "web"] = rollout_body(
        steps=STEPS,
        trafficRouting={
            "gatewayAPI": {"httpRoutes": [{"name": "web"}], "stableService": "web", **gateway}
        },
    )
    return Shell(kmock)


def rules(kmock: Any) -> list[dict[str, Any]]:
    return copy.deepcopy(list(kmock.objects[ROUTES, NS, "web"]["spec"]["rules"]))


def version(kmock: Any) -> str:
    return str(kmock.objects[ROUTES, NS, "web"]["metadata"]["resourceVersion"])


def user_edit(kmock: Any, new_rules: list[dict[str, Any]]) -> None:
    """A person's edit of the route (kubectl): new rules, a new resourceVersion."""
    obj = copy.deepcopy(dict(kmock.objects[ROUTES, NS, "web"].raw))
    obj["spec"]["rules"] = copy.deepcopy(new_rules)
    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
    kmock.objects[ROUTES, NS, "web"] = obj


def act(kmock: Any, value: str) -> None:
    """`kubectl ftr <value>`: the action annotation, with a new resourceVersion (an action is
    told from one already consumed by it)."""
    annotate(kmock, value)
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
    kmock.objects[FTR, NS, "web"] = obj


def bump(kmock: Any) -> None:
    """Someone writes the route without changing its rules (a GitOps re-apply): only its
    resourceVersion moves, so the operator's next patch of what it read is refused."""
    user_edit(kmock, rules(kmock))


def route_patches(reqs: list[Any]) -> list[Any]:
    return [r for r in writes(reqs) if r.url.path == ROUTE_PATH]


async def at_first_step(shell: Shell) -> None:
    """The twin's pod Ready: the route at 10 %, read back, the step reached."""
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    await shell.reconcile()


# ------------------------------------------------------------------------------- tests


async def test_the_route_is_written_at_a_step_once_the_free_threaded_pod_is_ready(
    kmock: Any,
) -> None:
    shell = routed(kmock)
    await shell.reconcile()
    first = writes(shell.new_requests())
    # The free-threaded Service is created; the route is not touched before a Ready pod.
    (created,) = [r for r in first if r.url.path == f"/api/v1/namespaces/{NS}/services"]
    assert created.data["metadata"]["name"] == "web-ft"
    assert created.data["spec"]["selector"] == {
        "app": "web",
        TRACK: "free-threaded",
        "freethreaded.dev/rollout": "web",
    }
    assert route_patches(first) == []
    assert rules(kmock) == [MAIN, STATIC]

    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    (patch,) = route_patches(reqs)
    # The status that records the edit goes first; the patch carries the version read.
    paths = summary(reqs)
    assert paths.index(f"PATCH {ROUTE_PATH}") > next(
        i for i, p in enumerate(paths) if p.endswith("/status")
    )
    assert patch.data["metadata"] == {"resourceVersion": "1"}
    assert patch.data["spec"]["rules"] == [split(MAIN, 10), STATIC]
    assert rules(kmock) == [split(MAIN, 10), STATIC]
    # With routing the standard track keeps N: a request share is not a pod share.
    assert not any(r.url.path.endswith("/deployments/web/scale") for r in reqs)
    st = shell.body()["status"]
    assert st["trafficRouting"]["weight"] == 10
    (record,) = st["trafficRouting"]["routes"]
    assert record["name"] == "web"
    assert len(record["rules"]) == 1

    await shell.reconcile()  # read back: the step is reached; the route is not written again
    again = writes(shell.new_requests())
    assert route_patches(again) == []
    assert "StepReached" in [r.data["reason"] for r in again if r.url.path.endswith("/events")]


async def test_a_conflict_on_the_route_is_retried_from_the_users_edit_without_duplicates(
    kmock: Any,
) -> None:
    """The route changes between the operator's read and its write (a person, a GitOps sync):
    the patch is refused (409), the reconcile fails (the daemon retries), and the retry starts
    from the route as it is now: the user's rule kept, every split rule once."""
    shell = routed(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    user_rule = {"matches": path("/new"), "backendRefs": [ref("web", 1)]}
    get_route = shell.state.kube.get_httproute

    async def read_then_someone_edits(namespace: str, name: str) -> dict[str, Any] | None:
        obj = await get_route(namespace, name)
        shell.state.kube.get_httproute = get_route  # type: ignore[method-assign]
        user_edit(kmock, [MAIN, STATIC, user_rule])
        return obj

    shell.state.kube.get_httproute = read_then_someone_edits  # type: ignore[method-assign]
    shell.new_requests()
    with pytest.raises(ApiException) as exc:
        await shell.reconcile()
    assert exc.value.status == 409
    assert rules(kmock) == [MAIN, STATIC, user_rule]  # nothing of the operator's landed

    await shell.reconcile()  # the daemon's retry
    assert rules(kmock) == [split(MAIN, 10), STATIC, split(user_rule, 10)]
    for _ in range(3):
        await shell.reconcile()
    assert rules(kmock) == [split(MAIN, 10), STATIC, split(user_rule, 10)]
    assert sum("web-ft" in str(r) for r in rules(kmock)) == 2
    # And the undo is exact: rollback gives the user's route back, their rule included.
    annotate(kmock, "rollback")
    await shell.reconcile()
    await shell.reconcile()
    assert rules(kmock) == [MAIN, STATIC, user_rule]


async def test_a_conflict_with_matches_adds_the_rule_once(kmock: Any) -> None:
    """With `matches` the operator adds a rule: a 409 and its retry, with the status already
    recording the added rule, must not add it twice."""
    match = {"path": {"type": "PathPrefix", "value": "/catalog"}, "method": "GET"}
    shell = routed(kmock, matches=[match])
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    get_route = shell.state.kube.get_httproute

    async def read_then_bump(namespace: str, name: str) -> dict[str, Any] | None:
        obj = await get_route(namespace, name)
        shell.state.kube.get_httproute = get_route  # type: ignore[method-assign]
        bump(kmock)
        return obj

    shell.state.kube.get_httproute = read_then_bump  # type: ignore[method-assign]
    with pytest.raises(ApiException):
        await shell.reconcile()
    assert rules(kmock) == [MAIN, STATIC]
    recorded = shell.body()["status"]["trafficRouting"]["routes"][0]["rules"]
    assert [r.get("added") for r in recorded] == [True]
    for _ in range(3):
        await shell.reconcile()
    added = {"matches": [match], "backendRefs": [ref("web", 90), ref("web-ft", 10)]}
    assert rules(kmock) == [added, MAIN, STATIC]


async def test_a_rule_the_user_adds_mid_rollout_is_kept_and_restored_exactly(
    kmock: Any,
) -> None:
    shell = routed(kmock)
    await at_first_step(shell)
    assert rules(kmock) == [split(MAIN, 10), STATIC]
    user_rule = {"matches": path("/beta"), "backendRefs": [ref("web", 3)]}
    other = {"matches": path("/img"), "backendRefs": [ref("cdn", 1)]}
    user_edit(kmock, [*rules(kmock), user_rule, other])
    await shell.reconcile()
    assert rules(kmock) == [split(MAIN, 10), STATIC, split(user_rule, 10), other]

    annotate(kmock, "promote")  # step 2: every split rule moves to 50, the others stay
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    for _ in range(3):
        await shell.reconcile()
    assert rules(kmock) == [split(MAIN, 50), STATIC, split(user_rule, 50), other]

    shell.new_requests()
    await finalize(shell)
    done = writes(shell.new_requests())
    # Deletion: the route back exactly as the user has it (their weight 3 included), then
    # the free-threaded Service, then the twin.
    assert rules(kmock) == [MAIN, STATIC, user_rule, other]
    order = [p for p in summary(done) if "/httproutes/" in p or "web-ft" in p]
    assert order == [
        f"PATCH {ROUTE_PATH}",
        f"DELETE /api/v1/namespaces/{NS}/services/web-ft",
        f"DELETE /apis/apps/v1/namespaces/{NS}/deployments/web-ft",
    ]


async def test_deletion_restores_the_route_even_after_a_conflict(kmock: Any) -> None:
    shell = routed(kmock)
    await at_first_step(shell)
    get_route = shell.state.kube.get_httproute

    async def read_then_bump(namespace: str, name: str) -> dict[str, Any] | None:
        obj = await get_route(namespace, name)
        shell.state.kube.get_httproute = get_route  # type: ignore[method-assign]
        bump(kmock)
        return obj

    shell.state.kube.get_httproute = read_then_bump  # type: ignore[method-assign]
    shell.new_requests()
    with pytest.raises(ApiException) as exc:
        await finalize(shell)
    assert exc.value.status == 409
    assert rules(kmock) == [split(MAIN, 10), STATIC]
    # Nothing is removed before the route is restored.
    assert not any("DELETE" in p for p in summary(writes(shell.new_requests())))
    await finalize(shell)  # kopf calls the handler again
    assert rules(kmock) == [MAIN, STATIC]
    assert [p for p in summary(writes(shell.new_requests())) if "DELETE" in p] == [
        f"DELETE /api/v1/namespaces/{NS}/services/web-ft",
        f"DELETE /apis/apps/v1/namespaces/{NS}/deployments/web-ft",
    ]


async def test_a_missing_stable_service_is_reported_and_the_route_left_alone(
    kmock: Any,
) -> None:
    shell = routed(kmock, stable=False)
    for _ in range(3):
        await shell.reconcile()
    reqs = shell.new_requests()
    assert route_patches(reqs) == []
    assert rules(kmock) == [MAIN, STATIC]
    assert (SERVICES, NS, "web-ft") not in kmock.objects
    st = shell.body()["status"]
    cond = {c["type"]: c for c in st["conditions"]}["TrafficRouted"]
    assert (cond["status"], cond["reason"]) == ("False", "RoutingError")
    assert "stable Service 'web' not found" in cond["message"]
    # The rollout waits before step 1, saying why; the standard track keeps its capacity.
    assert st["phase"] == "Pending"
    assert "stable Service 'web' not found" in st["message"]
    assert not any(r.url.path.endswith("/deployments/web/scale") for r in writes(reqs))

    # The Service appears: the rollout starts, and the route is split once a pod is Ready.
    kmock.objects[SERVICES, NS, "web"] = service("web", {"app": "web", TRACK: "standard"})
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    assert rules(kmock) == [split(MAIN, 10), STATIC]
    statuses = status_writes_of(shell.new_requests())
    cond = {c["type"]: c for c in statuses[-1]["conditions"]}["TrafficRouted"]
    assert cond["status"] == "True"


async def test_rollback_restores_the_route_first_even_through_a_conflict(kmock: Any) -> None:
    """Rollback: the route goes back to the standard pods before the twin is scaled down; a
    409 on the restoring patch keeps the record and the free-threaded replicas until the
    route is seen restored."""
    shell = routed(kmock)
    await at_first_step(shell)
    get_route = shell.state.kube.get_httproute

    async def read_then_bump(namespace: str, name: str) -> dict[str, Any] | None:
        obj = await get_route(namespace, name)
        shell.state.kube.get_httproute = get_route  # type: ignore[method-assign]
        bump(kmock)
        return obj

    annotate(kmock, "rollback")
    shell.state.kube.get_httproute = read_then_bump  # type: ignore[method-assign]
    shell.new_requests()
    with pytest.raises(ApiException) as exc:
        await shell.reconcile()
    assert exc.value.status == 409
    assert rules(kmock) == [split(MAIN, 10), STATIC]
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["spec"]["replicas"] == 1
    assert shell.body()["status"]["trafficRouting"]["routes"]  # the record is kept

    await shell.reconcile()  # the retry restores the route; the twin still serves meanwhile
    assert rules(kmock) == [MAIN, STATIC]
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["spec"]["replicas"] == 1
    await shell.reconcile()  # the route is seen restored: now the twin goes
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["spec"]["replicas"] == 0
    await shell.reconcile()
    st = shell.body()["status"]
    assert st["phase"] == "RolledBack"
    assert not (st.get("trafficRouting") or {}).get("routes")


async def test_deletion_with_the_record_lost_still_takes_the_free_threaded_backend_out(
    kmock: Any,
) -> None:
    """The status lost its record (restored from a backup, written over by hand): deletion
    must not leave the route sending to the free-threaded Service it is about to delete (every
    request of that share would fail). Without the record it takes that backend out (the
    user's original weights are not known) and the rule added for `matches` goes."""
    match = {"path": {"type": "PathPrefix", "value": "/catalog"}, "method": "GET"}
    shell = routed(kmock, matches=[match])
    await at_first_step(shell)
    assert len(rules(kmock)) == 3
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["status"].pop("trafficRouting")
    kmock.objects[FTR, NS, "web"] = obj
    await finalize(shell)
    assert rules(kmock) == [MAIN, STATIC]


async def test_promotion_moves_the_route_to_100_before_the_standard_track_goes(
    kmock: Any,
) -> None:
    shell = routed(kmock)
    await at_first_step(shell)
    act(kmock, "promote")  # to 50 %
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    for _ in range(2):
        await shell.reconcile()
    assert rules(kmock) == [split(MAIN, 50), STATIC]
    act(kmock, "promote")  # to 100 %: all N free-threaded
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=10, readyReplicas=10)
    shell.new_requests()
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    assert rules(kmock) == [split(MAIN, 100), STATIC]
    # The standard track keeps N until the route is seen at 100.
    assert not any(r.url.path.endswith("/deployments/web/scale") for r in reqs)
    for _ in range(3):
        await shell.reconcile()
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 0
    assert shell.body()["status"]["phase"] == "Promoted"
    assert rules(kmock) == [split(MAIN, 100), STATIC]


def remove_routing(kmock: Any) -> None:
    """`spec.trafficRouting` deleted from the rollout (kubectl edit, a GitOps change)."""
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    del obj["spec"]["trafficRouting"]
    obj["metadata"]["generation"] = 2
    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
    kmock.objects[FTR, NS, "web"] = obj


async def at_half(kmock: Any, shell: Shell) -> None:
    await at_first_step(shell)
    act(kmock, "promote")
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    for _ in range(2):
        await shell.reconcile()
    assert rules(kmock) == [split(MAIN, 50), STATIC]
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 10


async def test_removing_routing_keeps_the_standard_track_while_it_serves_everything(
    kmock: Any,
) -> None:
    """At 50 % with routing the standard track is at N. Routing removed from the spec: the route
    is restored (all requests to the stable Service, which selects standard pods only); the
    replica split would lower the standard track to N - 5, five pods serving what ten did while
    the five free-threaded pods get nothing. It stays at N and the rollout holds, saying why."""
    shell = routed(kmock)
    await at_half(kmock, shell)
    remove_routing(kmock)
    shell.new_requests()
    for _ in range(4):
        await shell.reconcile()
    reqs = writes(shell.new_requests())
    assert rules(kmock) == [MAIN, STATIC]
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 10
    assert not any(r.url.path.endswith("/deployments/web/scale") for r in reqs)
    st = shell.body()["status"]
    assert st["phase"] == "Paused"
    assert "spec.trafficRouting" in st["message"]
    cond = {c["type"]: c for c in st["conditions"]}["TrafficRouted"]
    assert (cond["status"], cond["reason"]) == ("False", "RoutingRemoved")
    (event,) = [
        r.data for r in reqs if r.url.path.endswith("/events") and r.data["reason"] == (
            "TrafficRoutingRemoved"
        )
    ]  # fmt: skip
    assert event["type"] == "Warning"
    assert "selects only the standard pods" in event["message"]
    assert "kubectl ftr rollback" in event["message"]
    # The user's Service is read, never written.
    assert not [r for r in reqs if "/services/web" in r.url.path and "web-ft" not in r.url.path]


async def test_promote_after_routing_was_removed_leaves_the_stable_service_its_pods(
    kmock: Any,
) -> None:
    """The route restored sends everything to the stable Service (standard pods only): a
    promotion would scale those to 0 and leave the Service without a Ready endpoint."""
    shell = routed(kmock)
    await at_half(kmock, shell)
    remove_routing(kmock)
    for _ in range(2):
        await shell.reconcile()
    act(kmock, "promote-full")
    shell.new_requests()
    for _ in range(3):
        await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=10, readyReplicas=10)  # should anything ask
    for _ in range(3):
        await shell.reconcile()
    reqs = writes(shell.new_requests())
    assert rules(kmock) == [MAIN, STATIC]
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 10
    assert not any(r.url.path.endswith("/deployments/web/scale") for r in reqs)
    st = shell.body()["status"]
    assert st["phase"] == "Paused"
    assert "promotedAt" not in st
    (ignored,) = [
        r.data["message"] for r in reqs if r.url.path.endswith("/events") and r.data["reason"] == (
            "ActionIgnored"
        )
    ]  # fmt: skip
    assert "spec.trafficRouting" in ignored


async def test_a_rule_another_rollout_splits_is_refused_naming_it(kmock: Any) -> None:
    shell = routed(kmock)
    shared = {
        "matches": path("/"),
        "backendRefs": [ref("web", 100), ref("shop", 90), ref("shop-ft", 10)],
    }
    kmock.objects[ROUTES, NS, "web"] = httproute([shared, STATIC])
    shell.state.cache.set_rollout_target(NS, "shop", "shop")  # the watch saw rollout shop
    for _ in range(3):
        await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    assert route_patches(shell.new_requests()) == []
    assert rules(kmock) == [shared, STATIC]
    st = shell.body()["status"]
    cond = {c["type"]: c for c in st["conditions"]}["TrafficRouted"]
    assert (cond["status"], cond["reason"]) == ("False", "RoutingError")
    assert "rollout 'shop'" in cond["message"]
    assert st["phase"] == "Pending"


def test_an_httproute_change_wakes_the_rollouts_naming_the_route() -> None:
    # A GitOps re-apply of the route after promotion must be undone within one event
    # round-trip, not at the next resync (the standard track has no pods then).
    watched = {
        (h.selector.group, h.selector.plural or h.selector.any_name)
        for h in handlers.kopf.get_default_registry()._watching.get_all_handlers()
        if h.selector is not None
    }
    assert ("gateway.networking.k8s.io", "httproutes") in watched
    state = State()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "STATE", state)
        body = rollout_body()
        body["spec"]["trafficRouting"] = {
            "gatewayAPI": {"httpRoutes": [{"name": "web"}], "stableService": "web"}
        }
        body["status"] = {"trafficRouting": {"weight": 10, "routes": [{"name": "old"}]}}
        other = rollout_body()
        other["metadata"]["name"] = "other"

        async def run() -> tuple[bool, bool, bool]:
            for obj in (body, other):
                state.pokes[(NS, obj["metadata"]["name"])] = asyncio.Event()
                await handlers.rollout_event(
                    event={"type": "ADDED", "object": obj},
                    name=obj["metadata"]["name"],
                    namespace=NS,
                    spec=obj["spec"],
                )
                state.pokes[(NS, obj["metadata"]["name"])].clear()
            out = []
            for route in ("web", "old"):
                route_obj = {"metadata": {"name": route, "namespace": NS}, "spec": {}}
                await handlers.httproute_event(
                    event={"type": "MODIFIED", "object": route_obj}, body=route_obj
                )
                out.append(state.pokes[(NS, "web")].is_set())
                state.pokes[(NS, "web")].clear()
            return out[0], out[1], state.pokes[(NS, "other")].is_set()

        assert asyncio.run(run()) == (True, True, False)
