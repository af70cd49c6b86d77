"""A traffic and runtime simulator for kwok pods (demo and e2e tests).

kwok pods run no process, so nothing would answer a scrape. The simulator lists the pods of a
target Deployment and its free-threaded twin and serves, per pod, what a real service with the
ftrollout probe would export: a request-latency histogram, request and error counters, and the
probe's GIL metrics. Knobs decide how the free-threaded track behaves (slower, GIL on in some
pods, ...). The operator only sees it through a real Prometheus and real PromQL.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ftrollout.plan.twin import LABEL_TRACK, TRACK_FREE_THREADED, TRACK_STANDARD

# Latency buckets 1.1x apart around typical service latencies, so histogram_quantile resolves
# a 10 % difference.
BUCKETS = tuple(round(0.005 * 1.1**i, 6) for i in range(70))
REQUESTS_PER_TICK = 100


class Sink(Protocol):
    def set(self, name: str, value: float, **labels: str) -> None: ...
    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None: ...
    def remove(self, name: str, **labels: str) -> None: ...


@dataclass
class Knobs:
    p99_seconds: float = 0.100  # standard track's p99 latency
    free_threaded_slowdown: float = 1.0  # multiplier on the free-threaded p99
    error_ratio: float = 0.001
    gil_on_pods: int = 0  # how many free-threaded pods report the GIL re-enabled
    fallback_module: str = "legacy_ext"
    serve_probe: bool = True
    # What a Gateway would do with an HTTPRoute's weights: the share of all requests that go to
    # the free-threaded pods (None: every pod serves the same, as behind a plain Service).
    free_threaded_request_share: float | None = None


@dataclass
class PodSeries:
    track: str
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)


class Simulator:
    """Keeps `sink` in step with the pods of `target` (and its twin) in `namespace`."""

    def __init__(self, core_api: Any, namespace: str, selector: str, sink: Sink) -> None:
        self.core = core_api
        self.namespace = namespace
        self.selector = selector
        self.sink = sink
        self.knobs = Knobs()
        self.pods: dict[str, PodSeries] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    # --- lifecycle
    def start(self, period: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(Exception):
                    self.tick()
                self._stop.wait(period)

        self._thread = threading.Thread(target=loop, daemon=True, name="simulator")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- one step
    def list_pods(self) -> list[tuple[str, str]]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        out = []
        for p in pods:
            if p.metadata.deletion_timestamp is not None:
                continue
            labels = p.metadata.labels or {}
            out.append((p.metadata.name, labels.get(LABEL_TRACK) or "standard"))
        return sorted(out)

    def tick(self) -> None:
        self.apply(self.list_pods())

    def apply(self, pods: Iterable[tuple[str, str]]) -> None:
        with self.lock:
            current = dict(pods)
            for gone in set(self.pods) - set(current):
                self._forget(gone)
            ft_names = sorted(n for n, t in current.items() if t == TRACK_FREE_THREADED)
            gil_on = set(ft_names[: self.knobs.gil_on_pods])
            per_pod = self._requests_per_pod(current)
            for name, track in current.items():
                series = self.pods.setdefault(name, PodSeries(track))
                self._traffic(name, series, per_pod.get(track, REQUESTS_PER_TICK))
                self._probe(name, track, name in gil_on)

    def _requests_per_pod(self, current: dict[str, str]) -> dict[str, float]:
        """Requests of one tick per pod of each track: the same for all without a route split;
        with one, the tracks share all pods' requests by the split, evenly within a track."""
        share = self.knobs.free_threaded_request_share
        out = {
            TRACK_FREE_THREADED: float(REQUESTS_PER_TICK),
            TRACK_STANDARD: float(REQUESTS_PER_TICK),
        }
        if share is None:
            return out
        total = REQUESTS_PER_TICK * len(current)
        n_ft = sum(1 for t in current.values() if t == TRACK_FREE_THREADED)
        n_std = len(current) - n_ft
        out[TRACK_FREE_THREADED] = total * share / n_ft if n_ft else 0.0
        out[TRACK_STANDARD] = total * (1 - share) / n_std if n_std else 0.0
        return out

    def _labels(self, pod: str) -> dict[str, str]:
        return {"namespace": self.namespace, "pod": pod}

    def _traffic(self, pod: str, s: PodSeries, count: float = REQUESTS_PER_TICK) -> None:
        k = self.knobs
        p99 = k.p99_seconds * (k.free_threaded_slowdown if s.track == TRACK_FREE_THREADED else 1)
        # 98 fast requests at half the p99, 2 slow ones at the p99: histogram_quantile(0.99)
        # then lands on p99.
        latencies = [(p99 * 0.5, count * 0.98), (p99, count * 0.02)]
        for le in BUCKETS:
            s.buckets[le] = s.buckets.get(le, 0.0) + sum(n for lat, n in latencies if lat <= le)
        s.requests += count
        s.errors += count * k.error_ratio
        labels = self._labels(pod)
        for le, count in s.buckets.items():
            self.sink.set("http_request_duration_seconds_bucket", count, le=f"{le:g}", **labels)
        self.sink.set("http_request_duration_seconds_bucket", s.requests, le="+Inf", **labels)
        self.sink.set("http_request_duration_seconds_count", s.requests, **labels)
        self.sink.set("http_requests_total", s.requests, **labels)
        self.sink.set("http_errors_total", s.errors, **labels)

    def _probe(self, pod: str, track: str, gil_on: bool) -> None:
        labels = self._labels(pod)
        if not self.knobs.serve_probe:
            return
        ft = track == TRACK_FREE_THREADED
        self.sink.set("python_freethreading_build", 1 if ft else 0, **labels)
        # The module counter first: a scrape between the two writes must never show the GIL
        # on without the module that turned it on (the real probe updates both at once).
        if gil_on:
            self.sink.set(
                "python_gil_fallback_total", 1, module=self.knobs.fallback_module, **labels
            )
        self.sink.set("python_gil_enabled", 1 if (gil_on or not ft) else 0, **labels)
        if not gil_on:
            self.sink.remove(
                "python_gil_fallback_total", module=self.knobs.fallback_module, **labels
            )

    def _forget(self, pod: str) -> None:
        s = self.pods.pop(pod)
        labels = self._labels(pod)
        for le in s.buckets:
            self.sink.remove("http_request_duration_seconds_bucket", le=f"{le:g}", **labels)
        self.sink.remove("http_request_duration_seconds_bucket", le="+Inf", **labels)
        for name in (
            "http_request_duration_seconds_count",
            "http_requests_total",
            "http_errors_total",
            "python_freethreading_build",
            "python_gil_enabled",
        ):
            self.sink.remove(name, **labels)
        self.sink.remove("python_gil_fallback_total", module=self.knobs.fallback_module, **labels)


def app_deployment(
    name: str, replicas: int, image: str = "example/app:3.13", namespace: str | None = None
) -> dict[str, Any]:
    """A one-container Deployment whose pods any kwok node takes (they tolerate every taint):
    the service the demo, the tests and the benchmark roll out."""
    labels = {"app": name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": image}],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        },
    }


def crash_status_patch(container: str, image: str, exit_code: int = 139) -> dict[str, Any]:
    """A pod-status patch saying `container` just crashed with `exit_code` and restarted.

    kwok runs no processes: this is how the demo and the tests make a free-threaded pod crash
    the way the kubelet would report it.
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": "",
                    "ready": True,
                    "restartCount": 1,
                    "started": True,
                    "state": {"running": {"startedAt": now}},
                    "lastState": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Error",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ]
        }
    }


P99_QUERY = (
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
    '{namespace="{{namespace}}", pod=~"{{pods}}"}[20s])))'
)
ERROR_RATIO_QUERY = (
    'sum(rate(http_errors_total{namespace="{{namespace}}", pod=~"{{pods}}"}[20s])) / '
    'sum(rate(http_requests_total{namespace="{{namespace}}", pod=~"{{pods}}"}[20s]))'
)
