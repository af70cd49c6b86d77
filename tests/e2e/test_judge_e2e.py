"""The MannWhitney judge with a fresh baseline, end to end: kwok pods, a real Prometheus.

kwok pods run no code: a simulator serves each pod's p99 latency as a gauge (what a Summary's
0.99 quantile exports), with seeded lognormal noise per pod and scrape, from the pod's track:
the fresh baseline at the reference latency, the long-running standard pods 2 % faster (pod-age
bias: warm caches), the free-threaded pods 5 % slower (regression) or at the reference
(healthy). The judge samples `avg` over the track's pods once per analysis interval over the
step (a range query) and tests free-threaded against baseline.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
from e2e_operator import OperatorProcess, apply, deployment, ftr_status, replicas, rollout, wait_for
from test_engine import CapacityWatch

from ftrollout_dev.localcluster import LocalCluster, PodMetricsExporter, PrometheusHandle
from ftrollout_dev.simulator import REQUESTS_PER_TICK, PodSeries, Simulator

pytestmark = pytest.mark.e2e
N = 10
REFERENCE_P99 = 0.100
NOISE_SIGMA = 0.03  # lognormal sigma per pod and sample: ~3 % scrape-to-scrape jitter
STANDARD_BIAS = 0.98  # warm standard pods are 2 % faster than fresh ones
P99_GAUGE_QUERY = (
    'avg(app_latency_p99_seconds{namespace="{{namespace}}", pod=~"{{pods}}"})'
)  # fmt: skip


class LatencySimulator(Simulator):
    """The e2e Simulator (histogram, probe metrics) plus a noisy per-pod p99 gauge by track."""

    def __init__(self, *args: Any, free_threaded_factor: float, seed: int) -> None:
        super().__init__(*args)
        self.factors = {
            "standard": STANDARD_BIAS,
            "baseline": 1.0,
            "free-threaded": free_threaded_factor,
        }
        self.rng = random.Random(seed)

    def _traffic(self, pod: str, s: PodSeries, count: float = REQUESTS_PER_TICK) -> None:
        super()._traffic(pod, s, count)
        value = REFERENCE_P99 * self.factors.get(s.track, 1.0)
        value *= self.rng.lognormvariate(0.0, NOISE_SIGMA)
        self.sink.set("app_latency_p99_seconds", value, **self._labels(pod))

    def _forget(self, pod: str) -> None:
        super()._forget(pod)
        self.sink.remove("app_latency_p99_seconds", **self._labels(pod))


@dataclass
class Env:
    cluster: LocalCluster
    ns: str
    exporter: PodMetricsExporter
    prometheus: PrometheusHandle

    def status(self) -> dict[str, Any]:
        return ftr_status(self.cluster, self.ns, "web")

    def until(self, what: str, cond: Any, timeout: float) -> None:
        try:
            wait_for(cond, timeout, what)
        except AssertionError as exc:
            st = self.status()
            brief = {k: st.get(k) for k in ("phase", "stepIndex", "message", "analysis")}
            raise AssertionError(f"{exc}\nstatus: {json.dumps(brief, indent=1)}") from None

    def simulate(self, free_threaded_factor: float, seed: int) -> LatencySimulator:
        client = kubernetes.config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        return LatencySimulator(
            kubernetes.client.CoreV1Api(client),
            self.ns,
            "app=web",  # the baseline's pods carry the target's labels: served too
            self.exporter,
            free_threaded_factor=free_threaded_factor,
            seed=seed,
        )


@pytest.fixture
def env(
    cluster: LocalCluster,
    namespace: str,
    exporter: PodMetricsExporter,
    prometheus_factory: Any,
) -> Env:
    apply(cluster, namespace, deployment("web", N))
    wait_for(lambda: replicas(cluster, namespace, "web") == (N, N), 60, "10 Ready pods")
    return Env(cluster, namespace, exporter, prometheus_factory([exporter.target]))


STEPS = [
    {"weight": 50, "pause": {"duration": "12s"}},
    {"weight": 100, "pause": {"duration": "12s"}},
]


def judged_rollout(env: Env) -> dict[str, Any]:
    analysis = {
        "prometheus": {"address": env.prometheus.url, "timeout": "3s"},
        "interval": "1s",
        "failureLimit": 0,
        "onInconclusive": "Pause",
        "baseline": {},
        "metrics": [
            {
                "name": "p99-latency",
                "query": P99_GAUGE_QUERY,
                "compare": {
                    "judge": "MannWhitney",
                    "maxIncreasePercent": 2,
                    "confidence": 0.99,
                    "minSamples": 8,
                },
            }
        ],
    }
    return rollout("web", "web", STEPS, analysis=analysis)


def p99_result(st: dict[str, Any]) -> dict[str, Any]:
    results = {m["name"]: m for m in st.get("analysis", {}).get("metrics", [])}
    return results["p99-latency"]


def test_a_5_percent_p99_regression_is_caught_against_the_fresh_baseline(
    operator: OperatorProcess, env: Env
) -> None:
    sim = env.simulate(free_threaded_factor=1.05, seed=20)
    sim.start()
    try:
        apply(env.cluster, env.ns, judged_rollout(env))
        env.until("RolledBack", lambda: env.status().get("phase") == "RolledBack", 100)
    finally:
        sim.stop()
    st = env.status()
    assert st["rollback"]["reason"] == "AnalysisFailed"
    message = st["rollback"]["message"]
    # The judge's numbers: the effect against the baseline, its interval, p and n per track.
    m = re.search(
        r"p99-latency: free-threaded \+(\d+\.\d)% vs baseline "
        r"\(99% CI ([+-]\d+\.\d)%\.\.\+(\d+\.\d)%, p=([0-9.e-]+), n=(\d+)/(\d+)\) "
        r"> \+2% allowed",
        message,
    )
    assert m, message
    effect, low, high = (float(m.group(i)) for i in (1, 2, 3))
    assert 3.0 <= effect <= 7.5, message
    assert 0.0 < low <= effect <= high, message
    assert float(m.group(4)) < 0.01
    assert min(int(m.group(5)), int(m.group(6))) >= 8
    numbers = p99_result(st)["statistics"]
    assert numbers["effectPercent"] == pytest.approx(effect, abs=0.06)
    assert numbers["pValue"] < 0.01
    assert numbers["freeThreadedSamples"] >= 8
    assert numbers["standardSamples"] >= 8
    # Rolled back: the standard track whole again, the twin and the baseline gone.
    wait_for(lambda: replicas(env.cluster, env.ns, "web") == (N, N), 60, "standard restored")
    wait_for(lambda: replicas(env.cluster, env.ns, "web-ft")[0] == 0, 60, "twin at 0")
    wait_for(
        lambda: replicas(env.cluster, env.ns, "web-baseline") == (-1, -1), 60, "baseline removed"
    )


def test_b_a_healthy_canary_is_promoted_and_its_baseline_removed(
    operator: OperatorProcess, env: Env
) -> None:
    sim = env.simulate(free_threaded_factor=1.0, seed=21)
    sim.start()
    try:
        with CapacityWatch(env.cluster, env.ns, "web") as cap:
            apply(env.cluster, env.ns, judged_rollout(env))
            baseline_seen = wait_for(
                lambda: replicas(env.cluster, env.ns, "web-baseline")[1] >= N // 2,
                60,
                "the baseline at the twin's size",
            )
            env.until("Promoted", lambda: env.status().get("phase") == "Promoted", 110)
            result = p99_result(env.status())
    finally:
        sim.stop()
    assert baseline_seen
    assert cap.samples > 0
    assert cap.min_ready >= N, f"capacity dropped to {cap.min_ready}"
    assert result["phase"] == "Successful", result
    assert "vs baseline" in result["message"], result
    numbers = result["statistics"]
    assert numbers["freeThreadedSamples"] >= 8
    assert numbers["standardSamples"] >= 8
    assert -2.0 < numbers["effectPercent"] < 2.0, result
    wait_for(
        lambda: replicas(env.cluster, env.ns, "web-baseline") == (-1, -1),
        60,
        "baseline removed after promotion",
    )
    assert replicas(env.cluster, env.ns, "web-ft") == (N, N)
