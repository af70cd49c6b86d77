"""Traffic routing with Gateway API on the local cluster: the HTTPRoute at every step, after a
user edit mid-rollout, after a rollback and after the rollout is deleted.

The Gateway API standard-channel CRDs come from the gateway-api Go module
(`localcluster.gateway_api_crds`). A GatewayClass and a Gateway exist as objects only: no
Gateway implementation runs here (they all need a data plane — Envoy, NGINX, HAProxy — as
containers or C++ builds; kwok pods serve no traffic either), so what is asserted is the route
the operator writes, not a measured split of requests.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from e2e_operator import (
    OperatorProcess,
    annotate,
    apply,
    deployment,
    get,
    phase_is,
    replicas,
    rollout,
    wait_for,
)

from ftrollout_dev.localcluster import LocalCluster, gateway_api_crds

pytestmark = pytest.mark.e2e
N = 4
TRACK = "freethreaded.dev/track"


@pytest.fixture(scope="module")
def gateway_crds(cluster: LocalCluster) -> LocalCluster:
    try:
        crds = gateway_api_crds()
    except Exception as exc:  # no Go, no network: the CRDs cannot be had
        pytest.skip(f"Gateway API CRDs not available: {exc}")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/httproutes.gateway.networking.k8s.io",
        "--timeout=60s",
    )  # fmt: skip
    return cluster


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def backend(name: str, weight: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": 80}
    out["weight"] = 1 if weight is None else weight
    return out


def path(value: str) -> list[dict[str, Any]]:
    return [{"path": {"type": "PathPrefix", "value": value}}]


def route_rules(cluster: LocalCluster, ns: str) -> list[dict[str, Any]]:
    obj = get(cluster, ns, "httproute", "web") or {}
    rules: list[dict[str, Any]] = obj["spec"]["rules"]
    return rules


def rules_are(cluster: LocalCluster, ns: str, expected: list[dict[str, Any]]) -> bool:
    return route_rules(cluster, ns) == expected


def split(rule: dict[str, Any], w: int) -> dict[str, Any]:
    return {**rule, "backendRefs": [backend("web", 100 - w), backend("web-ft", w)]}


def test_the_route_follows_the_rollout_and_comes_back_exactly(
    gateway_crds: LocalCluster, operator: OperatorProcess, cluster: LocalCluster, namespace: str
) -> None:
    ns = namespace
    app = deployment("web", N)
    app["spec"]["template"]["metadata"]["labels"][TRACK] = "standard"
    apply(cluster, ns, app)
    apply(cluster, ns, service("web", {"app": "web", TRACK: "standard"}))
    apply(cluster, ns, service("cdn", {"app": "cdn"}))
    apply(cluster, ns, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "example"}, "spec": {"controllerName": "example.com/none"},
    })  # fmt: skip
    apply(cluster, ns, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": "example",
                 "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
    })  # fmt: skip
    # Two rules: one to the stable Service, one to another Service that must stay as it is.
    apply(cluster, ns, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [
            {"matches": path("/"), "backendRefs": [{"name": "web", "port": 80}]},
            {"matches": path("/static"), "backendRefs": [{"name": "cdn", "port": 80}]},
        ]},
    })  # fmt: skip
    wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 90, "standard pods Ready")
    original = copy.deepcopy(route_rules(cluster, ns))  # as stored, with the API's defaults
    main, static = original

    doc = rollout(
        "web", "web",
        [{"weight": 25, "pause": {}}, {"weight": 50, "pause": {}}, {"weight": 100}],
        trafficRouting={"gatewayAPI": {"httpRoutes": [{"name": "web"}], "stableService": "web"}},
    )  # fmt: skip
    apply(cluster, ns, doc)

    # Step 1: 25 % of the requests, one free-threaded pod, the standard track still at N.
    wait_for(lambda: rules_are(cluster, ns, [split(main, 25), static]), 90, "route at 25 %")
    wait_for(lambda: phase_is(cluster, ns, "Paused", 0), 60, "step 1 reached")
    assert replicas(cluster, ns, "web") == (N, N)
    assert replicas(cluster, ns, "web-ft") == (1, 1)
    ft_svc = get(cluster, ns, "service", "web-ft") or {}
    assert ft_svc["spec"]["selector"] == {
        "app": "web",
        TRACK: "free-threaded",
        "freethreaded.dev/rollout": "web",
    }

    # A rule the user adds mid-rollout is kept (and split: it sends to the stable Service).
    user_rule = {"matches": path("/new"), "backendRefs": [{"name": "web", "port": 80}]}
    rules = route_rules(cluster, ns)
    cluster.kubectl(
        "patch", "httproute", "web", "-n", ns, "--type=json", "-p",
        f'[{{"op": "add", "path": "/spec/rules/{len(rules)}", "value": {_json(user_rule)}}}]',
    )  # fmt: skip
    stored_user_rule = route_rules(cluster, ns)[-1]
    user_original = {**stored_user_rule, "backendRefs": [backend("web")]}

    annotate(cluster, ns, "promote")
    expected_50 = [split(main, 50), static, split(user_original, 50)]
    wait_for(lambda: rules_are(cluster, ns, expected_50), 90, "route at 50 %, user rule kept")
    wait_for(lambda: phase_is(cluster, ns, "Paused", 1), 60, "step 2 reached")

    # Rollback: the route exactly as the user has it now, then the free-threaded pods go.
    annotate(cluster, ns, "rollback")
    wait_for(lambda: rules_are(cluster, ns, [main, static, user_original]), 60, "route restored")
    wait_for(lambda: replicas(cluster, ns, "web-ft") == (0, 0), 60, "free-threaded scaled to 0")

    # Again, then delete the rollout mid-step: the route comes back exactly.
    annotate(cluster, ns, "retry")
    wait_for(
        lambda: rules_are(cluster, ns, [split(main, 25), static, split(user_original, 25)]),
        90,
        "route at 25 % after retry",
    )
    cluster.kubectl("delete", "ftr", "web", "-n", ns, "--wait=true", "--timeout=90s")
    assert route_rules(cluster, ns) == [main, static, user_original]
    assert get(cluster, ns, "service", "web-ft") is None
    assert replicas(cluster, ns, "web") == (N, N)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
