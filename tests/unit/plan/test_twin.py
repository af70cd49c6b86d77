"""The twin Deployment: the target's template with one image swapped, its own track, the probe."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftrollout.model import api
from ftrollout.plan.twin import (
    LABEL_ROLLOUT,
    LABEL_TRACK,
    PROBE_MOUNT,
    PROBE_PORT_NAME,
    TwinError,
    split,
    twin_manifest,
    twin_pods_may_be_replaced,
)
from ftrollout.probe import core as probe_core

TARGET: dict[str, Any] = {
    "metadata": {"name": "checkout", "namespace": "shop", "labels": {"app": "checkout"}},
    "spec": {
        "replicas": 10,
        "selector": {"matchLabels": {"app": "checkout"}},
        "strategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": {"app": "checkout", "tier": "web"}},
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "envoy:1"},
                    {
                        "name": "app",
                        "image": "checkout:2.4",
                        "env": [{"name": "PYTHONPATH", "value": "/srv"}],
                    },
                ]
            },
        },
    },
}


def twin(**ft: Any) -> dict[str, Any]:
    return twin_from(TARGET, **ft)


def twin_from(target: dict[str, Any], **ft: Any) -> dict[str, Any]:
    spec = api.FreeThreadedSpec.model_validate({"image": "checkout:2.4-py3.14t", **ft})
    return twin_manifest(
        rollout_name="checkout",
        rollout_uid="uid-1",
        target=copy.deepcopy(target),
        spec=spec,
        revision="rev1",
        replicas=3,
        probe_configmap="ftrollout-probe" if spec.probe.enabled else None,
    )


def test_twin_swaps_only_the_named_container_and_keeps_the_target_labels() -> None:
    t = twin(container="app")
    containers = t["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == ["envoy:1", "checkout:2.4-py3.14t"]
    labels = t["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "checkout"  # the target's Services select the twin's pods too
    assert labels["tier"] == "web"
    assert labels[LABEL_TRACK] == "free-threaded"
    assert labels[LABEL_ROLLOUT] == "checkout"
    assert t["spec"]["selector"]["matchLabels"] == {
        "app": "checkout",
        LABEL_TRACK: "free-threaded",
        LABEL_ROLLOUT: "checkout",
    }
    assert t["metadata"]["name"] == "checkout-ft"
    assert t["spec"]["replicas"] == 3
    assert t["spec"]["strategy"] == {"type": "RollingUpdate"}
    owner = t["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "FreeThreadedRollout",
        "checkout",
        "uid-1",
        True,
    )
    assert (
        TARGET["spec"]["template"]["spec"]["containers"][1]["image"] == "checkout:2.4"
    )  # not mutated


def test_default_container_is_the_first() -> None:
    assert twin()["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:2.4-py3.14t"


def test_unknown_container_names_the_field_and_the_choices() -> None:
    with pytest.raises(TwinError) as info:
        twin(container="nope")
    assert info.value.field == "spec.freeThreaded.container"
    assert "sidecar, app" in info.value.message


def test_probe_is_mounted_and_loaded_through_pythonpath_without_losing_the_apps_path() -> None:
    t = twin(container="app", probe={"enabled": True, "port": 9500})
    pod = t["spec"]["template"]
    app = pod["spec"]["containers"][1]
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["PYTHONPATH"] == f"{PROBE_MOUNT}:/srv"
    assert env["FTR_PROBE_PORT"] == "9500"
    assert {"name": "ftrollout-probe", "mountPath": PROBE_MOUNT, "readOnly": True} in app[
        "volumeMounts"
    ]
    assert {"name": "ftrollout-probe", "configMap": {"name": "ftrollout-probe"}} in pod["spec"][
        "volumes"
    ]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9500"
    assert "volumeMounts" not in pod["spec"]["containers"][0]  # other containers untouched


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=100))
def test_split_is_ceil_and_sums_to_n(n: int, weight: int) -> None:
    std, ft = split(n, weight)
    assert std + ft == n
    assert ft == -(-n * weight // 100)
    if weight == 100:
        assert std == 0


def test_probe_port_is_a_named_container_port_next_to_the_apps() -> None:
    target = copy.deepcopy(TARGET)
    app = target["spec"]["template"]["spec"]["containers"][1]
    app["ports"] = [{"name": "http", "containerPort": 8000}]
    t = twin_from(target, container="app", probe={"enabled": True, "port": 9500})
    containers = t["spec"]["template"]["spec"]["containers"]
    assert containers[1]["ports"] == [
        {"name": "http", "containerPort": 8000},
        {"name": PROBE_PORT_NAME, "containerPort": 9500, "protocol": "TCP"},
    ]
    assert len(PROBE_PORT_NAME) <= 15  # the API's limit on port names
    assert "ports" not in containers[0]
    again = twin_from(t, container="app", probe={"enabled": True, "port": 9500})
    assert again["spec"]["template"]["spec"]["containers"][1]["ports"] == containers[1]["ports"]


def test_probe_port_defaults_to_the_probes_default() -> None:
    t = twin(container="app", probe={"enabled": True})
    (probe_port,) = [
        p
        for p in t["spec"]["template"]["spec"]["containers"][1]["ports"]
        if p["name"] == PROBE_PORT_NAME
    ]
    assert probe_port["containerPort"] == probe_core.DEFAULT_PORT != 9464


def test_the_apps_scrape_annotations_are_never_overwritten() -> None:
    target = copy.deepcopy(TARGET)
    own = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/app-metrics",
        "team": "payments",
    }
    target["spec"]["template"]["metadata"]["annotations"] = dict(own)
    t = twin_from(target, container="app", probe={"enabled": True, "port": 9500})
    annotations = t["spec"]["template"]["metadata"]["annotations"]
    assert {k: annotations[k] for k in own} == own
    assert set(annotations) == {*own, "freethreaded.dev/revision"}


def test_a_partial_set_of_the_apps_scrape_annotations_is_kept_as_is() -> None:
    target = copy.deepcopy(TARGET)
    target["spec"]["template"]["metadata"]["annotations"] = {"prometheus.io/scrape": "true"}
    t = twin_from(target, container="app", probe={"enabled": True, "port": 9500})
    annotations = t["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/port" not in annotations  # Prometheus keeps scraping the app's ports


def test_without_scrape_annotations_of_its_own_the_probes_are_added() -> None:
    t = twin(container="app", probe={"enabled": True, "port": 9500})
    annotations = t["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9500"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "prometheus.io/port" not in twin()["spec"]["template"]["metadata"]["annotations"]


def test_value_from_pythonpath_moves_to_its_own_variable_in_place() -> None:
    target = copy.deepcopy(TARGET)
    ref = {"configMapKeyRef": {"name": "cfg", "key": "path"}}
    target["spec"]["template"]["spec"]["containers"][1]["env"] = [
        {"name": "A", "value": "1"},
        {"name": "PYTHONPATH", "valueFrom": ref},
        {"name": "B", "value": "$(PYTHONPATH)/extra"},
    ]
    t = twin_from(target, container="app", probe={"enabled": True, "port": 9500})
    env = t["spec"]["template"]["spec"]["containers"][1]["env"]
    assert env == [
        {"name": "A", "value": "1"},
        {"name": "FTR_APP_PYTHONPATH", "valueFrom": ref},
        {"name": "PYTHONPATH", "value": f"{PROBE_MOUNT}:$(FTR_APP_PYTHONPATH)"},
        {"name": "B", "value": "$(PYTHONPATH)/extra"},
        {"name": "FTR_PROBE_PORT", "value": "9500"},
    ]


@pytest.mark.parametrize(
    ("standard_ready", "twin_ready", "ok"),
    [(5, 5, False), (9, 5, False), (10, 5, True), (12, 5, True), (0, 0, True), (5, 0, True)],
)
def test_the_twins_pods_are_replaced_only_when_no_ready_capacity_is_lost(
    standard_ready: int, twin_ready: int, ok: bool
) -> None:
    """A new revision re-templates the twin (Recreate: all its pods die at once) only once the
    standard track alone has N = 10 Ready, or when the twin has no Ready pod."""
    assert twin_pods_may_be_replaced(10, standard_ready, twin_ready) is ok
