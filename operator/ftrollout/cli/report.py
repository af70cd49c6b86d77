"""Adoption KPIs of a FreeThreadedRollout (`kubectl ftr report`), pure maths.

DESIGN.md lists six: throughput per core delta, p99 delta, RSS delta, share of traffic with the
GIL off, free-threaded incident rate and the fraction of gated dependencies verified. The first
three compare the free-threaded track with the standard one; they come from the rollout's own
analysis results when a metric measures them, otherwise from Prometheus queries (I/O lives in
the plugin; this module only turns numbers into KPIs). Once no standard pod is left (after
promotion) they come from the last comparison of both tracks kept in status, with its time.
The last three come from status, except the traffic share with the GIL off when traffic routing
decides the split: it then comes from request counts per pod (`REQUESTS_QUERY`), a request
share not being a pod share.

A KPI that cannot be computed says why ("n/a (no Prometheus: ...)"); it is never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ftrollout.model import api
from ftrollout.model.durations import parse_duration

# Default PromQL per comparative KPI, tried in order until one yields a value. Same template
# variables as spec.analysis queries; overridable with `kubectl ftr report --query NAME=PROMQL`.
DEFAULT_QUERIES: dict[str, tuple[str, ...]] = {
    "throughput": (
        'sum(rate(http_requests_total{namespace="{{namespace}}", pod=~"{{pods}}"}[5m])) / '
        'sum(rate(container_cpu_usage_seconds_total{namespace="{{namespace}}", '
        'pod=~"{{pods}}", container!=""}[5m]))',
        'sum(rate(http_requests_total{namespace="{{namespace}}", pod=~"{{pods}}"}[5m])) / '
        'sum(rate(process_cpu_seconds_total{namespace="{{namespace}}", pod=~"{{pods}}"}[5m]))',
    ),
    "p99": (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{namespace="{{namespace}}", pod=~"{{pods}}"}[5m])))',
    ),
    "rss": (
        'avg(container_memory_rss{namespace="{{namespace}}", pod=~"{{pods}}", container!=""})',
        'avg(process_resident_memory_bytes{namespace="{{namespace}}", pod=~"{{pods}}"})',
    ),
}

# Requests per second of each pod of one track, for the traffic share with the GIL off when
# traffic routing is on. Same template variables; overridable with `--query requests=PROMQL`,
# which must keep the `pod` label (the GIL state is known per pod).
REQUESTS_QUERY = (
    'sum by (pod) (rate(http_requests_total{namespace="{{namespace}}", pod=~"{{pods}}"}[5m]))'
)

# Which analysis metrics (by name) already measure a comparative KPI.
ANALYSIS_NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    "throughput": re.compile(r"throughput|rps|requests-per"),
    "p99": re.compile(r"p99|latency"),
    "rss": re.compile(r"rss|memory"),
}

TITLES = {
    "throughput": "Throughput per core delta",
    "p99": "p99 latency delta",
    "rss": "RSS delta",
    "gil_off_share": "Traffic share with the GIL off",
    "incident_rate": "Free-threaded incident rate",
    "deps_verified": "Gated dependencies verified",
}


@dataclass(frozen=True)
class TrackValues:
    """One comparative measurement: both tracks' values, or why there are none."""

    free_threaded: float | None
    standard: float | None
    source: str = ""
    problem: str = ""


@dataclass(frozen=True)
class Kpi:
    key: str
    title: str
    value: float | None  # percent for deltas and shares, incidents per pod-hour for the rate
    text: str  # what the user reads: "+12.3 %", "n/a (why)"
    detail: str = ""  # the numbers behind it, or the source

    @property
    def available(self) -> bool:
        return self.value is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "title": self.title,
            "value": self.value,
            "text": self.text,
            "detail": self.detail,
        }


def na(key: str, why: str) -> Kpi:
    return Kpi(key, TITLES[key], None, f"n/a ({why})")


def fmt_number(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


def fmt_bytes(v: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} GiB"  # pragma: no cover


def relative_delta(free_threaded: float, standard: float) -> float | None:
    """(ft - std) / std in percent; None when the standard value is 0 (no meaningful ratio)."""
    if standard == 0:
        return None
    return (free_threaded - standard) / abs(standard) * 100.0


def from_analysis(status: api.RolloutStatus, key: str) -> TrackValues | None:
    """The latest analysis result of a compare metric that measures this KPI, if any."""
    pattern = ANALYSIS_NAME_PATTERNS[key]
    for m in status.analysis.metrics:
        if pattern.search(m.name) and m.free_threaded is not None and m.standard is not None:
            return TrackValues(m.free_threaded, m.standard, source=f"analysis metric {m.name}")
    return None


def latest_round_compared(status: api.RolloutStatus) -> bool:
    """Whether the latest analysis round measured running pods of both tracks. Without a kept
    comparison (an older operator's status) the latest round is taken as it is."""
    kept = status.analysis.last_comparison
    return kept is None or kept.time == status.analysis.last_round


def from_comparison(status: api.RolloutStatus, key: str) -> TrackValues | None:
    """The kept comparison of both tracks (`status.analysis.lastComparison`), with its time:
    after promotion no standard pod is left to measure, and this is what a team reads."""
    kept = status.analysis.last_comparison
    if kept is None:
        return None
    pattern = ANALYSIS_NAME_PATTERNS[key]
    when = (
        "during the bake, against the standard replicas kept warm"
        if kept.bake
        else f"at {kept.weight}% free-threaded"
    )
    for m in kept.metrics:
        if pattern.search(m.name):
            return TrackValues(
                m.free_threaded,
                m.standard,
                source=f"analysis metric {m.name}, last measured on both tracks at "
                f"{kept.time} ({when})",
            )
    return None


def delta_kpi(key: str, values: TrackValues | None, why_missing: str) -> Kpi:
    if values is None:
        return na(key, why_missing)
    if values.free_threaded is None or values.standard is None:
        return na(key, values.problem or why_missing)
    delta = relative_delta(values.free_threaded, values.standard)
    if delta is None:
        return na(key, "the standard track's value is 0")
    show = fmt_bytes if key == "rss" else fmt_number
    detail = f"free-threaded {show(values.free_threaded)} vs standard {show(values.standard)}" + (
        f"; {values.source}" if values.source else ""
    )
    return Kpi(key, TITLES[key], delta, f"{delta:+.1f} %", detail)


@dataclass(frozen=True)
class RequestCounts:
    """Requests per second of each Running pod of both tracks, and which free-threaded pods run
    with the GIL off as the probe reports them per pod (None: not known per pod)."""

    free_threaded: Mapping[str, float]
    standard: Mapping[str, float]
    gil_off: frozenset[str] | None
    source: str = ""


def routing_on(spec: api.RolloutSpec | None, status: api.RolloutStatus) -> bool:
    """Traffic routing decides the split (spec), or the routes still carry its weights."""
    routing = spec.traffic_routing if spec is not None else None
    if routing is not None and routing.gateway_api is not None:
        return True
    return status.traffic_routing is not None and bool(status.traffic_routing.routes)


def _rate(v: float) -> str:
    return f"{fmt_number(v)} req/s"


def gil_off_share(
    status: api.RolloutStatus,
    spec: api.RolloutSpec | None = None,
    requests: RequestCounts | None = None,
    requests_why: str = "",
) -> Kpi:
    """The share of traffic served by free-threaded pods with the GIL off.

    Without traffic routing a step's weight is a share of pods, so the share of Ready pods
    stands for it. With routing it is a share of requests: free-threaded requests on pods with
    the GIL off / all requests of both tracks, from `requests`; without them (no Prometheus, no
    request metric) the replica share is shown, saying so.
    """
    replica = _replica_share(status)
    if not routing_on(spec, status):
        return replica
    if requests is None:
        return _noted(replica, requests_why or "no request counts")
    ft_total = sum(requests.free_threaded.values())
    total = ft_total + sum(requests.standard.values())
    if total <= 0:
        return _noted(replica, f"no requests counted ({requests.source})")
    off_pods = requests.gil_off
    if off_pods is None:
        g = status.gil
        if g.pods > 0 and g.disabled == g.pods:
            off_pods = frozenset(requests.free_threaded)  # every free-threaded pod is off
        else:
            return _noted(
                replica,
                "the GIL state of each free-threaded pod is not known (no probe metrics in "
                "Prometheus) and not every one is off",
            )
    off = sum(v for pod, v in requests.free_threaded.items() if pod in off_pods)
    share = off / total * 100.0
    detail = f"{_rate(off)} of {_rate(total)} on free-threaded pods with the GIL off"
    rest = ft_total - off
    if rest > 0:
        detail += f"; {_rate(rest)} on free-threaded pods with the GIL on or not known"
    if status.traffic_routing is not None:
        detail += f"; route weight {status.traffic_routing.weight}%"
    # A rate lags a weight change by its window, and probes are requests too: said, so a
    # share just after a step, or on a quiet service, is read for what it is.
    detail += "; rates over the query's window (5m by default), readiness-probe requests included"
    if requests.source:
        detail += f"; {requests.source}"
    return Kpi("gil_off_share", TITLES["gil_off_share"], share, f"{share:.1f} %", detail)


def _noted(replica: Kpi, why: str) -> Kpi:
    """The replica share standing in for the request share, saying why."""
    if replica.value is None:  # no share at all: its own reason says why
        return replica
    note = f"replica share, not requests ({why})"
    detail = f"{note}; {replica.detail}" if replica.detail else note
    return Kpi(replica.key, replica.title, replica.value, replica.text, detail)


def _replica_share(status: api.RolloutStatus) -> Kpi:
    """Ready free-threaded pods running without the GIL / all Ready pods of both tracks."""
    r, g = status.replicas, status.gil
    if status.phase is None:
        return na("gil_off_share", "the operator has not reported status yet")
    total_ready = r.standard_ready + r.free_threaded_ready
    if total_ready == 0:
        total_ready = r.ready
    if total_ready == 0:
        return na("gil_off_share", "no Ready pods")
    off = min(g.disabled, r.free_threaded_ready)
    share = off / total_ready * 100.0
    detail = f"{off} of {total_ready} Ready pods free-threaded with the GIL off"
    if g.enabled:
        detail += f"; {g.enabled} with the GIL ON"
    if g.unknown:
        detail += f"; {g.unknown} not known yet"
    return Kpi("gil_off_share", TITLES["gil_off_share"], share, f"{share:.1f} %", detail)


def incident_rate(status: api.RolloutStatus) -> Kpi:
    """Free-threaded incidents (crashes 139/134, probe incidents) per free-threaded pod-hour."""
    races = status.races
    if status.phase is None or not races.window:
        return na("incident_rate", "the operator has not reported status yet")
    try:
        hours = parse_duration(races.window) / 3600.0
    except ValueError:
        return na("incident_rate", f"unreadable window {races.window!r}")
    pods = max(status.replicas.free_threaded, status.replicas.free_threaded_ready)
    budget = f"budget {races.budget} per {races.window}"
    if pods == 0 or hours <= 0:
        if races.incidents == 0:
            return na("incident_rate", "no free-threaded pods running")
        return Kpi(
            "incident_rate",
            TITLES["incident_rate"],
            None,
            f"{races.incidents} in {races.window}",
            f"no free-threaded pods running now; {budget}",
        )
    rate = races.incidents / (pods * hours)
    return Kpi(
        "incident_rate",
        TITLES["incident_rate"],
        rate,
        f"{fmt_number(rate)} per pod-hour",
        f"{races.incidents} in the last {races.window} over {pods} free-threaded pods; {budget}",
    )


def deps_verified(spec: api.RolloutSpec | None, status: api.RolloutStatus) -> Kpi:
    """Gated modules that imported with the GIL still off / modules listed in the gate."""
    gate = spec.guardrails.dependency_gate if spec is not None else None
    if gate is None or not gate.modules:
        return na("deps_verified", "no guardrails.dependencyGate in the spec")
    pf = status.preflight
    if pf is None or not pf.modules:
        phase = pf.phase if pf is not None else "not run"
        return na("deps_verified", f"preflight {phase.lower()} yet, 0 of {len(gate.modules)}")
    reports = {m.name: m for m in pf.modules}
    ok = [
        name
        for name in gate.modules
        if (m := reports.get(name)) is not None and m.imported and m.gil_enabled is False
    ]
    bad = [name for name in gate.modules if name not in ok]
    share = len(ok) / len(gate.modules) * 100.0
    detail = f"{len(ok)}/{len(gate.modules)} import with the GIL off"
    if bad:
        detail += f"; not verified: {', '.join(bad)}"
    if pf.python_version:
        detail += f"; {pf.python_version.splitlines()[0]}"
    return Kpi("deps_verified", TITLES["deps_verified"], share, f"{share:.0f} %", detail)


def compute(
    spec: api.RolloutSpec | None,
    status: api.RolloutStatus,
    prometheus: Mapping[str, TrackValues] | None,
    prometheus_why: str,
    requests: RequestCounts | None = None,
    requests_why: str = "",
) -> list[Kpi]:
    """All six KPIs. `prometheus` maps throughput/p99/rss to measured values (None: no
    Prometheus, `prometheus_why` says why); `requests` are the request counts per pod for the
    traffic share with routing (None: `requests_why` says why)."""
    out: list[Kpi] = []
    compared = latest_round_compared(status)
    for key in ("throughput", "p99", "rss"):
        # The latest round when it measured both tracks, then Prometheus now (both tracks
        # running), then the last comparison kept in status (no standard pod left).
        values = from_analysis(status, key) if compared else None
        if values is None and prometheus is not None:
            live = prometheus.get(key)
            if live is not None and live.free_threaded is not None and live.standard is not None:
                values = live
            else:
                values = from_comparison(status, key) or live
        elif values is None:
            values = from_comparison(status, key)
        why = prometheus_why
        if values is None and status.analysis.last_comparison is not None:
            why += (
                f"; the comparison kept from {status.analysis.last_comparison.time} has no "
                "analysis metric for it"
            )
        out.append(delta_kpi(key, values, why))
    out.append(gil_off_share(status, spec, requests, requests_why or prometheus_why))
    out.append(incident_rate(status))
    out.append(deps_verified(spec, status))
    return out
