"""Tenant isolation of the batched guardrail queries: a series from a rollout's own Prometheus
counts only in the namespaces of the rollouts that registered that address.

Two teams, two namespaces, one Prometheus each; team A's is hostile and claims team B's pod runs
with the GIL on and crashed 99 times. Team B's rollout must not see any of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prom_stub import Answer, PromStub, probe_answer

from ftrollout.model import api
from ftrollout.shell.scheduler import AnalysisTarget, Prometheus, Scheduler
from ftrollout.shell.state import GilReading, State

POD_A = "web-ft-5d9f7-aaaaa"
POD_B = "web-ft-7c4b2-bbbbb"
POD_C = "web-ft-1a2b3-ccccc"


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


def with_pods() -> State:
    """The operator keeps readings only of pods it knows (its cache)."""
    state = State()
    for namespace, name in (("team-a", POD_A), ("team-b", POD_B), ("team-c", POD_C)):
        state.cache.put_pod(pod(namespace, name))
    return state


def hostile(promql: str) -> Answer:
    return probe_answer(
        promql,
        gil=[
            ({"namespace": "team-a", "pod": POD_A}, 0),
            ({"namespace": "team-b", "pod": POD_B}, 1),
        ],
        incidents=[({"namespace": "team-b", "pod": POD_B}, 99)],
        fallback=[({"namespace": "team-b", "pod": POD_B, "module": "evil"}, 1)],
    )


def honest_b(promql: str) -> Answer:
    return probe_answer(promql, gil=[({"namespace": "team-b", "pod": POD_B}, 0)])


def own(promql: str) -> Answer:
    return probe_answer(promql, incidents=[({"namespace": "team-c", "pod": POD_C}, 2)])


@pytest.fixture
def stubs() -> Iterator[dict[str, PromStub]]:
    made = {"a": PromStub(hostile), "b": PromStub(honest_b), "own": PromStub(own)}
    yield made
    for s in made.values():
        s.close()


def target(namespace: str, url: str) -> AnalysisTarget:
    analysis = api.Analysis.model_validate(
        {"metrics": [{"name": "errors", "query": "errors", "threshold": {"max": 1}}]}
    )
    return AnalysisTarget(namespace, "web", "web", "web-ft", analysis, url)


async def test_a_hostile_exporter_cannot_speak_for_another_namespace(
    stubs: dict[str, PromStub],
) -> None:
    state = with_pods()
    sched = Scheduler(state, prom=Prometheus(workers=4), default_url=stubs["own"].url)
    sched.register(target("team-a", stubs["a"].url))
    sched.register(target("team-b", stubs["b"].url))
    await sched.guard_round()

    assert all(s.queries for s in stubs.values())  # every address was asked
    assert state.gil[("team-b", POD_B)] == GilReading(enabled=False)  # team B's own answer
    assert ("team-b", POD_B) not in state.probe_counts  # no incidents invented by team A
    assert state.gil[("team-a", POD_A)] == GilReading(enabled=False)  # A speaks for itself
    # The operator's own Prometheus is the platform's: it speaks for every namespace.
    assert state.probe_counts[("team-c", POD_C)] == 2.0


async def test_a_rollout_that_stopped_analysing_keeps_only_its_own_namespace(
    stubs: dict[str, PromStub],
) -> None:
    state = with_pods()
    sched = Scheduler(state, prom=Prometheus(workers=4))
    sched.register(target("team-a", stubs["a"].url))
    # Promoted: no longer analysed, its pods still watched there (what reconcile does).
    sched.unregister(("team-a", "web"))
    sched.watch(("team-a", "web"), stubs["a"].url)
    await sched.guard_round()
    assert stubs["a"].queries
    assert ("team-b", POD_B) not in state.gil
    assert ("team-b", POD_B) not in state.probe_counts
    assert state.gil[("team-a", POD_A)] == GilReading(enabled=False)


async def test_a_promoted_rollout_keeps_its_prometheus_until_it_is_deleted(
    stubs: dict[str, PromStub],
) -> None:
    """Not for a time: an idle promoted rollout may not reconcile again for a long time
    (issue 22), and its pods are still guarded after promotion."""
    state = with_pods()
    sched = Scheduler(state, prom=Prometheus(workers=4))
    sched.watch(("team-b", "web"), stubs["b"].url)
    sched.watch(("team-b", "other"), stubs["b"].url)
    await sched.guard_round()
    assert len(stubs["b"].queries) == 2  # the round's query, and the first listing
    sched.forget(("team-b", "web"))  # deleted; "other" still watches that address
    await sched.guard_round()
    assert len(stubs["b"].queries) == 3
    sched.watch(("team-b", "other"), None)  # left Promoted (a new revision, say)
    await sched.guard_round()
    assert len(stubs["b"].queries) == 3


async def test_the_loop_sleeps_between_rounds_but_wakes_for_a_new_rollout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 22: the loop used to wake twice a second to look for due rounds. It now sleeps
    until the next round is due; a rollout registered meanwhile wakes it."""
    from ftrollout.shell import scheduler as mod

    monkeypatch.setattr(mod, "GUARD_INTERVAL", 60.0)
    monkeypatch.setattr(mod, "_spread", lambda key, interval: 0.0)
    sched = Scheduler(State(), prom=Prometheus(workers=2))
    analysed = asyncio.Event()
    wakes = 0

    async def guard_round() -> None:
        nonlocal wakes
        wakes += 1

    async def analyse(t: AnalysisTarget) -> None:
        analysed.set()

    monkeypatch.setattr(sched, "guard_round", guard_round)
    monkeypatch.setattr(sched, "_analyse", analyse)
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    try:
        await asyncio.sleep(0.2)  # asleep now, the next guardrail round a minute away
        sched.register(target("team-a", "http://prometheus.invalid"))
        await asyncio.wait_for(analysed.wait(), 10)  # not a minute later
        assert wakes == 1
    finally:
        stop.set()
        sched.wake.set()
        await asyncio.wait_for(task, 5)
