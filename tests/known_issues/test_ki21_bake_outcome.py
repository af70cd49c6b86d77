"""A Promoted rollout still baking can roll back; `status --wait` exits 0 and Ready=True before it."""

from __future__ import annotations

from planfixtures import NO_PAUSE, cond, make_spec
from simcluster import Sim

from ftrollout.cli import plugin
from ftrollout.model import api
from ftrollout.model.api import Phase

N = 10


def _baking_sim() -> Sim:
    s = make_spec(((50, NO_PAUSE), (100, NO_PAUSE)))
    s = s.model_copy(update={"post_promotion": api.PostPromotion(bake="1h")})
    sim = Sim(s, n=N)
    sim.until(lambda x: x.status.phase == Phase.PROMOTED and x.ft.ready == N)
    sim.run(2)
    assert cond(sim.status, "PostPromotion").reason == "Baking"
    return sim


def _obj(st: api.RolloutStatus) -> dict:
    return {"metadata": {"name": "web", "namespace": "shop"}, "status": api.dump(st)}


def test_status_wait_does_not_report_success_while_the_bake_can_still_roll_back() -> None:
    sim = _baking_sim()
    code_during_bake = plugin.wait_outcome(_obj(sim.status))
    # the bake is not over: a guardrail still rolls back (shown below)
    for i in range(4):
        sim.incident(pod=f"app-ft-{i}")
    sim.step()
    assert sim.status.phase == Phase.ROLLED_BACK
    assert code_during_bake is None, "status --wait exited 0 for a rollout that then RolledBack"


def test_ready_is_not_true_while_the_bake_can_still_roll_back() -> None:
    sim = _baking_sim()
    assert cond(sim.status, "Ready").status != "True", cond(sim.status, "Ready")
