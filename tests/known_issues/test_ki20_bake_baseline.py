"""At promotion the baseline is deleted (phase Promoted -> 0), but the scheduler keeps
`baseline=<target>-baseline` for the bake (reconcile._register_analysis registers whenever
analysis.baseline_enabled): every compare round of the bake is Inconclusive ("baseline: no
series") although postPromotion.standardReplicas keeps standard pods running precisely so that
"analysis keeps comparing both tracks" (README/bake.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from ftrollout.model import api
from ftrollout.plan.metrics import NO_PODS
from ftrollout.shell.scheduler import AnalysisTarget, Scheduler
from ftrollout.shell.state import State


class Prom:
    async def query(self, url: str, q: str, seconds: float) -> list[dict[str, Any]]:
        return [] if NO_PODS in q else [{"value": [0, "1.0"]}]


def pod(name: str, rs: str, h: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"pod-template-hash": h},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{rs}-{h}", "controller": True}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_bake_with_warm_standard_pods_still_compares() -> None:
    state = State.__new__(State)
    from ftrollout.shell.cache import Cache

    state.cache = Cache()
    state.analysis = {}
    state.cache.put_pod(pod("web-abc-1", "web", "abc"))  # standardReplicas kept warm
    state.cache.put_pod(pod("web-ft-def-1", "web-ft", "def"))
    sched = Scheduler.__new__(Scheduler)
    sched.state, sched.prom, sched.on_result = state, Prom(), []
    analysis = api.Analysis.model_validate(
        {
            "baseline": {},
            "metrics": [
                {"name": "p99", "query": 'x{pod=~"{{pods}}"}', "compare": {"maxIncreasePercent": 5}}
            ],
        }
    )
    t = AnalysisTarget(
        namespace="ns",
        name="web",
        target="web",
        twin="web-ft",
        analysis=analysis,
        url="http://prom",
        baseline="web-baseline",  # as registered while baking
    )
    rnd = asyncio.run(sched.analyse(t))
    assert rnd.results[0].phase != "Inconclusive", rnd.results[0].message
