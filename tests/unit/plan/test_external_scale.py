"""Who scaled the target: managedFields tell the operator's own writes from `kubectl scale`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from planfixtures import NO_PAUSE, StepDef, at_step, make_spec
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan import FIELD_MANAGER, Observation, Workload, plan
from ftrollout.plan.observe import summarize_deployment
from ftrollout.plan.preflight import gate_key

SPEC = api.parse_spec(
    {
        "targetRef": {"name": "web"},
        "freeThreaded": {"image": "x:t"},
        "steps": [{"weight": 50, "pause": {}}, {"weight": 100}],
    }
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
QUICK: tuple[StepDef, ...] = ((10, "1s"), (50, "1h"), (100, None))


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
    # `kubectl scale` to another value takes the field from the operator's entry.
    del body["metadata"]["managedFields"][1]  # type: ignore[index]
    body["metadata"]["managedFields"].append(  # type: ignore[index]
        {
            "manager": "kubectl",
            "time": "2026-01-01T00:07:00Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    )
    assert summarize_deployment(body).replicas_manager == "kubectl"


# ------------------------------------------------- someone else's scale in every phase (#16)


def _sim_in(phase: Phase, n: int = 10) -> Sim:
    """A simulated rollout of N=n settled in `phase` (pods all Ready)."""
    if phase == Phase.FAILED:
        raw = api.dump(make_spec())
        raw["guardrails"]["dependencyGate"] = {"modules": ["numpy"], "action": "Block"}
        sim = Sim(api.parse_spec(raw), n=n)
        sim.step()
        image = sim.spec.free_threaded.image
        failed = api.PreflightStatus(
            phase="Failed",
            image=image,
            message="no numpy",
            time=NOW_S,
            checked=gate_key(image, ["numpy"]),
        )
        sim.preflight = failed
    else:
        sim = at_step(Sim(make_spec(QUICK), n=n), 1)
        sim.action = {Phase.ROLLED_BACK: "rollback", Phase.PROMOTED: "promote-full"}[phase]
    sim.run(8)
    assert sim.status.phase == phase
    return sim


NOW_S = "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("phase", [Phase.ROLLED_BACK, Phase.FAILED])
@pytest.mark.parametrize("new_n", [20, 4])
def test_after_a_rollback_or_failure_the_standard_track_follows_someone_elses_scale(
    phase: Phase, new_n: int
) -> None:
    """RolledBack/Failed: the standard track is the whole service. A person or an autoscaler
    scaling it 10 -> 20 (or 10 -> 4) sets the new N; the operator never scales it back."""
    sim = _sim_in(phase)
    sim.scale_target(new_n)
    res = sim.step()
    assert res.status.replicas.target == new_n
    assert res.target_replicas == new_n
    assert res.twin_replicas == 0
    assert "TargetScaled" in sim.events(res)
    sim.run(5)
    assert sim.replicas == (new_n, 0)
    assert sim.std.ready == new_n
    assert sim.status.phase == phase
    # A retry starts the steps again from the new total.
    sim.action = "retry"
    sim.step()
    assert sim.status.replicas.target == new_n


@pytest.mark.parametrize("new_n", [15, 4])
def test_a_promoted_rollout_takes_a_scale_of_the_target_as_the_new_total(new_n: int) -> None:
    """Promoted: the target is at 0 and the twin has everything. Scaling the target (the name
    users, GitOps and scripts know) to M makes M the new total, all of it free-threaded; the
    standard pods that scale brings cover the twin until its new pods are Ready."""
    sim = _sim_in(Phase.PROMOTED)
    assert sim.replicas == (0, 10)
    sim.scale_target(new_n)
    res = sim.step()
    assert res.status.replicas.target == new_n
    assert res.twin_replicas == new_n
    assert "TargetScaled" in sim.events(res)
    assert sim.ready >= min(new_n, 10)
    for _ in range(10):
        sim.step()
        assert sim.ready >= min(new_n, 10)
    assert sim.replicas == (0, new_n)
    assert sim.ft.ready == new_n
    assert sim.status.phase == Phase.PROMOTED


@pytest.mark.parametrize("new_n", [15, 4])
def test_a_promoted_rollout_follows_an_autoscaler_on_the_twin(new_n: int) -> None:
    """An HPA cannot scale a Deployment at 0 replicas, so after promotion it targets the twin:
    its scale is the service's new total, not undone."""
    sim = _sim_in(Phase.PROMOTED)
    sim.scale_twin(new_n)
    res = sim.step()
    assert res.status.replicas.target == new_n
    assert res.twin_replicas == new_n
    assert res.target_replicas == 0
    sim.run(5)
    assert sim.replicas == (0, new_n)


def test_a_promoted_twin_scaled_to_zero_by_hand_is_restored() -> None:
    """Zero free-threaded pods in a promoted rollout is not a total anyone can mean (an HPA never
    goes to 0; the way back to standard is `kubectl ftr rollback`): the twin goes back to N."""
    sim = _sim_in(Phase.PROMOTED)
    sim.scale_twin(0)
    res = sim.step()
    assert res.status.replicas.target == 10
    assert res.twin_replicas == 10


def test_the_twin_scaled_by_hand_mid_step_is_still_undone() -> None:
    sim = at_step(Sim(make_spec(QUICK), n=10), 1)
    sim.scale_twin(8)
    res = sim.step()
    assert res.status.replicas.target == 10
    assert res.twin_replicas == 5


# ------------------------------------------------- GitOps re-applies (issue 18, item 2)


def _gitops_body(replicas: int, owners: list[dict[str, object]]) -> dict[str, object]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "managedFields": owners},
        "spec": {"replicas": replicas, "template": {}},
        "status": {"readyReplicas": replicas},
    }


# As the apiserver records them: an Update through the scale subresource carries no time; an
# Apply does.
OURS_VIA_SCALE = {
    "manager": FIELD_MANAGER,
    "operation": "Update",
    "subresource": "scale",
    "fieldsV1": {"f:spec": {"f:replicas": {}}},
}
GITOPS_APPLY = {
    "manager": "gitops",
    "operation": "Apply",
    "time": "2026-01-01T00:07:00Z",
    "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}},
}


def test_a_re_apply_of_the_value_the_operator_wrote_keeps_it_the_operators() -> None:
    """Argo CD with `RespectIgnoreDifferences` (or any applier that copies the live value)
    re-applies spec.replicas = what the operator wrote: the apiserver makes both managers co-own
    it (only equal values can be shared). That is not a scale: taken as one, N shrank with every
    re-apply (10 -> 5 -> 3 ...)."""
    body = _gitops_body(5, [OURS_VIA_SCALE, GITOPS_APPLY])
    target = summarize_deployment(body)
    assert target.replicas_manager == FIELD_MANAGER
    st = mid_step_status()
    obs = Observation(
        now=NOW,
        generation=1,
        revision="r",
        target=Workload(target.replicas, target.ready, target.replicas_manager),
        twin=Workload(5, 5),
    )
    res = plan(SPEC, st, obs)
    assert res.status.replicas.target == 10
    assert "TargetScaled" not in [e.reason for e in res.events]


def test_a_forced_re_apply_of_the_old_total_is_undone_with_a_warning_naming_the_manager() -> None:
    """A Git copy holding spec.replicas: 10 re-applied with --force-conflicts at 5 + 5 sets the
    target back to 10 (the total: not a new N). The operator writes its split again (capacity
    never drops: the extra pods are surplus), and says who fights it and what to change."""
    st = mid_step_status()
    obs = Observation(
        now=NOW,
        generation=1,
        revision="r",
        target=Workload(10, 5, "gitops"),
        twin=Workload(5, 5),
    )
    res = plan(SPEC, st, obs)
    assert res.status.replicas.target == 10
    assert res.target_replicas == 5
    warnings = [e for e in res.events if e.reason == "ReplicasReapplied"]
    assert len(warnings) == 1
    assert warnings[0].type == "Warning"
    assert "gitops" in warnings[0].message
    assert "spec.replicas" in warnings[0].message
    assert "TargetScaled" not in [e.reason for e in res.events]


def test_a_stale_copy_of_an_earlier_write_by_a_live_copying_applier_is_not_a_scale() -> None:
    """The applier read the live value (8, written by the operator on the way from 10 to 5) and
    applied it after the operator had written 5: the target shows 8, set by `gitops`. Taken for
    a scale (CI, Dec 2026), N became 8 and the service lost two replicas for good."""
    st = mid_step_status()
    obs = Observation(
        now=NOW,
        generation=1,
        revision="r",
        target=Workload(8, 5, "gitops"),
        twin=Workload(5, 5),
        own_target_writes=(9, 8, 5),
    )
    res = plan(SPEC, st, obs)
    assert res.status.replicas.target == 10
    assert res.target_replicas == 5  # the split written again
    assert "TargetScaled" not in [e.reason for e in res.events]


def test_a_scale_to_a_value_the_operator_never_wrote_is_still_a_new_total() -> None:
    st = mid_step_status()
    obs = Observation(
        now=NOW,
        generation=1,
        revision="r",
        target=Workload(7, 5, "kubectl"),
        twin=Workload(5, 5),
        own_target_writes=(9, 8, 5),
    )
    res = plan(SPEC, st, obs)
    assert res.status.replicas.target == 7
    assert "TargetScaled" in [e.reason for e in res.events]


def test_a_stale_copy_landing_after_promotion_is_not_a_new_total() -> None:
    """After promotion the target is at 0 and a scale of it is the new total: but a copy of the
    operator's last split, applied a moment late, is not."""
    sim = Sim(make_spec(steps=((50, "1s"), (100, NO_PAUSE))), n=10)
    sim.until(lambda s: s.status.phase == Phase.PROMOTED and s.replicas == (0, 10))
    res = sim.step(target=Workload(5, 5, "gitops"), own_target_writes=(5, 0))
    assert res.status.replicas.target == 10
    assert res.target_replicas == 0
    assert "TargetScaled" not in sim.events(res)
    # Without the operator's own write of 5 it is a scale: the new total.
    res = sim.step(target=Workload(5, 5, "kubectl"))
    assert res.status.replicas.target == 5
