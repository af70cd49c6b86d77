"""Analysis at 100 %: the standard value a compare metric is judged against survives an
operator restart (it is kept in status, not only in the scheduler's memory)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ftrollout.model import api
from ftrollout.shell.scheduler import AnalysisTarget, Scheduler
from ftrollout.shell.state import State


class FakeProm:
    """Answers every query with one value; records the queries."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.queries: list[str] = []

    async def query(self, url: str, promql: str, seconds: float, shape: Any = None) -> Any:
        self.queries.append(promql)
        out = [{"metric": {}, "value": [0, str(self.value)]}]
        return out if shape is None else shape(out)


def compare_analysis() -> api.Analysis:
    return api.Analysis.model_validate(
        {
            "metrics": [
                {
                    "name": "latency",
                    "query": "latency{track='{{track}}'}",
                    "compare": {"maxIncreasePercent": 20},
                }
            ]
        }
    )


async def test_at_100_percent_after_a_restart_the_standard_value_comes_from_status() -> None:
    # A fresh operator process: empty state, no earlier round in memory, no standard pods.
    prom = FakeProm(11.0)
    sched = Scheduler(State(), prom=prom)  # type: ignore[arg-type]
    target = AnalysisTarget(
        namespace="shop",
        name="web",
        target="web",
        twin="web-ft",
        analysis=compare_analysis(),
        url="http://prometheus:9090",
        last_standard={"latency": 10.0},
    )
    rnd = await sched.analyse(target)
    (result,) = rnd.results
    assert result.phase == "Successful", result.message
    assert result.standard == 10.0
    assert all("standard" not in q for q in prom.queries)  # no standard pods to ask about
    # Not a comparison of both tracks: the report keeps the last one that was.
    assert rnd.standard_measured is False
    prom.value = 13.0  # 30 % worse than the kept standard value
    (result,) = (await sched.analyse(target)).results
    assert result.phase == "Failed"


async def test_a_round_with_standard_pods_says_it_measured_both_tracks() -> None:
    state = State()
    state.cache.pods_of = lambda ns, deployment: (  # type: ignore[method-assign]
        [SimpleNamespace(name=f"{deployment}-h-1")]
    )
    sched = Scheduler(state, prom=FakeProm(10.0))  # type: ignore[arg-type]
    target = AnalysisTarget(
        namespace="shop",
        name="web",
        target="web",
        twin="web-ft",
        analysis=compare_analysis(),
        url="http://prometheus:9090",
    )
    rnd = await sched.analyse(target)
    assert rnd.standard_measured is True
    assert rnd.results[0].standard == 10.0
