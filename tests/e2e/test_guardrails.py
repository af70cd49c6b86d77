"""Analysis and guardrails end to end: real apiserver + kwok pods, real Prometheus, real PromQL.

A simulator serves per-pod series for both tracks (latency histogram, errors, probe GIL
metrics); Prometheus scrapes it every second; the operator queries Prometheus. The last two
tests are the post-promotion bake: a GIL fallback rolls back during it (from warm standard
pods) and only alerts after it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
from e2e_operator import (
    OperatorProcess,
    apply,
    deployment,
    events,
    ftr_status,
    replicas,
    rollout,
    wait_for,
)
from test_engine import CapacityWatch

from ftrollout_dev.localcluster import LocalCluster, PodMetricsExporter, PrometheusHandle
from ftrollout_dev.simulator import ERROR_RATIO_QUERY, P99_QUERY, Simulator, crash_status_patch

pytestmark = pytest.mark.e2e
N = 10


@dataclass
class Env:
    cluster: LocalCluster
    ns: str
    sim: Simulator
    prometheus: PrometheusHandle

    def status(self) -> dict[str, Any]:
        return ftr_status(self.cluster, self.ns, "web")

    def phase(self) -> str | None:
        return self.status().get("phase")

    def until(self, what: str, cond: Any, timeout: float) -> None:
        """wait_for with the rollout's status in the failure message."""
        try:
            wait_for(cond, timeout, what)
        except AssertionError as exc:
            st = self.status()
            brief = {
                k: st.get(k) for k in ("phase", "stepIndex", "message", "analysis", "gil", "races")
            }
            raise AssertionError(f"{exc}\nstatus: {json.dumps(brief, indent=1)}") from None


@pytest.fixture
def env(
    cluster: LocalCluster,
    namespace: str,
    exporter: PodMetricsExporter,
    prometheus_factory: Any,
) -> Iterator[Env]:
    apply(cluster, namespace, deployment("web", N))
    wait_for(lambda: replicas(cluster, namespace, "web") == (N, N), 60, "10 Ready pods")
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    sim = Simulator(kubernetes.client.CoreV1Api(client), namespace, "app=web", exporter)
    sim.start()
    prom = prometheus_factory([exporter.target])
    try:
        yield Env(cluster, namespace, sim, prom)
    finally:
        sim.stop()


def analysed_rollout(env: Env, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    analysis = {
        "prometheus": {"address": env.prometheus.url, "timeout": "3s"},
        "interval": "2s",
        "failureLimit": 0,
        "onInconclusive": "Pause",
        "metrics": [
            {"name": "p99-latency", "query": P99_QUERY, "compare": {"maxIncreasePercent": 10}},
            {"name": "error-ratio", "query": ERROR_RATIO_QUERY, "threshold": {"max": 0.01}},
        ],
    }
    analysis.update(spec.pop("analysis", {}))
    return rollout("web", "web", steps, analysis=analysis, **spec)


FAST_STEPS = [
    {"weight": 10, "pause": {"duration": "3s"}},
    {"weight": 50, "pause": {"duration": "3s"}},
    {"weight": 100, "pause": {"duration": "3s"}},
]
HOLD_AT_50 = [
    {"weight": 10, "pause": {"duration": "2s"}},
    {"weight": 50, "pause": {}},
    {"weight": 100},
]


def test_a_healthy_metrics_promote(operator: OperatorProcess, env: Env) -> None:
    apply(env.cluster, env.ns, analysed_rollout(env, FAST_STEPS))
    env.until("Promoted", lambda: env.phase() == "Promoted", 150)
    st = env.status()
    results = {m["name"]: m for m in st["analysis"]["metrics"]}
    assert results["p99-latency"]["phase"] == "Successful"
    assert results["error-ratio"]["phase"] == "Successful"
    assert results["p99-latency"]["standard"] == pytest.approx(0.1, rel=0.15)
    assert results["p99-latency"]["freeThreaded"] == pytest.approx(0.1, rel=0.15)
    # GIL state of the last pods arrives with the next batched probe query.
    env.until("GIL off in all pods", lambda: env.status()["gil"]["summary"] == "off", 30)
    assert replicas(env.cluster, env.ns, "web-ft") == (N, N)
    # kubectl describe shows the analysis values.
    described = env.cluster.kubectl("describe", "ftr", "web", "-n", env.ns).stdout
    assert "p99-latency" in described
    assert "Free Threaded" in described


def test_b_p99_30_percent_worse_rolls_back(operator: OperatorProcess, env: Env) -> None:
    env.sim.knobs.free_threaded_slowdown = 1.3
    apply(env.cluster, env.ns, analysed_rollout(env, FAST_STEPS))
    env.until("RolledBack", lambda: env.phase() == "RolledBack", 120)
    st = env.status()
    assert st["rollback"]["reason"] == "AnalysisFailed"
    assert "p99-latency" in st["rollback"]["message"]
    assert re.search(r"\(\+(2[5-9]|3\d)\.\d%\)", st["rollback"]["message"]), st["rollback"][
        "message"
    ]
    wait_for(lambda: replicas(env.cluster, env.ns, "web") == (N, N), 60, "standard restored")
    assert replicas(env.cluster, env.ns, "web-ft")[0] == 0
    assert "RolledBack" in [e["reason"] for e in events(env.cluster, env.ns, "web")]


def test_c_gil_fallback_in_one_pod_rolls_back_naming_the_module(
    operator: OperatorProcess, env: Env
) -> None:
    apply(env.cluster, env.ns, analysed_rollout(env, HOLD_AT_50))
    wait_for(
        lambda: env.status().get("stepIndex") == 1 and env.phase() == "Paused", 120, "held at 50%"
    )
    env.sim.knobs.fallback_module = "numpy"
    env.sim.knobs.gil_on_pods = 1
    env.until("RolledBack", lambda: env.phase() == "RolledBack", 60)
    st = env.status()
    assert st["rollback"]["reason"] == "GILFallback"
    assert "numpy" in st["rollback"]["message"]
    rolled = [
        e["message"] for e in events(env.cluster, env.ns, "web") if e["reason"] == "RolledBack"
    ]
    assert len(rolled) == 1
    assert "GILFallback" in rolled[0]
    assert "numpy" in rolled[0]
    wait_for(lambda: replicas(env.cluster, env.ns, "web") == (N, N), 60, "standard restored")


def crash(cluster: LocalCluster, ns: str, pod: str, code: int) -> None:
    patch = crash_status_patch("app", "example/app:3.14t", code)
    cluster.kubectl(
        "patch",
        "pod",
        pod,
        "-n",
        ns,
        "--subresource=status",
        "--type=strategic",
        "-p",
        json.dumps(patch),
    )


def ft_pods(cluster: LocalCluster, ns: str) -> list[str]:
    out = cluster.kubectl(
        "get", "pods", "-n", ns, "-l", "freethreaded.dev/track=free-threaded", "-o", "name"
    ).stdout
    return sorted(line.split("/", 1)[1] for line in out.split())


def test_d_crashes_beyond_the_race_budget_roll_back(operator: OperatorProcess, env: Env) -> None:
    doc = analysed_rollout(
        env, HOLD_AT_50, guardrails={"raceBudget": {"maxIncidents": 1, "window": "1h"}}
    )
    apply(env.cluster, env.ns, doc)
    wait_for(
        lambda: env.status().get("stepIndex") == 1 and env.phase() == "Paused", 120, "held at 50%"
    )
    pods = ft_pods(env.cluster, env.ns)
    crash(env.cluster, env.ns, pods[0], 139)
    wait_for(
        lambda: env.status().get("races", {}).get("incidents") == 1, 30, "one incident counted"
    )
    assert env.phase() == "Paused"  # within budget
    crash(env.cluster, env.ns, pods[1], 139)
    env.until("RolledBack", lambda: env.phase() == "RolledBack", 30)
    st = env.status()
    assert st["rollback"]["reason"] == "RaceBudget"
    assert "2 free-threaded incidents" in st["rollback"]["message"]
    assert "139" in st["rollback"]["message"]
    wait_for(lambda: replicas(env.cluster, env.ns, "web") == (N, N), 60, "standard restored")

    # A retry inside the window starts clean: the old attempt's crashes are not counted again.
    env.cluster.kubectl(
        "annotate", "ftr", "web", "-n", env.ns, "freethreaded.dev/action=retry", "--overwrite"
    )
    env.until(
        "held at 50% again after retry",
        lambda: env.status().get("stepIndex") == 1 and env.phase() == "Paused",
        120,
    )
    st = env.status()
    assert st["races"]["incidents"] == 0
    assert st.get("rollback") is None


def test_standard_pod_crashes_do_not_count(operator: OperatorProcess, env: Env) -> None:
    doc = analysed_rollout(env, HOLD_AT_50, guardrails={"raceBudget": {"maxIncidents": 0}})
    apply(env.cluster, env.ns, doc)
    wait_for(
        lambda: env.status().get("stepIndex") == 1 and env.phase() == "Paused", 120, "held at 50%"
    )
    out = env.cluster.kubectl(
        "get", "pods", "-n", env.ns, "-l", "app=web,!freethreaded.dev/track", "-o", "name"
    ).stdout
    standard = sorted(line.split("/", 1)[1] for line in out.split())
    crash(env.cluster, env.ns, standard[0], 139)
    env.until("a round", lambda: env.status().get("analysis", {}).get("lastRound") is not None, 30)
    time.sleep(3)
    assert env.phase() == "Paused"
    assert env.status()["races"]["incidents"] == 0


PROMOTE_FAST = [{"weight": 50, "pause": {"duration": "2s"}}, {"weight": 100}]


def post_promotion(st: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == "PostPromotion"), {})


def test_gil_fallback_during_the_bake_rolls_back_from_warm_standard_pods(
    operator: OperatorProcess, env: Env
) -> None:
    doc = analysed_rollout(env, PROMOTE_FAST, postPromotion={"bake": "30m", "standardReplicas": 2})
    apply(env.cluster, env.ns, doc)
    env.until("Promoted", lambda: env.phase() == "Promoted", 150)
    # Baking: N free-threaded pods plus 2 warm standard ones, all Ready.
    wait_for(
        lambda: (
            replicas(env.cluster, env.ns, "web") == (2, 2)
            and replicas(env.cluster, env.ns, "web-ft") == (N, N)
        ),
        60,
        "2 warm standard replicas beside 10 free-threaded ones",
    )
    st = env.status()
    assert st["bakeUntil"]
    assert post_promotion(st)["reason"] == "Baking"
    assert "BakeStarted" in [e["reason"] for e in events(env.cluster, env.ns, "web")]
    env.until("GIL off in all pods", lambda: env.status()["gil"]["summary"] == "off", 30)

    # A lazy import brings the GIL back in one pod during the bake: the guardrail still rolls
    # back, from the warm standard pods (standard back to N before the twin goes).
    env.sim.knobs.fallback_module = "lazy_ext"
    env.sim.knobs.gil_on_pods = 1
    with CapacityWatch(env.cluster, env.ns, "web") as cap:
        env.until("RolledBack", lambda: env.phase() == "RolledBack", 60)
        wait_for(
            lambda: (
                replicas(env.cluster, env.ns, "web") == (N, N)
                and replicas(env.cluster, env.ns, "web-ft")[0] == 0
            ),
            60,
            "standard restored, twin scaled to 0",
        )
    assert cap.min_ready >= N
    st = env.status()
    assert st["rollback"]["reason"] == "GILFallback"
    assert "lazy_ext" in st["rollback"]["message"]
    assert post_promotion(st) == {}


def test_gil_fallback_after_the_bake_alerts_without_rolling_back(
    operator: OperatorProcess, env: Env
) -> None:
    doc = analysed_rollout(env, PROMOTE_FAST, postPromotion={"bake": "1m", "standardReplicas": 1})
    apply(env.cluster, env.ns, doc)
    env.until("Promoted", lambda: env.phase() == "Promoted", 150)
    wait_for(lambda: replicas(env.cluster, env.ns, "web") == (1, 1), 60, "1 warm standard pod")
    # The bake (1 minute, the shortest) ends: the warm standard pod is released.
    env.until("Baked", lambda: post_promotion(env.status()).get("reason") == "Baked", 150)
    wait_for(lambda: replicas(env.cluster, env.ns, "web")[0] == 0, 60, "warm pod released")
    assert "BakeComplete" in [e["reason"] for e in events(env.cluster, env.ns, "web")]

    env.sim.knobs.fallback_module = "lazy_ext"
    env.sim.knobs.gil_on_pods = 1
    env.until(
        "the PostPromotion alert",
        lambda: post_promotion(env.status()).get("reason") == "GILFallbackAfterPromotion",
        60,
    )
    st = env.status()
    cond = post_promotion(st)
    assert cond["status"] == "False"
    assert "lazy_ext" in cond["message"]
    assert "no rollback" in cond["message"]
    warnings = [
        e for e in events(env.cluster, env.ns, "web") if e["reason"] == "GILFallbackAfterPromotion"
    ]
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"
    gauge = [
        line
        for line in operator.metrics().splitlines()
        if line.startswith("ftrollout_rollout_gil_enabled_pods{")
        and f'rollout_namespace="{env.ns}"' in line
    ]
    assert [float(line.rsplit(" ", 1)[1]) for line in gauge] == [1.0]
    # An alert, not an action: still Promoted, every free-threaded pod kept.
    time.sleep(3)
    assert env.phase() == "Promoted"
    assert replicas(env.cluster, env.ns, "web-ft") == (N, N)
    assert st.get("rollback") is None
