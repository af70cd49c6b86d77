"""Autoscaled targets (issue 18, item 1): the rollout's scale subresource sets the total.

The HPA (or `kubectl scale ftr/NAME`) scales the FreeThreadedRollout, as Argo Rollouts' HPA scales
a Rollout; the operator splits the total. The local cluster has no kubelet and no metrics-server:
the real HPA controller of kube-controller-manager reads an external metric the test sets,
served by ftrollout_dev.metricsapi through the aggregation layer, and scales the rollout up and
down mid-step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from e2e_operator import (
    OperatorProcess,
    annotate,
    apply,
    events,
    ftr_status,
    phase_is,
    ready_deployment,
    rollout,
    split_is,
    wait_for,
)
from test_engine import CapacityWatch

from ftrollout_dev.localcluster import LocalCluster
from ftrollout_dev.metricsapi import ExternalMetricsServer

pytestmark = pytest.mark.e2e
N = 10


def hpa(name: str) -> dict[str, object]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "freethreaded.dev/v1alpha1",
                "kind": "FreeThreadedRollout",
                "name": name,
            },
            "minReplicas": 2,
            "maxReplicas": 30,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 60},
                    },
                }
            ],
        },
    }


def test_kubectl_scale_of_the_rollout_mid_step_is_split_and_an_hpa_resolves_it(
    operator: OperatorProcess, cluster: LocalCluster, namespace: str
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    doc = rollout("web", "web", [{"weight": 50, "pause": {}}, {"weight": 100}])
    doc["spec"]["replicas"] = N
    apply(cluster, ns, doc)
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 0) and split_is(cluster, ns, 5, 5),
        60,
        "paused at 50 %",
    )
    with CapacityWatch(cluster, ns, "web") as cap:
        cluster.kubectl("scale", "ftr", "web", "-n", ns, "--replicas=16")
        wait_for(lambda: split_is(cluster, ns, 8, 8), 60, "50 % of 16: 8 + 8")
    assert cap.min_ready >= N
    st = ftr_status(cluster, ns, "web")
    assert st["replicas"]["target"] == 16
    assert st["selector"] == "app=web"
    assert "RolloutScaled" in [e["reason"] for e in events(cluster, ns, "web")]
    scale = json.loads(
        cluster.kubectl(
            "get", "--raw",
            f"/apis/freethreaded.dev/v1alpha1/namespaces/{ns}/freethreadedrollouts/web/scale",
        ).stdout
    )  # fmt: skip
    assert scale["spec"]["replicas"] == 16
    assert scale["status"] == {"replicas": 16, "selector": "app=web"}

    # The HPA controller finds the rollout's scale subresource (AbleToScale); without a metrics
    # source it cannot compute a recommendation and leaves the total alone.
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(hpa("web")))

    def able_to_scale() -> dict[str, str] | None:
        out = json.loads(cluster.kubectl("get", "hpa", "web", "-n", ns, "-o", "json").stdout)
        for c in (out.get("status") or {}).get("conditions") or []:
            if c["type"] == "AbleToScale":
                last["cond"] = f"{c['status']} {c['reason']}: {c.get('message')}"
                if c["status"] == "True":
                    return {"status": c["status"], "reason": c["reason"]}
        return None

    last: dict[str, str] = {}
    cond = wait_for(able_to_scale, 120, "the HPA's AbleToScale condition", interval=2)
    assert cond == {"status": "True", "reason": "SucceededGetScale"}, last
    assert split_is(cluster, ns, 8, 8)


METRIC = "ftr_queue_depth"


def external_hpa(name: str, lo: int, hi: int) -> dict[str, object]:
    """An HPA on the rollout reading an external metric with an AverageValue target of 1: it
    asks for ceil(value) replicas (clamped to lo..hi), whatever the pods report. No
    stabilization window and generous policies, so each change is one HPA sync away."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "freethreaded.dev/v1alpha1",
                "kind": "FreeThreadedRollout",
                "name": name,
            },
            "minReplicas": lo,
            "maxReplicas": hi,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": METRIC},
                        "target": {"type": "AverageValue", "averageValue": "1"},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 1000, "periodSeconds": 1}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}],
                },
            },
        },
    }


def hpa_desired(cluster: LocalCluster, ns: str, name: str) -> int | None:
    out = json.loads(cluster.kubectl("get", "hpa", name, "-n", ns, "-o", "json").stdout)
    status = out.get("status") or {}
    active = any(
        c["type"] == "ScalingActive" and c["status"] == "True"
        for c in status.get("conditions") or []
    )
    return int(status["desiredReplicas"]) if active and "desiredReplicas" in status else None


@pytest.fixture
def external_metrics(cluster: LocalCluster) -> Iterator[ExternalMetricsServer]:
    with ExternalMetricsServer(cluster) as server:
        yield server


def test_the_real_hpa_scales_the_rollout_up_and_down_mid_step(
    operator: OperatorProcess,
    cluster: LocalCluster,
    namespace: str,
    external_metrics: ExternalMetricsServer,
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, 4)
    doc = rollout("web", "web", [{"weight": 50, "pause": {}}, {"weight": 100}])
    doc["spec"]["replicas"] = 4
    apply(cluster, ns, doc)
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 0) and split_is(cluster, ns, 2, 2),
        60,
        "paused at 50 % of 4",
    )
    external_metrics.set(ns, METRIC, 4)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(external_hpa("web", 4, 12)))
    # The HPA controller reads the metric through the aggregation layer and the rollout's scale
    # subresource: its recommendation is the current total.
    assert wait_for(lambda: hpa_desired(cluster, ns, "web"), 60, "the HPA reading the metric") == 4
    assert external_metrics.served(ns, METRIC) > 0

    # Up: the HPA asks for 10; both tracks follow the 50 % split, and Ready capacity never drops
    # below what the HPA asked for before (4).
    with CapacityWatch(cluster, ns, "web") as up:
        external_metrics.set(ns, METRIC, 10)
        wait_for(lambda: hpa_desired(cluster, ns, "web") == 10, 60, "the HPA asking for 10")
        wait_for(lambda: split_is(cluster, ns, 5, 5), 90, "50 % of 10: 5 + 5")
    assert up.samples > 0
    assert up.min_ready >= 4, up.min_ready
    st = ftr_status(cluster, ns, "web")
    assert st["replicas"]["target"] == 10
    assert st["phase"] == "Paused"
    assert st["stepIndex"] == 0

    # Down: the HPA asks for 6; the split is recomputed (3 + 3) and Ready never drops below 6.
    with CapacityWatch(cluster, ns, "web") as down:
        external_metrics.set(ns, METRIC, 6)
        wait_for(lambda: hpa_desired(cluster, ns, "web") == 6, 60, "the HPA asking for 6")
        wait_for(lambda: split_is(cluster, ns, 3, 3), 90, "50 % of 6: 3 + 3")
    assert down.samples > 0
    assert down.min_ready >= 6, down.min_ready
    assert ftr_status(cluster, ns, "web")["replicas"]["target"] == 6

    # Above the HPA's maximum: clamped to 12, 6 + 6; the HPA then reads 12 back from the
    # rollout's scale subresource (its currentReplicas), so it has nothing more to write.
    with CapacityWatch(cluster, ns, "web") as clamped:
        external_metrics.set(ns, METRIC, 40)
        wait_for(lambda: split_is(cluster, ns, 6, 6), 90, "the HPA's maximum 12: 6 + 6")
    assert clamped.min_ready >= 6, clamped.min_ready

    def hpa_settled() -> bool:
        out = json.loads(cluster.kubectl("get", "hpa", "web", "-n", ns, "-o", "json").stdout)
        return bool(out["status"]["currentReplicas"] == out["status"]["desiredReplicas"] == 12)

    wait_for(hpa_settled, 60, "the HPA reading back 12 replicas", interval=1)
    assert phase_is(cluster, ns, "Paused", 0)
    assert split_is(cluster, ns, 6, 6)

    # Promoted, the HPA keeps scaling the service through the same rollout: all free-threaded.
    annotate(cluster, ns, "promote")
    wait_for(
        lambda: phase_is(cluster, ns, "Promoted") and split_is(cluster, ns, 0, 12),
        90,
        "promoted: 0 + 12",
    )
    with CapacityWatch(cluster, ns, "web") as promoted:
        external_metrics.set(ns, METRIC, 8)
        wait_for(lambda: split_is(cluster, ns, 0, 8), 90, "promoted, the HPA asking for 8")
    assert promoted.min_ready >= 8, promoted.min_ready
    assert ftr_status(cluster, ns, "web")["replicas"]["target"] == 8

    # No write fight: the rollout saw exactly the HPA's four decisions, each once.
    scaled = [e["message"] for e in events(cluster, ns, "web") if e["reason"] == "RolloutScaled"]
    totals = sorted(m.split("total replicas ")[1].split(",")[0] for m in scaled)
    assert totals == ["10 -> 6", "12 -> 8", "4 -> 10", "6 -> 12"], scaled
