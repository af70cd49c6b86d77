"""spec.replicas and the rollout's scale subresource: the total an HPA sets (issue 18, item 1)."""

from __future__ import annotations

from typing import Any

from planfixtures import StepDef, at_step, make_spec
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.model.crd import build_crd
from ftrollout.plan.observe import label_selector, summarize_deployment

QUICK: tuple[StepDef, ...] = ((10, "1s"), (50, "1h"), (100, None))


def spec_with(replicas: int | None, steps: tuple[StepDef, ...] = QUICK) -> api.RolloutSpec:
    raw: dict[str, Any] = api.dump(make_spec(steps))
    if replicas is not None:
        raw["replicas"] = replicas
    return api.parse_spec(raw)


def set_total(sim: Sim, total: int) -> None:
    """What `kubectl scale ftr/app --replicas=M` or an HPA writes: spec.replicas of the rollout."""
    sim.spec = spec_with(total)


def test_spec_replicas_is_n_from_the_first_reconcile() -> None:
    sim = Sim(spec_with(6), n=10)
    res = sim.step()
    assert res.status.replicas.target == 6


def test_a_scale_of_the_rollout_mid_step_sets_the_total_and_the_split_follows() -> None:
    sim = at_step(Sim(spec_with(10), n=10), 1)
    assert sim.replicas == (5, 5)
    for total, split in ((20, (10, 10)), (4, (2, 2))):
        set_total(sim, total)
        res = sim.step()
        assert res.status.replicas.target == total
        assert "RolloutScaled" in sim.events(res)
        sim.until(lambda s, want=split: s.replicas == want and s.ready == sum(want))  # type: ignore[misc]
    assert sim.status.step_index == 1


def test_with_spec_replicas_a_scale_of_the_target_deployment_is_undone() -> None:
    """The HPA points at the rollout; a second writer on the Deployment must not win."""
    sim = at_step(Sim(spec_with(10), n=10), 1)
    sim.scale_target(8)
    res = sim.step()
    assert res.status.replicas.target == 10
    assert res.target_replicas == 5
    assert "TargetScaled" not in sim.events(res)


def test_after_promotion_the_rollout_scale_keeps_scaling_the_free_threaded_track() -> None:
    sim = at_step(Sim(spec_with(10), n=10), 1)
    sim.action = "promote-full"
    sim.until(lambda s: s.status.phase == Phase.PROMOTED and s.replicas == (0, 10))
    set_total(sim, 14)
    sim.until(lambda s: s.replicas == (0, 14) and s.ready == 14)
    assert sim.status.replicas.target == 14


def test_status_selector_is_the_targets_selector_matching_both_tracks() -> None:
    body = {
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web", "tier": "api"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
        },
    }
    assert summarize_deployment(body).label_selector == (
        "app=web,tier=api,env in (prod,staging),!canary"
    )
    assert label_selector({}) == ""
    sim = Sim(spec_with(None), n=10)
    res = sim.step(target_selector="app=web")
    assert res.status.selector == "app=web"


def test_the_crd_has_a_scale_subresource_on_spec_replicas() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas.target",
        "labelSelectorPath": ".status.selector",
    }
    props = version["schema"]["openAPIV3Schema"]["properties"]
    assert props["spec"]["properties"]["replicas"]["minimum"] == 0
    assert "replicas" not in props["spec"].get("required", [])
