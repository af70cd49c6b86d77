"""Autoscaled targets (issue 18, item 1): the rollout's scale subresource sets the total.

The HPA (or `kubectl scale ftr/NAME`) scales the FreeThreadedRollout, as Argo Rollouts' HPA scales
a Rollout; the operator splits the total. The local cluster has no metrics source, so the HPA
controller is shown resolving the scale subresource and the selector (AbleToScale), and its
metrics stay missing (see the README's known limits).
"""

from __future__ import annotations

import json

import pytest
import yaml
from e2e_operator import (
    OperatorProcess,
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
