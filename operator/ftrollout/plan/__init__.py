"""The planner: pure decisions over observations (no kopf, no Kubernetes client, no I/O).

`plan(spec, status, observation) -> Result` is the one entry point; the modules beside it hold
one concern each (replicas, steps, actions, guardrails, analysis, conditions, preflight, twin).
"""

from ftrollout.plan.conditions import set_condition
from ftrollout.plan.reconcile import plan
from ftrollout.plan.types import (
    ACTIONS,
    FIELD_MANAGER,
    AnalysisRound,
    Event,
    EventType,
    Observation,
    PodGil,
    Result,
    Workload,
    parse_time,
    rfc3339,
)

__all__ = [
    "ACTIONS",
    "FIELD_MANAGER",
    "AnalysisRound",
    "Event",
    "EventType",
    "Observation",
    "PodGil",
    "Result",
    "Workload",
    "parse_time",
    "plan",
    "rfc3339",
    "set_condition",
]
