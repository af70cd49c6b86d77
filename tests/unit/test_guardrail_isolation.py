"""Tenant isolation of the batched guardrail queries: a series from a rollout's own Prometheus
counts only in the namespaces of the rollouts that registered that address.

Two teams, two namespaces, one Prometheus each; team A's is hostile and claims team B's pod runs
with the GIL on and crashed 99 times. Team B's rollout must not see any of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prom_stub import Answer, PromStub, vector

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
    if "python_gil_enabled" in promql:
        return vector(
            ({"namespace": "team-a", "pod": POD_A}, 0), ({"namespace": "team-b", "pod": POD_B}, 1)
        )
    if "python_freethreading_incidents_total" in promql:
        return vector(({"namespace": "team-b", "pod": POD_B}, 99))
    if "python_gil_fallback_total" in promql:
        return vector(({"namespace": "team-b", "pod": POD_B, "module": "evil"}, 1))
    return vector()


def honest_b(promql: str) -> Answer:
    if "python_gil_enabled" in promql:
        return vector(({"namespace": "team-b", "pod": POD_B}, 0))
    return vector()


def own(promql: str) -> Answer:
    if "python_freethreading_incidents_total" in promql:
        return vector(({"namespace": "team-c", "pod": POD_C}, 2))
    return vector()


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
    sched.unregister(("team-a", "web"))  # e.g. Promoted: its pods are still watched a while
    await sched.guard_round()
    assert stubs["a"].queries
    assert ("team-b", POD_B) not in state.gil
    assert ("team-b", POD_B) not in state.probe_counts
    assert state.gil[("team-a", POD_A)] == GilReading(enabled=False)
