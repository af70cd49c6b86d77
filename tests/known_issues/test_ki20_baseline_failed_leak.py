"""README: the baseline is "deleted at promotion, rollback, in Pending/Failed". A rollout that
goes Failed through an early return (InvalidSpec, e.g. its Prometheus address dropped from the
operator's allow-list by a Helm upgrade; TargetNotFound; TargetChanged; TwinNotOwned) gets
baseline_replicas=None ("leave it alone"): the extra <target>-baseline pods keep running and
taking a share of the Service's traffic for as long as the rollout stays Failed."""

from __future__ import annotations

from planfixtures import make_spec
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase


def test_baseline_removed_when_the_rollout_fails_on_its_spec() -> None:
    raw = api.dump(make_spec(((50, "1h"), (100, None))))
    raw["analysis"] = {"baseline": {}}
    sim = Sim(api.parse_spec(raw), n=10, lag=0)
    res = sim.step()
    for _ in range(5):
        res = sim.step()
    assert res.baseline_replicas == 5
    sim.spec_error = api.SpecError("spec.analysis.prometheus.address", "not in the allow-list")
    res = sim.step()
    assert res.status.phase == Phase.FAILED
    assert res.baseline_replicas == 0, res.baseline_replicas
