"""The MannWhitney judge's I/O: one range query per track over [step reached, now], one sample
per analysis interval, judged together; the default judge still asks for instant values."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from ftrollout.model import api
from ftrollout.plan import rfc3339
from ftrollout.shell.scheduler import MAX_SAMPLES, AnalysisTarget, Scheduler, sample_step
from ftrollout.shell.state import State


class RangeProm:
    """Answers range queries with per-track series; records what was asked."""

    def __init__(self, by_track: dict[str, list[float]]) -> None:
        self.by_track = by_track
        self.ranges: list[tuple[str, datetime, datetime, float]] = []
        self.instant: list[str] = []

    async def query(self, url: str, promql: str, seconds: float, shape: Any = None) -> Any:
        self.instant.append(promql)
        out = [{"metric": {}, "value": [0, "1"]}]
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
        self.ranges.append((promql, start, end, step))
        track = "free-threaded" if "free-threaded" in promql else "standard"
        out = [{"metric": {}, "values": [[i, str(v)] for i, v in enumerate(self.by_track[track])]}]
        return out if shape is None else shape(out)


def analysis(judge: str) -> api.Analysis:
    return api.Analysis.model_validate(
        {
            "interval": "30s",
            "metrics": [
                {
                    "name": "p99",
                    "query": "p99{track='{{track}}'}",
                    "compare": {"maxIncreasePercent": 2, "judge": judge},
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


def with_pods() -> State:
    state = State()
    state.cache.put_pod(pod("web-ft-abc-1", "web-ft-abc"))
    state.cache.put_pod(pod("web-xyz-1", "web-xyz"))
    return state


def target(judge: str, started: str | None) -> AnalysisTarget:
    return AnalysisTarget(
        namespace="shop",
        name="web",
        target="web",
        twin="web-ft",
        analysis=analysis(judge),
        url="http://prometheus:9090",
        step_started_at=started,
    )


STANDARD = [100.0 + i % 5 for i in range(20)]


async def test_mann_whitney_samples_each_track_over_the_step_and_fails_a_5_percent_shift() -> None:
    prom = RangeProm({"standard": STANDARD, "free-threaded": [v * 1.05 for v in STANDARD]})
    sched = Scheduler(with_pods(), prom=prom)  # type: ignore[arg-type]
    started = datetime.now(UTC) - timedelta(minutes=10)
    (result,) = (await sched.analyse(target("MannWhitney", rfc3339(started)))).results
    assert result.phase == "Failed", result.message
    assert result.statistics is not None
    assert result.statistics.free_threaded_samples == 20
    assert prom.instant == []
    assert sorted(q for q, *_ in prom.ranges) == [
        "p99{track='free-threaded'}",
        "p99{track='standard'}",
    ]
    for _, start, end, step in prom.ranges:
        assert abs((start - started).total_seconds()) < 1
        assert end > start
        assert step == 30  # one sample per analysis interval


async def test_mann_whitney_before_the_step_is_reached_is_inconclusive() -> None:
    prom = RangeProm({"standard": STANDARD, "free-threaded": STANDARD})
    sched = Scheduler(with_pods(), prom=prom)  # type: ignore[arg-type]
    (result,) = (await sched.analyse(target("MannWhitney", None))).results
    assert result.phase == "Inconclusive"
    assert "not reached" in result.message
    assert prom.ranges == []


async def test_instant_judge_still_asks_for_instant_values() -> None:
    prom = RangeProm({})
    sched = Scheduler(with_pods(), prom=prom)  # type: ignore[arg-type]
    (result,) = (await sched.analyse(target("Instant", rfc3339(datetime.now(UTC))))).results
    assert result.phase == "Successful", result.message
    assert result.statistics is None
    assert len(prom.instant) == 2
    assert prom.ranges == []


def test_long_steps_sample_coarser_so_the_pairwise_comparison_stays_bounded() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert sample_step(start, start + timedelta(minutes=10), 30) == 30
    day = sample_step(start, start + timedelta(hours=24), 30)
    # Prometheus answers start, start + step, ... end: both ends count.
    assert 24 * 3600 / day + 1 == MAX_SAMPLES


class HonestProm:
    """Answers a range query the way Prometheus does: start, start+step, ... <= end."""

    async def query(self, url: str, promql: str, seconds: float, shape: Any = None) -> Any:
        out = [{"metric": {}, "value": [0, "1"]}]
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
        step = float(f"{step:g}")  # what the request carries
        n = math.floor((end - start).total_seconds() / step) + 1
        base = 130.0 if "free-threaded" in promql else 100.0
        t0 = start.timestamp()
        out = [{"metric": {}, "values": [[t0 + i * step, str(base + i % 5)] for i in range(n)]}]
        return out if shape is None else shape(out)


async def test_an_honest_prometheus_on_a_long_step_is_not_reported_as_thinned() -> None:
    """The resolution asked for gives at most MAX_SAMPLES points with both ends inclusive:
    span / MAX_SAMPLES gave 241, and every round of a step longer than 240 intervals said
    "thinned evenly from 241/241", which is meant for a server that ignores `step` (review of
    h-b)."""
    s = Scheduler(with_pods(), prom=HonestProm())  # type: ignore[arg-type]
    started = rfc3339(datetime.now(UTC) - timedelta(hours=10))
    (r,) = (await s.analyse(target("MannWhitney", started))).results
    assert r.statistics is not None
    # The step's rounding in the request may cost the last point, never add one.
    assert MAX_SAMPLES - 1 <= r.statistics.free_threaded_samples <= MAX_SAMPLES
    assert "thinned" not in r.message, r.message


def test_each_reconcile_hands_the_step_start_to_the_scheduler() -> None:
    from ftrollout.plan import Result
    from ftrollout.shell.reconcile import _register_analysis

    state = State()
    state.scheduler = Scheduler(state)
    spec = api.RolloutSpec.model_validate(
        {
            "targetRef": {"name": "web"},
            "freeThreaded": {"image": "registry.example/web:2.0-py3.14t"},
            "steps": [{"weight": 100}],
            "analysis": analysis("MannWhitney").model_dump(by_alias=True, exclude_none=True),
        }
    )
    status = api.RolloutStatus(phase=api.Phase.PROGRESSING, step_started_at="2026-01-01T00:00:00Z")
    _register_analysis(state, ("shop", "web"), spec, Result(status, None, None))
    assert state.scheduler.targets[("shop", "web")].step_started_at == "2026-01-01T00:00:00Z"
