"""A hostile team Prometheus against the batched guardrail round (#17 review, second round).

* Its answers are filtered in the query's worker, not on the event loop: a capped answer of
  ~700,000 `{}` took seconds of the loop (every reconcile of every rollout) per round.
* Readings are kept only for pods the operator knows (its cache) and dropped once the pod is
  gone: fresh pod names in every answer grew State.gil for ever.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prom_stub import Answer, PromStub, probe_answer

from ftrollout.model import api
from ftrollout.plan import prometheus as plan_prometheus
from ftrollout.shell import scheduler
from ftrollout.shell.prometheus_config import DEFAULT_MAX_RESPONSE_BYTES
from ftrollout.shell.scheduler import AnalysisTarget, Prometheus, Scheduler
from ftrollout.shell.state import GilReading, State

REAL_POD = "web-ft-5d9f7-aaaaa"


def pod(namespace: str, name: str) -> dict[str, Any]:
    rs = name.rsplit("-", 1)[0]
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"pod-template-hash": rs.rsplit("-", 1)[1]},
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs}],
        },
        "status": {},
    }


def target(url: str) -> AnalysisTarget:
    analysis = api.Analysis.model_validate(
        {"metrics": [{"name": "errors", "query": "errors", "threshold": {"max": 1}}]}
    )
    return AnalysisTarget("team-a", "web", "web", "web-ft", analysis, url)


@pytest.fixture
def stubs() -> Iterator[list[PromStub]]:
    made: list[PromStub] = []
    yield made
    for s in made:
        s.close()


async def test_a_hostile_guardrail_answer_is_filtered_off_the_event_loop(
    stubs: list[PromStub], monkeypatch: pytest.MonkeyPatch
) -> None:
    n = (DEFAULT_MAX_RESPONSE_BYTES - 40) // 3
    packed = zlib.compress(b'{"data":{"result":[' + b"{}," * (n - 1) + b"{}]}}", 9, wbits=31)
    hostile = PromStub(lambda _q: (200, {"Content-Encoding": "gzip"}, packed))
    stubs.append(hostile)
    threads: list[threading.Thread] = []

    def recorded(real: Callable[..., Any]) -> Callable[..., Any]:
        def shape(*args: Any, **kw: Any) -> Any:
            threads.append(threading.current_thread())
            return real(*args, **kw)

        return shape

    # Both answers of a first round: what is not healthy, and which pods report.
    monkeypatch.setattr(scheduler, "guard_answer", recorded(plan_prometheus.guard_answer))
    monkeypatch.setattr(scheduler, "reporting_pods", recorded(plan_prometheus.reporting_pods))
    sched = Scheduler(State(), prom=Prometheus(workers=4))
    sched.register(target(hostile.url))
    await sched.guard_round()
    assert len(threads) == 2  # every answer was filtered...
    assert threading.current_thread() not in threads  # ...in a worker, not on the event loop


async def test_readings_are_kept_for_known_pods_only(stubs: list[PromStub]) -> None:
    rounds = itertools.count()

    def answer(promql: str) -> Answer:
        r = next(rounds)
        gil: list[tuple[dict[str, str], float]] = [
            ({"namespace": "team-a", "pod": f"p{r}-{i}"}, 1) for i in range(5000)
        ]
        gil.append(({"namespace": "team-a", "pod": REAL_POD}, 1))
        return probe_answer(promql, gil=gil)

    hostile = PromStub(answer)
    stubs.append(hostile)
    state = State()
    state.cache.put_pod(pod("team-a", REAL_POD))
    sched = Scheduler(state, prom=Prometheus(workers=4))
    sched.register(target(hostile.url))
    for _ in range(3):
        await sched.guard_round()
    # 15,000 invented pod names, one real pod: the real one's reading only.
    assert state.gil == {("team-a", REAL_POD): GilReading(enabled=True)}
    state.cache.drop_pod(pod("team-a", REAL_POD))
    await sched.guard_round()
    assert state.gil == {}  # the pod is gone: so is its reading
