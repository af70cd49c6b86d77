"""Who scaled the target: managedFields tell the operator's own writes from `kubectl scale`."""

from __future__ import annotations

from datetime import UTC, datetime

from ftrollout.model import api
from ftrollout.plan import FIELD_MANAGER, Observation, Workload, plan
from ftrollout.plan.observe import summarize_deployment

SPEC = api.parse_spec(
    {
        "targetRef": {"name": "web"},
        "freeThreaded": {"image": "x:t"},
        "steps": [{"weight": 50}, {"weight": 100}],
    }
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def mid_step_status() -> api.RolloutStatus:
    """At 50 % of 10: 5 standard + 5 free-threaded, all Ready."""
    st = api.RolloutStatus()
    obs = Observation(now=NOW, generation=1, revision="r", target=Workload(10, 10), twin=None)
    for _ in range(6):
        res = plan(SPEC, st, obs)
        st = res.status
        twin = Workload(res.twin_replicas or 0, res.twin_replicas or 0)
        target = Workload(res.target_replicas or 0, res.target_replicas or 0, FIELD_MANAGER)
        obs = Observation(now=NOW, generation=1, revision="r", target=target, twin=twin)
    assert st.replicas.standard == 5
    assert st.replicas.free_threaded == 5
    return st


def test_a_value_written_by_the_operator_is_never_taken_as_a_new_total() -> None:
    st = mid_step_status()
    # Status lost a write: the target shows 3 (an old write of ours), status says 5.
    obs = Observation(
        now=NOW,
        generation=1,
        revision="r",
        target=Workload(3, 3, FIELD_MANAGER),
        twin=Workload(5, 5),
    )
    res = plan(SPEC, st, obs)
    assert res.status.replicas.target == 10
    assert "TargetScaled" not in [e.reason for e in res.events]


def test_kubectl_scale_sets_the_new_total_and_the_split_follows() -> None:
    st = mid_step_status()
    obs = Observation(
        now=NOW, generation=1, revision="r", target=Workload(20, 5, "kubectl"), twin=Workload(5, 5)
    )
    res = plan(SPEC, st, obs)
    assert res.status.replicas.target == 20
    assert [e.reason for e in res.events].count("TargetScaled") == 1
    assert res.twin_replicas == 10  # 50 % of 20


def test_replicas_manager_is_read_from_managed_fields() -> None:
    body = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "time": "2026-01-01T00:00:00Z",
                 "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
                {"manager": FIELD_MANAGER, "time": "2026-01-01T00:05:00Z", "subresource": "scale",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "time": "2026-01-01T00:06:00Z",
                 "fieldsV1": {"f:status": {"f:replicas": {}}}},
            ],
        },
        "spec": {"replicas": 5, "template": {}},
    }  # fmt: skip
    assert summarize_deployment(body).replicas_manager == FIELD_MANAGER
    body["metadata"]["managedFields"].append(  # type: ignore[index]
        {
            "manager": "kubectl",
            "time": "2026-01-01T00:07:00Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    )
    assert summarize_deployment(body).replicas_manager == "kubectl"
