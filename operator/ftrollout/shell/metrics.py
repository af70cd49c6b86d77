"""The operator's own Prometheus metrics (prometheus-client), served on --metrics-port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from ftrollout.plan import Result
    from ftrollout.plan.observe import Key
    from ftrollout.shell.state import State

ROLLOUTS = Gauge(
    "ftrollout_rollouts", "FreeThreadedRollouts by phase (as last reconciled)", ["phase"]
)
ROLLBACKS = Counter(
    "ftrollout_rollbacks_total", "Rollbacks performed, by reason", ["namespace", "reason"]
)
RECONCILE_SECONDS = Histogram(
    "ftrollout_reconcile_duration_seconds",
    "Time of one reconcile (observe, plan, act)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ANALYSIS_RESULTS = Counter(
    "ftrollout_analysis_results_total", "Metric analysis results", ["result"]
)
PROMETHEUS_ERRORS = Counter(
    "ftrollout_prometheus_query_errors_total", "Prometheus queries that failed or timed out"
)
PROMETHEUS_QUERIES = Counter("ftrollout_prometheus_queries_total", "Prometheus queries sent")
API_WRITES = Gauge("ftrollout_api_writes", "Kubernetes API writes since start")

_phases: dict[Key, str] = {}


def observe_result(key: Key, result: Result, seconds: float) -> None:
    RECONCILE_SECONDS.observe(seconds)
    phase = result.status.phase.value if result.status.phase is not None else "Unknown"
    old = _phases.get(key)
    if old != phase:
        if old is not None:
            ROLLOUTS.labels(old).dec()
        ROLLOUTS.labels(phase).inc()
        _phases[key] = phase
    for ev in result.events:
        if ev.reason == "RolledBack" and result.status.rollback is not None:
            ROLLBACKS.labels(key[0], result.status.rollback.reason.value).inc()


def _count_query(ok: bool) -> None:
    PROMETHEUS_QUERIES.inc()
    if not ok:
        PROMETHEUS_ERRORS.inc()


def forget(key: Key) -> None:
    old = _phases.pop(key, None)
    if old is not None:
        ROLLOUTS.labels(old).dec()


def serve(port: int, state: State) -> None:
    state.on_result.append(observe_result)
    scheduler = state.scheduler
    if scheduler is not None:
        scheduler.on_result.append(lambda phase: ANALYSIS_RESULTS.labels(phase).inc())
        scheduler.prom.on_query.append(_count_query)
    API_WRITES.set_function(lambda: float(getattr(state.kube, "writes", 0)))
    start_http_server(port)
