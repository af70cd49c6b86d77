"""Shared helpers of the planner's table-driven tests (tests/unit/plan/test_*.py).

Every test states what a user of `kubectl get/describe ftr` or of their Service would notice:
replica counts on each track, phase/step/weight in status, conditions and events. The simulator
(`simcluster.Sim`) makes pods Ready `lag` plan calls after a scale-up and removes them at once on a
scale-down (the worst case for capacity).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from simcluster import Sim

from ftrollout.model import api
from ftrollout.plan import Result

# (weight, pause): a duration, None for `pause: {}` (waits for a promote), or NO_PAUSE for a step
# without a `pause` field (does not hold).
StepDef = tuple[int, str | None]
NO_PAUSE = "<no pause field>"
DESIGN_STEPS: tuple[StepDef, ...] = ((10, "5m"), (50, "10m"), (100, None))


def make_spec(
    steps: tuple[StepDef, ...] = DESIGN_STEPS,
    *,
    metrics: tuple[str, ...] = (),
    failure_limit: int = 2,
    on_inconclusive: str = "Pause",
    gil: dict[str, Any] | None = None,
    races: dict[str, Any] | None = None,
    paused: bool = False,
) -> api.RolloutSpec:
    raw: dict[str, Any] = {
        "targetRef": {"name": "app"},
        "freeThreaded": {"image": "registry.example/app:2.0-py3.14t"},
        "steps": [step_raw(w, d) for w, d in steps],
        "paused": paused,
        "guardrails": {
            "gilFallback": gil or {"maxPods": 0, "action": "Rollback"},
            "raceBudget": races or {"maxIncidents": 3, "window": "1h", "action": "Rollback"},
        },
    }
    if metrics:
        raw["analysis"] = {
            "interval": "1m",
            "failureLimit": failure_limit,
            "onInconclusive": on_inconclusive,
            "metrics": [{"name": m, "query": "up", "threshold": {"max": 1}} for m in metrics],
        }
    return api.parse_spec(raw)


def step_raw(weight: int, pause: str | None) -> dict[str, Any]:
    if pause == NO_PAUSE:
        return {"weight": weight}
    return {"weight": weight, "pause": {} if pause is None else {"duration": pause}}


def cond(status: api.RolloutStatus, type_: str) -> api.Condition:
    found = [c for c in status.conditions if c.type == type_]
    assert len(found) == 1, f"expected exactly one {type_} condition, got {status.conditions}"
    return found[0]


def reached(idx: int) -> Callable[[Sim], bool]:
    """Predicate: step `idx` reached (its replicas Ready, pause clock running)."""
    return lambda s: s.status.step_index == idx and s.status.step_started_at is not None


def at_step(sim: Sim, idx: int, **extra: object) -> Sim:
    """Reconcile until step `idx` is reached (`extra` goes into every observation)."""
    for _ in range(200):
        if reached(idx)(sim):
            return sim
        sim.step(1.0, **extra)
    raise AssertionError(f"step {idx} not reached: {sim.status.message}")


def pause_elapsed(sim: Sim, seconds: float) -> None:
    """Let wall-clock time pass without a reconcile in between (the shell's requeue)."""
    sim.now += timedelta(seconds=seconds)


def step_checked(sim: Sim, n: int, advance: float = 1.0, **extra: object) -> Result:
    res = sim.step(advance, **extra)
    assert sim.ready >= n, f"ready capacity {sim.ready} < {n}: std={sim.std} ft={sim.ft}"
    return res
