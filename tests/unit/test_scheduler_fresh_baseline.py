"""Compare metrics with a fresh baseline (spec.analysis.baseline): the compare side's
{{track}} is `baseline` and {{pods}} the baseline's pods, for both judges, also at 100 %."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ftrollout.model import api
from ftrollout.plan import Result, rfc3339
from ftrollout.plan.metrics import NO_PODS
from ftrollout.shell.reconcile import _register_analysis
from ftrollout.shell.scheduler import AnalysisTarget, Scheduler
from ftrollout.shell.state import State

BASE = [100.0 + i % 5 for i in range(20)]


class Prom:
    """Per-track answers keyed by the pods regex; records every query."""

    def __init__(self, by_pods: dict[str, float]) -> None:
        self.by_pods = by_pods
        self.asked: list[str] = []

    def _value(self, promql: str) -> float | None:
        self.asked.append(promql)
        return next((v for pods, v in self.by_pods.items() if f'"{pods}"' in promql), None)

    async def query(self, url: str, promql: str, seconds: float, shape: Any = None) -> Any:
        v = self._value(promql)
        out = [] if v is None else [{"metric": {}, "value": [0, str(v)]}]
        return out if shape is None else shape(out)

    async def query_range(
        self,
        url: str,
        promql: str,
        start: datetime,
        end: datetime,
        step: float,
        seconds: float,
        shape: Any = None,
    ) -> Any:
        v = self._value(promql)
        out = (
            []
            if v is None
            else [{"metric": {}, "values": [[i, str(b * v / 100)] for i, b in enumerate(BASE)]}]
        )
        return out if shape is None else shape(out)


def analysis(judge: str) -> api.Analysis:
    return api.Analysis.model_validate(
        {
            "interval": "30s",
            "baseline": {},
            "metrics": [
                {
                    "name": "p99",
                    "query": 'p99{track="{{track}}", pod=~"{{pods}}"}',
                    "compare": {"maxIncreasePercent": 3, "judge": judge},
                }
            ],
        }
    )


def pod(name: str, rs: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"pod-template-hash": rs.rsplit("-", 1)[1]},
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs}],
        },
        "status": {},
    }


def state(*pods: tuple[str, str]) -> State:
    s = State()
    for name, rs in pods:
        s.cache.put_pod(pod(name, rs))
    return s


FT = ("web-ft-abc-1", "web-ft-abc")
STD = ("web-xyz-1", "web-xyz")
BASELINE = ("web-baseline-def-1", "web-baseline-def")


def target(judge: str, baseline: str | None = "web-baseline") -> AnalysisTarget:
    return AnalysisTarget(
        namespace="shop",
        name="web",
        target="web",
        twin="web-ft",
        baseline=baseline,
        analysis=analysis(judge),
        url="http://prometheus:9090",
        step_started_at=rfc3339(datetime.now(UTC) - timedelta(minutes=10)),
        last_standard={"p99": 100.0},
    )


@pytest.mark.parametrize("judge", ["Instant", "MannWhitney"])
async def test_the_compare_side_is_the_baseline(judge: str) -> None:
    # Warm standard pods are 10 % slower than fresh ones: against them a 5 % regression hides.
    prom = Prom({"web-ft-abc-1": 105.0, "web-xyz-1": 110.0, "web-baseline-def-1": 100.0})
    sched = Scheduler(state(FT, STD, BASELINE), prom=prom)  # type: ignore[arg-type]
    (result,) = (await sched.analyse(target(judge))).results
    assert result.phase == "Failed", result.message
    assert "vs baseline" in result.message
    assert sorted(prom.asked) == [
        'p99{track="baseline", pod=~"web-baseline-def-1"}',
        'p99{track="free-threaded", pod=~"web-ft-abc-1"}',
    ]
    # Without a baseline the same numbers compare against the standard pods, as before.
    prom.asked.clear()
    (result,) = (await sched.analyse(target(judge, baseline=None))).results
    assert result.phase == "Successful", result.message
    assert 'p99{track="standard", pod=~"web-xyz-1"}' in prom.asked


async def test_at_100_percent_the_baseline_is_measured_not_the_last_standard_value() -> None:
    prom = Prom({"web-ft-abc-1": 105.0, "web-baseline-def-1": 100.0})
    sched = Scheduler(state(FT, BASELINE), prom=prom)  # type: ignore[arg-type]
    (result,) = (await sched.analyse(target("Instant"))).results
    assert result.phase == "Failed", result.message
    assert result.standard == 100.0
    assert any('track="baseline"' in q for q in prom.asked)


async def test_a_baseline_without_pods_yet_is_inconclusive_never_the_standard_pods() -> None:
    prom = Prom({"web-ft-abc-1": 100.0, "web-xyz-1": 100.0})
    sched = Scheduler(state(FT, STD), prom=prom)  # type: ignore[arg-type]
    (result,) = (await sched.analyse(target("Instant"))).results
    assert result.phase == "Inconclusive"
    assert result.message == "baseline: no series"
    assert f'p99{{track="baseline", pod=~"{NO_PODS}"}}' in prom.asked
    assert not any('track="standard"' in q for q in prom.asked)


def test_each_reconcile_names_the_baseline_only_when_it_is_on() -> None:
    s = State()
    s.scheduler = Scheduler(s)
    status = api.RolloutStatus(phase=api.Phase.PROGRESSING)
    for raw, expected in (({}, "web-baseline"), ({"enabled": False}, None), (None, None)):
        a = analysis("Instant").model_dump(by_alias=True, exclude_none=True)
        if raw is None:
            a.pop("baseline")
        else:
            a["baseline"] = raw
        spec = api.RolloutSpec.model_validate(
            {
                "targetRef": {"name": "web"},
                "freeThreaded": {"image": "registry.example/web:2.0-py3.14t"},
                "steps": [{"weight": 100}],
                "analysis": a,
            }
        )
        _register_analysis(s, ("shop", "web"), spec, Result(status, None, None))
        assert s.scheduler.targets[("shop", "web")].baseline == expected


def spec_with(judge: str, bake: bool = True) -> api.RolloutSpec:
    return api.RolloutSpec.model_validate(
        {
            "targetRef": {"name": "web"},
            "freeThreaded": {"image": "registry.example/web:2.0-py3.14t"},
            "steps": [{"weight": 100}],
            "analysis": analysis(judge).model_dump(by_alias=True, exclude_none=True),
            "postPromotion": {"bake": "1h", "standardReplicas": 1} if bake else {},
        }
    )


@pytest.mark.parametrize("judge", ["Instant", "MannWhitney"])
async def test_the_bake_compares_with_the_warm_standard_pods_not_the_removed_baseline(
    judge: str,
) -> None:
    """At promotion the baseline is deleted; postPromotion.standardReplicas keeps standard
    pods up so that analysis keeps comparing both tracks through the bake (plan.bake): the
    bake's rounds measure those, not a baseline that is gone (always `baseline: no series`)."""
    s = state(FT, STD)  # the baseline's pods are gone, the warm standard pod stays
    s.default_prometheus = "http://prometheus:9090"
    s.scheduler = Scheduler(s, prom=Prom({"web-ft-abc-1": 130.0, "web-xyz-1": 100.0}))
    now = datetime.now(UTC)
    baking = api.RolloutStatus(
        phase=api.Phase.PROMOTED,
        promoted_at=rfc3339(now),
        bake_until=rfc3339(now + timedelta(hours=1)),
        step_started_at=rfc3339(now - timedelta(minutes=10)),
    )
    _register_analysis(s, ("shop", "web"), spec_with(judge), Result(baking, None, None))
    registered = s.scheduler.targets[("shop", "web")]
    assert registered.baseline is None
    (result,) = (await s.scheduler.analyse(registered)).results
    assert result.phase == "Failed", result.message  # +30 % against the warm standard pod
    assert "vs standard" in result.message
    # While the steps run, the baseline is the compare side.
    progressing = baking.model_copy(
        update={"phase": api.Phase.PROGRESSING, "promoted_at": None, "bake_until": None}
    )
    _register_analysis(s, ("shop", "web"), spec_with(judge), Result(progressing, None, None))
    assert s.scheduler.targets[("shop", "web")].baseline == "web-baseline"
