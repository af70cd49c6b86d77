"""The free-threaded Service the operator creates, and the stable Service check."""

from __future__ import annotations

from ftrollout.plan import twin as workloads
from ftrollout.shell.routing import ft_service_manifest, selects_twin_pods

ROLLOUT = {"metadata": {"name": "shop", "namespace": "ns", "uid": "u-1"}}
STABLE = {
    "metadata": {"name": "app"},
    "spec": {
        "selector": {"app": "shop", workloads.LABEL_TRACK: workloads.TRACK_STANDARD},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        "clusterIP": "10.0.0.1",
    },
}


def test_ft_service_selects_only_the_twins_pods_on_the_stable_ports() -> None:
    svc = ft_service_manifest(ROLLOUT, STABLE, "app-ft")
    assert svc["spec"] == {
        "selector": {
            "app": "shop",
            workloads.LABEL_TRACK: workloads.TRACK_FREE_THREADED,
            workloads.LABEL_ROLLOUT: "shop",
        },
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
    }
    (owner,) = svc["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"]) == ("u-1", True)


def test_a_stable_service_that_would_also_select_free_threaded_pods_is_reported() -> None:
    template = {"app": "shop", workloads.LABEL_TRACK: workloads.TRACK_STANDARD}
    assert not selects_twin_pods(STABLE, template, "shop")
    plain = {"spec": {"selector": {"app": "shop"}}}
    assert selects_twin_pods(plain, template, "shop")
