"""The operator's own Prometheus metrics (prometheus-client), served on --metrics-port.

No label is named `namespace`, `pod`, `job`, `instance` or `service`: a ServiceMonitor without
`honorLabels` attaches those from the scrape target and renames a clashing metric label to
`exported_namespace`, so a rollout's namespace is `rollout_namespace`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector, CollectorRegistry

from ftrollout import __version__

if TYPE_CHECKING:
    from ftrollout.plan import Result
    from ftrollout.plan.observe import Key
    from ftrollout.shell.state import State

ROLLOUT_LABELS = ["rollout_namespace", "rollout"]

ROLLOUTS = Gauge(
    "ftrollout_rollouts", "FreeThreadedRollouts by phase (as last reconciled)", ["phase"]
)
ROLLOUT_INFO = Gauge(
    "ftrollout_rollout_info",
    "1 per FreeThreadedRollout, labelled with its phase (as last reconciled)",
    [*ROLLOUT_LABELS, "phase"],
)
ROLLOUT_WEIGHT = Gauge(
    "ftrollout_rollout_weight",
    "Percent of replicas the current step puts on free-threaded",
    ROLLOUT_LABELS,
)
ROLLOUT_STEP = Gauge(
    "ftrollout_rollout_step",
    "Current step, counted from 1 as in messages (0: no step reached yet)",
    ROLLOUT_LABELS,
)
ROLLOUT_GIL_ENABLED = Gauge(
    "ftrollout_rollout_gil_enabled_pods",
    "Free-threaded pods of the current revision running with the GIL on (status.gil.enabled); "
    "after promotion (and its bake) a breach only alerts, through this",
    ROLLOUT_LABELS,
)
ROLLBACKS = Counter(
    "ftrollout_rollbacks_total", "Rollbacks performed, by reason", [*ROLLOUT_LABELS, "reason"]
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
BUILD_INFO = Gauge("ftrollout_build_info", "The running operator's version (value 1)", ["version"])
BUILD_INFO.labels(__version__).set(1)

_phases: dict[Key, str] = {}
_rollback_reasons: dict[Key, set[str]] = {}


class ApiWrites(Collector):
    """`ftrollout_api_writes_total`: the Kube client's own write count, read at scrape time
    (a counter: rate() and increase() work on it; it restarts at 0 with the process)."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "ftrollout_api_writes",
            "Kubernetes API writes since start",
            value=float(getattr(self.state.kube, "writes", 0)),
        )

    def describe(self) -> Iterator[Any]:
        yield CounterMetricFamily("ftrollout_api_writes", "Kubernetes API writes since start")


def observe_result(key: Key, result: Result, seconds: float) -> None:
    RECONCILE_SECONDS.observe(seconds)
    st = result.status
    phase = st.phase.value if st.phase is not None else "Unknown"
    old = _phases.get(key)
    if old != phase:
        if old is not None:
            ROLLOUTS.labels(old).dec()
            ROLLOUT_INFO.remove(*key, old)
        ROLLOUTS.labels(phase).inc()
        ROLLOUT_INFO.labels(*key, phase).set(1)
        _phases[key] = phase
    ROLLOUT_WEIGHT.labels(*key).set(st.weight or 0)
    ROLLOUT_STEP.labels(*key).set(0 if st.step_index is None else st.step_index + 1)
    ROLLOUT_GIL_ENABLED.labels(*key).set(st.gil.enabled)
    for ev in result.events:
        if ev.reason == "RolledBack" and st.rollback is not None:
            reason = st.rollback.reason.value
            ROLLBACKS.labels(*key, reason).inc()
            _rollback_reasons.setdefault(key, set()).add(reason)


def _count_query(ok: bool) -> None:
    PROMETHEUS_QUERIES.inc()
    if not ok:
        PROMETHEUS_ERRORS.inc()


def forget(key: Key) -> None:
    """A deleted rollout: its series go (the per-rollout ones would otherwise stay forever)."""
    old = _phases.pop(key, None)
    if old is not None:
        ROLLOUTS.labels(old).dec()
        ROLLOUT_INFO.remove(*key, old)
        ROLLOUT_WEIGHT.remove(*key)
        ROLLOUT_STEP.remove(*key)
        ROLLOUT_GIL_ENABLED.remove(*key)
    for reason in _rollback_reasons.pop(key, set()):
        ROLLBACKS.remove(*key, reason)


def register(state: State, registry: CollectorRegistry = REGISTRY) -> None:
    state.on_result.append(observe_result)
    scheduler = state.scheduler
    if scheduler is not None:
        scheduler.on_result.append(lambda phase: ANALYSIS_RESULTS.labels(phase).inc())
        scheduler.prom.on_query.append(_count_query)
    registry.register(ApiWrites(state))


# socketserver's serve_forever wakes every `poll_interval` only to look for a shutdown() that
# never comes (the thread is a daemon: it ends with the process). prometheus-client's
# start_http_server keeps the default 0.5 s: two wake-ups a second, each taking the GIL, were a
# fifteenth of the idle operator's CPU at 1000 rollouts. A scrape wakes the thread at once.
POLL_SECONDS = 3600.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape every 15 s is not news."""


def listen(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> ThreadingWSGIServer:
    """The metrics endpoint on a daemon thread that sleeps until a scrape comes."""
    httpd = make_server(
        addr, port, make_wsgi_app(registry), ThreadingWSGIServer, handler_class=_QuietHandler
    )
    threading.Thread(
        target=httpd.serve_forever, args=(POLL_SECONDS,), name="metrics", daemon=True
    ).start()
    return httpd
