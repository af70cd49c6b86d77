#!/usr/bin/env python3
"""ftrollout side by side with Argo Rollouts (and Flagger): N canaries of 2 replicas held
paused at 50 %.

For each count N (default 100 and 1000) and each controller (Argo Rollouts v1.10.2, then
ftrollout; Flagger v1.36.1 with `--controllers ...,flagger`), one run:

1. a fresh local control plane, configured exactly as `benchmarks/scale.py` configures it
   (etcd, kube-apiserver, controller-manager and scheduler at 300 QPS, kwok nodes of 1000
   pods), the same exporter and a real Prometheus scraping it every 5 s. Each controller gets
   its own cluster, so neither finds the other's objects (both watch the whole cluster);
2. only that controller, as a process of its own, with the same client limits
   (`--qps 200 --burst 400`), no leader election;
3. N canaries of 2 replicas brought to "paused at 50 %" with no analysis (idle mode; the
   analysing mode adds one PromQL query per rollout every 30 s, see README.md):
   * Argo Rollouts: a Rollout (2 replicas, canary steps `setWeight: 50`, `pause: {}`) created,
     Healthy, then its pod template changed to the free-threaded image: the canary
     ReplicaSet gets 1 pod, the rollout pauses (phase Paused, a CanaryPauseStep condition);
   * ftrollout: a Deployment (2 replicas) and a FreeThreadedRollout (steps 50 % / 100 %, each
     waiting for a promote; no analysis): the twin gets 1 pod, the rollout pauses (phase
     Paused, stepIndex 0);
   * Flagger (`-mesh-provider=kubernetes`, `-metrics-server` the run's Prometheus): a
     Deployment (2 replicas) Ready, a Canary (provider kubernetes, analysis every 30 s,
     2 blue/green iterations, a confirm-promotion webhook served by this process that always
     answers 403) Initialized (primary Ready, target at 0), then the Deployment's template
     changed: Flagger scales it back to 2 beside the primary's 2 and, after its iterations,
     holds it at the gate (phase WaitingPromotion), the nearest it has to "paused at 50 %"
     (its kubernetes provider does blue/green only, no weights);
4. after a warm-up, the same sampler over a steady window for both: RSS (/proc VmRSS) and
   CPU (/proc utime+stime) of the controller process every 5 s, and API writes counted by the
   kube-apiserver (`apiserver_request_total` for POST/PUT/PATCH/DELETE/APPLY, leases and
   nodes left out: those are the control plane's and kwok's heartbeats) plus each
   controller's own count of its requests (`controller_clientset_k8s_request_total` for Argo,
   `ftrollout_api_writes_total` for ftrollout; Flagger exports none), and GETs of single
   objects (Flagger reads through the API at every tick);
5. optionally (`--profile S`) py-spy records the ftrollout process for S seconds of the
   window (`--gil`: Python CPU only);
6. after the window (`--latency-samples K`, 0 skips it), the same method for both, one
   rollout at a time, each figure on rollouts of its own: promote request -> canary's
   spec.replicas raised, abort (Argo) / rollback (ftrollout) request -> canary scaled to 0,
   and for ftrollout a crashed twin pod -> target back to full (Argo does not act on a
   crashed pod, see ARGO_NO_CRASH_ROW); times on receipt of the workload's watch event.
   Not for Flagger (FLAGGER_NO_LATENCY: it acts on its 30 s tick).

Results: `benchmarks/peers/results.json` (every run; a later run of the same controller and N
replaces the earlier one) and `results.md` (table with ratios ftrollout / Argo).

    make bench-peers                                        # 100 and 1000, both controllers
    python benchmarks/peers/bench_peers.py --counts 100 --controllers ftrollout --duration 120
    python benchmarks/peers/bench_peers.py --report-only
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import math
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the scale benchmark's cluster and sampler

import scale  # noqa: E402
from scale import (  # noqa: E402
    Exporter,
    Watcher,
    bench_cluster,
    loadavg,
    log,
    machine,
    names,
    pod_summary,
    proc_cpu_seconds,
    proc_rss_mib,
    proc_threads,
    wait,
)

# Measured in the first run on a cluster only: a --compare run takes over objects at their step.
NOT_COMPARED = (
    "compare",
    "profile",
    "idle_rss_mib",
    "initial_ready_s",
    "to_first_step_s",
    "to_first_step_cpu_cores",
    "setup_cpu_s",
    "latency",
)
DEADLINE = "1h"  # progress deadline of both controllers' canaries (see ftr_rollout)
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"
NAMESPACE = scale.NAMESPACE
STANDARD_IMAGE = "example/app:3.13"
FT_IMAGE = "example/app:3.14t"
ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "rollouts"
FLAGGER_GROUP, FLAGGER_VERSION, FLAGGER_PLURAL = "flagger.app", "v1beta1", "canaries"
# Flagger's per-canary scheduler ticks every analysis.interval (the docs' examples use 1m, the
# default is 60s); 30 s is ftrollout's analysis interval and Argo's AnalysisTemplate interval.
FLAGGER_INTERVAL = "30s"
# Blue/green iterations before the promotion gate: 2, not 1, so that the gate's "not ready"
# (which takes status.iterations back by one, scheduler_hooks.go runConfirmPromotionHooks)
# never brings it to 0, where a tick runs the pre-rollout hooks instead of the metric checks.
FLAGGER_ITERATIONS = 2
# Room for 3 Services per canary at 10,000 canaries (a /16 holds 65,534 addresses).
SERVICE_CIDR = "10.0.0.0/16"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}
# Heartbeats of the control plane and kwok's nodes, the same whichever controller runs.
HEARTBEATS = {"leases", "nodes"}


# ------------------------------------------------------------------------ API writes


def apiserver_writes(cluster: Any) -> dict[str, float]:
    """Write requests served by the kube-apiserver so far, per resource[/subresource]."""
    return apiserver_requests(cluster)[0]


def apiserver_requests(cluster: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Write and GET requests (single objects; lists and watches left out) served by the
    kube-apiserver so far, per resource[/subresource]."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    writes: dict[str, float] = {}
    gets: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("resource") in HEARTBEATS or not labels.get("resource"):
            continue
        verb = labels.get("verb")
        out = writes if verb in WRITE_VERBS else gets if verb == "GET" else None
        if out is None:
            continue
        res = labels.get("resource", "")
        if labels.get("subresource"):
            res += "/" + labels["subresource"]
        out[res] = out.get(res, 0.0) + float(line.rsplit(" ", 1)[1])
    return writes, gets


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(v - a.get(k, 0.0), 1) for k, v in b.items() if v - a.get(k, 0.0) > 0}


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


# ------------------------------------------------------------------------ controllers


class Controller:
    """A controller process the sampler reads: pid and its own count of API writes."""

    name = ""
    pid = 0

    def own_writes(self) -> float | None:
        """The controller's own count of its write requests; None where it exports none."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Ftrollout(Controller):
    name = "ftrollout"

    def __init__(
        self,
        cluster: Any,
        work: Path,
        prom_url: str,
        args: argparse.Namespace,
        pythonpath: str | None = None,
    ) -> None:
        self.op = scale.Operator(
            cluster,
            work,
            ["--qps", str(args.qps), "--burst", str(args.burst), "--prometheus-url", prom_url],
            extra_env=None if pythonpath is None else {"PYTHONPATH": pythonpath},
        )
        self.pid = self.op.pid

    def own_writes(self) -> float:
        return self.op.metrics().get("ftrollout_api_writes_total", 0.0)

    def reconciles(self) -> float:
        return self.op.metrics().get("ftrollout_reconcile_duration_seconds_count", 0.0)

    def stop(self) -> None:
        self.op.stop()


class ArgoRolloutsController(Controller):
    name = "argo-rollouts"
    WRITES = re.compile(r'^controller_clientset_k8s_request_total\{[^}]*verb="(\w+)"[^}]*\} (\S+)')

    def __init__(self, cluster: Any, work: Path, exe: Path, args: argparse.Namespace) -> None:
        from ftrollout_dev.localcluster import free_port

        self.port = free_port()
        self.log_path = work / "argo-rollouts.log"
        cmd = [
            str(exe),
            f"--kubeconfig={cluster.kubeconfig}",
            f"--metricsPort={self.port}",
            f"--healthzPort={free_port()}",
            f"--qps={args.qps}",
            f"--burst={args.burst}",
            "--leader-elect=false",
            "--loglevel=warn",
            "--logformat=json",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=cluster.env()
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"argo-rollouts exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                scrape(f"http://127.0.0.1:{self.port}/metrics")
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("argo-rollouts metrics endpoint did not come up")
            time.sleep(0.3)

    def own_writes(self) -> float:
        total = 0.0
        for line in scrape(f"http://127.0.0.1:{self.port}/metrics").splitlines():
            m = self.WRITES.match(line)
            if m and m.group(1).upper() in {"CREATE", "UPDATE", "PATCH", "DELETE", *WRITE_VERBS}:
                total += float(m.group(2))
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PromotionGate:
    """Flagger's `confirm-promotion` webhook target, served from this process: every call is
    answered 403 "not ready", so each canary stays at its analysis with canary and primary
    both running. Counts the calls: one per canary every other analysis tick once it waits (the
    tick between puts status.iterations back up, see README.md)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with gate.lock:
                    gate.calls += 1
                body = b"not ready\n"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="gate").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/gate/halt"

    def count(self) -> int:
        with self.lock:
            return self.calls

    def close(self) -> None:
        self.server.shutdown()


class FlaggerController(Controller):
    """Flagger's controller out of cluster: the kubernetes provider (no mesh), Prometheus at
    the run's server, the same client limits (-kubeconfig-qps/-kubeconfig-burst), no leader
    election. Flagger exports no count of its own API requests (no client-go metrics)."""

    name = "flagger"

    def __init__(
        self, cluster: Any, work: Path, exe: Path, prom_url: str, args: argparse.Namespace
    ) -> None:
        from ftrollout_dev.localcluster import free_port

        self.port = free_port()
        self.log_path = work / "flagger.log"
        self.gate = PromotionGate()
        cmd = [
            str(exe),
            f"-kubeconfig={cluster.kubeconfig}",
            f"-kubeconfig-qps={int(args.qps)}",
            f"-kubeconfig-burst={args.burst}",
            "-mesh-provider=kubernetes",
            f"-metrics-server={prom_url}",
            f"-port={self.port}",
            "-enable-leader-election=false",
            "-log-level=warn",
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=cluster.env()
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.gate.close()
                raise RuntimeError(f"flagger exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                scrape(f"http://127.0.0.1:{self.port}/healthz")
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("flagger's /healthz did not come up")
            time.sleep(0.3)

    def own_writes(self) -> float | None:
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.gate.close()


# ------------------------------------------------------------------------ objects


# The query of ftrollout's `error-ratio` metric (benchmarks/scale.py), over the rollout's pods.
_PODS = 'namespace="' + NAMESPACE + '", pod=~"{{args.name}}-.*"'
ARGO_ERROR_RATIO = (
    "sum(rate(http_errors_total{" + _PODS + "}[30s])) / "
    "sum(rate(http_requests_total{" + _PODS + "}[30s]))"
)


def argo_analysis_template(prometheus: str) -> dict[str, Any]:
    """One metric every 30 s for as long as the canary runs (no count), like ftrollout's
    analysis interval: a background analysis of the canary strategy."""
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "error-ratio"},
        "spec": {
            "args": [{"name": "name"}],
            "metrics": [
                {
                    "name": "error-ratio",
                    "interval": "30s",
                    "successCondition": "result[0] <= 0.01",
                    "failureLimit": 1,
                    "provider": {"prometheus": {"address": prometheus, "query": ARGO_ERROR_RATIO}},
                }
            ],
        },
    }


def argo_rollout(name: str, replicas: int, analysing: bool = False) -> dict[str, Any]:
    labels = {"app": name}
    canary: dict[str, Any] = {"steps": [{"setWeight": 50}, {"pause": {}}]}
    if analysing:
        canary["analysis"] = {
            "templates": [{"templateName": "error-ratio"}],
            "args": [{"name": "name", "value": name}],
        }
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": STANDARD_IMAGE}],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
            "progressDeadlineSeconds": 3600,
            "strategy": {"canary": canary},
        },
    }


def argo_summary(o: dict[str, Any]) -> dict[str, Any]:
    st = o.get("status") or {}
    return {
        "phase": st.get("phase"),
        "step": st.get("currentStepIndex"),
        "available": st.get("availableReplicas") or 0,
        "updated": st.get("updatedReplicas") or 0,
        "paused": bool(st.get("pauseConditions")),
        "generation_seen": str(st.get("observedGeneration") or ""),
        "generation": (o.get("metadata") or {}).get("generation"),
    }


def ftr_rollout(name: str, prometheus: str, analysing: bool = False) -> dict[str, Any]:
    """scale.rollout: analysis every 30 s, or (idle mode) none."""
    body = scale.rollout(name, name, prometheus, "30s")
    # On a loaded machine 1000 twins can take longer than the default 10 minutes to be Ready.
    body["spec"]["progressDeadline"] = DEADLINE
    if not analysing:
        del body["spec"]["analysis"]
    return body


# ftrollout's error-ratio over the canary's pods, as Flagger's MetricTemplate: {{ target }} is
# the Deployment Flagger runs as the canary; its pods are <target>-<hash>-<id>, and the anchored
# pattern leaves out the primary's <target>-primary-<hash>-<id>.
_FLAGGER_PODS = 'namespace="{{ namespace }}", pod=~"{{ target }}-[0-9a-z]+-[0-9a-z]+"'
FLAGGER_ERROR_RATIO = (
    "sum(rate(http_errors_total{" + _FLAGGER_PODS + "}[30s])) / "
    "sum(rate(http_requests_total{" + _FLAGGER_PODS + "}[30s]))"
)


def flagger_metric_template(prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{FLAGGER_GROUP}/{FLAGGER_VERSION}",
        "kind": "MetricTemplate",
        "metadata": {"name": "error-ratio"},
        "spec": {
            "provider": {"type": "prometheus", "address": prometheus},
            "query": FLAGGER_ERROR_RATIO,
        },
    }


def flagger_canary(name: str, gate_url: str, analysing: bool = False) -> dict[str, Any]:
    """A Canary of the Deployment `name` with the kubernetes provider (blue/green: the only
    strategy it has), held before promotion by a confirm-promotion gate that never opens."""
    analysis: dict[str, Any] = {
        "interval": FLAGGER_INTERVAL,
        "iterations": FLAGGER_ITERATIONS,
        "threshold": 5,
        "webhooks": [
            {
                "name": "promotion-gate",
                "type": "confirm-promotion",
                "url": gate_url,
                "timeout": "5s",
                "muteAlert": True,
            }
        ],
    }
    if analysing:
        analysis["metrics"] = [
            {
                "name": "error-ratio",
                "templateRef": {"name": "error-ratio"},
                "thresholdRange": {"max": 0.01},
                "interval": "30s",
            }
        ]
    return {
        "apiVersion": f"{FLAGGER_GROUP}/{FLAGGER_VERSION}",
        "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 3600,
            "service": {"port": 80, "targetPort": 8080},
            "analysis": analysis,
        },
    }


def flagger_summary(o: dict[str, Any]) -> dict[str, Any]:
    st = o.get("status") or {}
    return {"phase": st.get("phase"), "iterations": st.get("iterations") or 0}


# ------------------------------------------------------------------------ latencies

# Argo Rollouts v1.10.2, pkg/kubectl-argo-rollouts/cmd/promote/promote.go (getPatches, default
# case): a canary paused at a `pause: {}` step (pause conditions set, spec.paused false) is
# promoted by this merge patch of the status subresource; cmd/abort/abort.go: abortPatch.
ARGO_PROMOTE = {"status": {"pauseConditions": None}}
ARGO_ABORT = {"status": {"abort": True}}
ARGO_NO_CRASH_ROW = (
    "Argo Rollouts does not act on a crashed canary pod by itself: its rollout controller "
    "watches ReplicaSets, not pods (rollout/controller.go ControllerConfig), and aborts only "
    "on a failed AnalysisRun, Experiment or step plugin (rollout/analysis.go, experiment.go, "
    "stepplugin.go) or, with spec.progressDeadlineAbort, a progress deadline, which an "
    "indefinite `pause: {}` step never runs into (rollout/sync.go isIndefiniteStep, "
    "evaluateProgressDeadlineAbort)"
)
FLAGGER_NO_LATENCY = (
    "Flagger acts on a canary only at its analysis tick (every analysis.interval, 30 s here; "
    "pkg/controller/scheduler.go: one ticker per canary, no watch on the canary's objects "
    "drives it), so a promote (gate opened) or rollback (rollback webhook) latency measures "
    "where in the 30 s the request fell, not the controller"
)
LATENCY_TIMEOUT = 60.0  # per sample: a sample not done by then counts as not completed


def rs_summary(o: dict[str, Any]) -> dict[str, Any]:
    """An Argo ReplicaSet: its Rollout, image (canary or stable) and desired replicas."""
    owners = o["metadata"].get("ownerReferences") or []
    containers = ((o.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers")
    return {
        "owner": next((r["name"] for r in owners if r.get("kind") == "Rollout"), None),
        "image": (containers or [{}])[0].get("image"),
        "replicas": (o.get("spec") or {}).get("replicas", 0),
    }


def figure(lat: list[float], count: int, request: str, end: str) -> dict[str, Any]:
    return {
        "request": request,
        "end": end,
        "count": count,
        "completed": len(lat),
        "p50_ms": scale._ms(scale.pct(lat, 0.5)),
        "p99_ms": scale._ms(scale.pct(lat, 0.99)),
        "max_ms": scale._ms(max(lat) if lat else None),
        "samples_ms": [round(x * 1000, 1) for x in lat],
    }


class Workloads:
    """The canary and stable workloads of each rollout, read from a watch (Deployments for
    ftrollout, ReplicaSets for Argo), and the receipt time of the first event that meets an
    end condition after a request."""

    def __init__(self, controller: str, watcher: Watcher) -> None:
        self.argo = controller == "argo-rollouts"
        self.watcher = watcher
        self.lock = threading.Lock()
        # rollout -> (kind of workload, condition, key of the end point)
        self.pending: dict[str, list[tuple[str, Callable[[int], bool], str]]] = {}
        self.reached: dict[tuple[str, str], float] = {}
        watcher.on_change.append(self._hook)

    def close(self) -> None:
        self.watcher.on_change.remove(self._hook)

    def _owner(self, name: str, s: dict[str, Any]) -> tuple[str, str] | None:
        """(rollout, 'canary' | 'stable') of a workload event, None for others."""
        if self.argo:
            if not s.get("owner"):
                return None
            return s["owner"], "canary" if s["image"] == FT_IMAGE else "stable"
        if name.endswith("-ft"):
            return name[: -len("-ft")], "canary"
        return name, "stable"

    def _hook(self, name: str, s: dict[str, Any] | None) -> None:
        if s is None:
            return
        who = self._owner(name, s)
        if who is None:
            return
        rollout, kind = who
        with self.lock:
            for want, cond, key in self.pending.get(rollout, []):
                if want == kind and (rollout, key) not in self.reached and cond(s["replicas"]):
                    self.reached[(rollout, key)] = s["seen"]

    def replicas(self, rollout: str, kind: str) -> int | None:
        for name, s in self.watcher.snapshot().items():
            if self._owner(name, s) == (rollout, kind):
                return int(s["replicas"])
        return None

    def expect(self, rollout: str, ends: list[tuple[str, Callable[[int], bool], str]]) -> None:
        with self.lock:
            self.pending[rollout] = ends

    def done(self, rollout: str, keys: list[str]) -> bool:
        with self.lock:
            return all((rollout, k) in self.reached for k in keys)


def one_by_one(
    what: str,
    chosen: list[str],
    request: Callable[[str], None],
    ends: Callable[[str], list[tuple[str, Callable[[int], bool], str]]],
    work: Workloads,
    every: float,
) -> dict[str, list[float]]:
    """Each rollout in turn: note the time, send the request, wait for every end point (or
    LATENCY_TIMEOUT), pause `every` seconds. Latency per end-point key, in request order."""
    out: dict[str, list[float]] = {}
    for i, name in enumerate(chosen):
        e = ends(name)
        keys = [k for _, _, k in e]
        work.expect(name, e)
        t0 = time.monotonic()
        try:
            request(name)
        except Exception as exc:  # one sample lost, not the run
            log(f"    {what} {name}: request failed ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        with contextlib.suppress(TimeoutError):
            wait(
                f"{what} {name}",
                functools.partial(work.done, name, keys),
                LATENCY_TIMEOUT,
                every=15,
            )
        lat = {k: work.reached[(name, k)] - t0 for k in keys if (name, k) in work.reached}
        for k, v in lat.items():
            out.setdefault(k, []).append(v)
        log(
            f"    {what} {i + 1}/{len(chosen)} {name}: "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in lat.items())
            + ("" if len(lat) == len(keys) else f" (not reached in {LATENCY_TIMEOUT:.0f} s)")
        )
        time.sleep(every)
    return out


def latency_phase(
    controller: str,
    custom: Any,
    core: Any,
    pods: Watcher,
    work: Workloads,
    targets: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Promote and abort/rollback latency, the same method for both controllers, each on
    rollouts of its own; ftrollout's crash -> rollback as well."""
    from ftrollout.cli.plugin import ANNOTATION_ACTION, request_id
    from ftrollout_dev.simulator import crash_status_patch

    argo = controller == "argo-rollouts"
    k = min(args.latency_samples, len(targets) // 3)
    full = args.replicas
    promoted, requested, crashed = targets[:k], targets[k : 2 * k], targets[2 * k : 3 * k]
    res: dict[str, Any] = {"samples": k, "every_s": args.latency_every}
    log(
        f"latency: {k} rollouts per figure, one at a time, {args.latency_every:g} s apart "
        f"(times on receipt of the {'ReplicaSet' if argo else 'Deployment'} watch event)"
    )

    def patch_ftr(name: str, action: str) -> None:
        custom.patch_namespaced_custom_object(
            scale.GROUP,
            scale.VERSION,
            NAMESPACE,
            scale.PLURAL,
            name,
            {"metadata": {"annotations": {ANNOTATION_ACTION: f"{action}@{request_id()}"}}},
            _preload_content=False,
        )

    def patch_argo_status(name: str, body: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object_status(
            ARGO_GROUP, ARGO_VERSION, NAMESPACE, ARGO_PLURAL, name, body, _preload_content=False
        )

    def promote(name: str) -> None:
        if argo:
            patch_argo_status(name, ARGO_PROMOTE)
        else:
            patch_ftr(name, "promote")

    def abort(name: str) -> None:
        if argo:
            patch_argo_status(name, ARGO_ABORT)
        else:
            patch_ftr(name, "rollback")

    def up_from(name: str) -> list[tuple[str, Callable[[int], bool], str]]:
        base = work.replicas(name, "canary") or 0
        return [("canary", lambda r: r > base, "canary")]

    def down(name: str) -> list[tuple[str, Callable[[int], bool], str]]:
        ends: list[tuple[str, Callable[[int], bool], str]] = [
            ("canary", lambda r: r == 0, "canary")
        ]
        # Only while the stable is below full (both hold 1 of 2 at 50 %): were it already
        # there, a later event showing it at full would not be the controller's answer.
        if (work.replicas(name, "stable") or 0) < full:
            ends.append(("stable", lambda r: r >= full, "stable"))
        return ends

    stable_low = sum(1 for t in requested if (work.replicas(t, "stable") or 0) < full)
    verb = "kubectl argo rollouts" if argo else "kubectl ftr"

    log(f"  promote ({verb} promote) -> canary's replicas raised")
    got = one_by_one("promote", promoted, promote, up_from, work, args.latency_every)
    res["promote"] = figure(
        got.get("canary", []),
        k,
        "status.pauseConditions cleared (status subresource)"
        if argo
        else f"{ANNOTATION_ACTION}=promote@<id>",
        "canary ReplicaSet's spec.replicas raised" if argo else "twin's spec.replicas raised",
    )
    what = "abort" if argo else "rollback"
    log(f"  {what} ({verb} {what}) -> canary scaled to 0, stable back to {full}")
    got = one_by_one(what, requested, abort, down, work, args.latency_every)
    req = (
        "status.abort: true (status subresource)" if argo else f"{ANNOTATION_ACTION}=rollback@<id>"
    )
    res["abort_to_canary_down"] = figure(got.get("canary", []), k, req, "canary's spec.replicas 0")
    res["abort_to_stable_full"] = figure(
        got.get("stable", []), k, req, f"stable's spec.replicas back to {full}"
    )
    # Counted only where the stable was below full at the request.
    res["abort_to_stable_full"]["count"] = stable_low
    if argo:
        res["crash"] = {"na": ARGO_NO_CRASH_ROW}
    else:
        log(f"  crash -> rollback: one twin pod crashed (exit 139) -> target back to {full}")
        snap = pods.snapshot()

        def crash(name: str) -> None:
            pod = next(
                (
                    p
                    for p, s in sorted(snap.items())
                    if p.startswith(f"{name}-ft-") and s["track"] == "free-threaded"
                ),
                None,
            )
            if pod is None:
                raise RuntimeError(f"no twin pod for {name}")
            core.patch_namespaced_pod_status(
                pod, NAMESPACE, crash_status_patch("app", FT_IMAGE), _preload_content=False
            )

        got = one_by_one("crash", crashed, crash, down, work, args.latency_every)
        res["crash"] = {
            "to_target_scaled": figure(
                got.get("stable", []), k, "twin pod status: exit 139", f"target back to {full}"
            ),
            "to_twin_down": figure(
                got.get("canary", []), k, "twin pod status: exit 139", "twin's spec.replicas 0"
            ),
        }
    p, a = res["promote"], res["abort_to_canary_down"]
    log(
        f"  {controller}: promote p50 {p['p50_ms']} / p99 {p['p99_ms']} / max {p['max_ms']} ms "
        f"({p['completed']}/{k}); {what} -> canary down p50 {a['p50_ms']} / p99 {a['p99_ms']} / "
        f"max {a['max_ms']} ms ({a['completed']}/{k})"
        + (
            ""
            if argo
            else f"; crash -> target back p50 {res['crash']['to_target_scaled']['p50_ms']} / max "
            f"{res['crash']['to_target_scaled']['max_ms']} ms"
        )
    )
    return res


# ------------------------------------------------------------------------ one run


def sample_window(
    ctl: Controller, cluster: Any, args: argparse.Namespace, profile_out: Path | None
) -> dict[str, Any]:
    log(f"  steady window: sampling {ctl.name} (pid {ctl.pid}) every 5 s for {args.duration:.0f} s")
    (api0, get0), own0 = apiserver_requests(cluster), ctl.own_writes()
    rec0 = ctl.reconciles() if isinstance(ctl, Ftrollout) else None
    gate0 = ctl.gate.count() if isinstance(ctl, FlaggerController) else None
    t0, cpu0 = time.monotonic(), proc_cpu_seconds(ctl.pid)
    rss = [proc_rss_mib(ctl.pid)]
    load = [loadavg()]
    spy: subprocess.Popen[bytes] | None = None
    if profile_out is not None:
        exe = Path(args.py_spy)
        log(f"  py-spy record --gil for {args.profile:.0f} s -> {profile_out}")
        spy = subprocess.Popen(
            [
                str(exe),
                "record",
                "--pid",
                str(ctl.pid),
                "--duration",
                str(int(args.profile)),
                "--format",
                "raw",
                "--output",
                str(profile_out),
                "--nonblocking",
                "--gil",
                "--rate",
                str(args.profile_rate),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    end = t0 + args.duration
    ticks = [(0.0, cpu0)]  # (seconds into the window, CPU seconds): the soak's slopes
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        rss.append(proc_rss_mib(ctl.pid))
        load.append(loadavg())
        ticks.append((time.monotonic() - t0, proc_cpu_seconds(ctl.pid)))
    dt = time.monotonic() - t0
    cpu = proc_cpu_seconds(ctl.pid) - cpu0
    (api1, get1), own1 = apiserver_requests(cluster), ctl.own_writes()
    if spy is not None:
        spy.wait(timeout=args.profile + 60)
    by_res = delta(api0, api1)
    gets = delta(get0, get1)
    out: dict[str, Any] = {
        "window_s": round(dt, 1),
        "rss_mib_mean": round(sum(rss) / len(rss), 1),
        "rss_mib_max": round(max(rss), 1),
        "threads": proc_threads(ctl.pid),
        "cpu_cores": round(cpu / dt, 4),
        "api_writes_per_min": round(sum(by_res.values()) / dt * 60, 1),
        "api_writes_by_resource": by_res,
        "own_writes_per_min": (
            None if own0 is None or own1 is None else round((own1 - own0) / dt * 60, 1)
        ),
        "api_gets_per_min": round(sum(gets.values()) / dt * 60, 1),
        "api_gets_by_resource": gets,
        "load": load,
    }
    out.update(drift(ticks, rss))
    if rec0 is not None and isinstance(ctl, Ftrollout):
        out["reconciles_per_s"] = round((ctl.reconciles() - rec0) / dt, 2)
    if gate0 is not None and isinstance(ctl, FlaggerController):
        out["gate_calls_per_min"] = round((ctl.gate.count() - gate0) / dt * 60, 1)
    log(
        f"  {ctl.name}: RSS {out['rss_mib_mean']} MiB, CPU {out['cpu_cores']} cores, API writes "
        f"{out['api_writes_per_min']}/min (own count {out['own_writes_per_min']}/min) "
        f"{by_res}; GETs {out['api_gets_per_min']}/min; load {load[-1]}"
        + (f"; {out['reconciles_per_s']} reconciles/s" if "reconciles_per_s" in out else "")
        + (f"; gate calls {out['gate_calls_per_min']}/min" if "gate_calls_per_min" in out else "")
    )
    return out


def drift(ticks: list[tuple[float, float]], rss: list[float]) -> dict[str, Any]:
    """Growth over the window (the one-hour soak): RSS slope by least squares, and CPU in the
    first and the last third of the window (a leak or a growing loop shows as a difference)."""
    if len(ticks) < 7:
        return {}
    times = [t for t, _ in ticks]
    slope = statistics.linear_regression(times, rss[: len(times)]).slope
    third = len(ticks) // 3

    def cores(a: tuple[float, float], b: tuple[float, float]) -> float:
        return round((b[1] - a[1]) / max(b[0] - a[0], 1e-9), 4)

    return {
        "rss_slope_mib_per_h": round(slope * 3600, 2),
        "cpu_cores_first_third": cores(ticks[0], ticks[third]),
        "cpu_cores_last_third": cores(ticks[-1 - third], ticks[-1]),
    }


def compare_run(
    ctl: Ftrollout,
    cluster: Any,
    work: Path,
    prom_url: str,
    n: int,
    mode: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The same cluster and objects under another build of the operator (e.g. the code before
    a fix): stop this one, start that one, let it take over every rollout, sample again."""
    log(f"  restarting ftrollout from {args.compare_pythonpath} ({args.compare_tag})")
    ctl.stop()
    other = Ftrollout(cluster, work, prom_url, args, pythonpath=args.compare_pythonpath)
    try:
        settle = max(args.warmup, 120.0)
        log(f"  {args.compare_tag}: pid {other.pid}; {settle:.0f} s to take over {n} rollouts")
        time.sleep(settle)
        profile_out = None
        if args.profile:
            profile_out = HERE / f"profile-{mode}-{n}-{args.compare_tag}.raw"
        out: dict[str, Any] = {"tag": args.compare_tag, "pythonpath": args.compare_pythonpath}
        out["steady"] = sample_window(other, cluster, args, profile_out)
        if profile_out is not None and profile_out.exists():
            out["profile"] = write_profile(profile_out, n, mode, args)
        return out
    finally:
        other.stop()


def write_profile(raw: Path, n: int, mode: str, args: argparse.Namespace) -> str:
    incl, own, samples = scale.summarize_profile(raw)
    text = [
        f"py-spy record --gil --rate {args.profile_rate} --duration {int(args.profile)} of "
        f"ftrollout, {n} paused "
        f"rollouts, {mode} mode: {samples} samples holding the GIL (= Python CPU time)",
        "",
        "== self (leaf) share",
        *(f"{p_:5.1f}%  {fn}" for fn, p_ in own[:30]),
        "",
        "== inclusive share",
        *(f"{p_:5.1f}%  {fn}" for fn, p_ in incl[:60]),
    ]
    txt = raw.with_suffix(".txt")
    txt.write_text("\n".join(text) + "\n")
    raw.unlink()
    return txt.name


def established(cluster: Any, crd: str) -> None:
    """`kubectl wait` fails at once while the new CRD has no conditions yet: ask again."""
    for attempt in range(10):
        proc = cluster.kubectl(
            "wait", "--for=condition=Established", crd, "--timeout=60s", check=attempt == 9
        )
        if proc.returncode == 0:
            return
        time.sleep(1)


def run_one(n: int, controller: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import kubernetes

    from ftrollout_dev import localcluster
    from ftrollout_dev.localcluster import start_prometheus
    from ftrollout_dev.peers import ARGO_ROLLOUTS, FLAGGER
    from ftrollout_dev.simulator import app_deployment

    res: dict[str, Any] = {
        "controller": controller,
        "rollouts": n,
        "replicas": args.replicas,
        "mode": mode,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_at_start": loadavg(),
        "qps": args.qps,
        "burst": args.burst,
    }
    analysing = mode == "analysing"
    work = Path(tempfile.mkdtemp(prefix=f"ftr-peers-{controller}-{mode}-{n}-"))
    log(
        f"=== {controller}, {n} canaries, {mode} (work dir {work}); "
        f"load average {res['load_at_start']}"
    )
    # Flagger's canary runs at full size beside the primary (blue/green).
    per = 2 * args.replicas if controller == "flagger" else args.replicas + 1
    pods_needed = n * per + n  # + transient surge pods
    nodes = max(args.nodes, math.ceil(pods_needed / args.pods_per_node))
    # Flagger creates 3 ClusterIP Services per canary (apex, -primary, -canary): the local
    # cluster's /24 ran out at about 85 canaries ("failed to allocate a serviceIP ... range is
    # full"). Every controller gets the same, larger range, so the setups stay alike.
    localcluster.SERVICE_CIDR = SERVICE_CIDR
    cluster = bench_cluster(work / "cluster", nodes, args.pods_per_node)
    stack = contextlib.ExitStack()
    try:
        t_up = time.monotonic()
        cluster.up()
        stack.callback(cluster.down)
        res["cluster_up_s"] = round(time.monotonic() - t_up, 1)
        if controller == "argo-rollouts":
            exe, crds = ARGO_ROLLOUTS.require()
            res["argo_version"] = ARGO_ROLLOUTS.version
            cluster.kubectl("apply", "--server-side", "-f", str(crds))
            established(cluster, "crd/rollouts.argoproj.io")
        elif controller == "flagger":
            exe, crds = FLAGGER.require()
            res["flagger_version"] = FLAGGER.version
            cluster.kubectl("apply", "--server-side", "-f", str(crds))
            established(cluster, "crd/canaries.flagger.app")
            established(cluster, "crd/metrictemplates.flagger.app")
        else:
            cluster.kubectl("apply", "--server-side", "-f", str(scale.CRD))
            established(cluster, "crd/freethreadedrollouts.freethreaded.dev")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl(
            "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE, "--timeout=60s"
        )

        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(cluster.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        client = kubernetes.client.ApiClient(cfg)
        apps = kubernetes.client.AppsV1Api(client)
        core = kubernetes.client.CoreV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        pods = Watcher("pods", core.list_namespaced_pod, (NAMESPACE,), pod_summary)
        watchers = [pods]
        if controller == "argo-rollouts":
            objs = Watcher(
                "rollouts",
                custom.list_namespaced_custom_object,
                (ARGO_GROUP, ARGO_VERSION, NAMESPACE, ARGO_PLURAL),
                argo_summary,
            )
            watchers.append(objs)
            deps = None
        elif controller == "flagger":
            objs = Watcher(
                "canaries",
                custom.list_namespaced_custom_object,
                (FLAGGER_GROUP, FLAGGER_VERSION, NAMESPACE, FLAGGER_PLURAL),
                flagger_summary,
            )
            deps = Watcher(
                "deployments",
                apps.list_namespaced_deployment,
                (NAMESPACE,),
                scale.deploy_summary,
            )
            watchers += [objs, deps]
        else:
            objs = Watcher(
                "ftrs",
                custom.list_namespaced_custom_object,
                (scale.GROUP, scale.VERSION, NAMESPACE, scale.PLURAL),
                scale.ftr_summary,
            )
            deps = Watcher(
                "deployments",
                apps.list_namespaced_deployment,
                (NAMESPACE,),
                scale.deploy_summary,
            )
            watchers += [objs, deps]
        for w in watchers:
            w.start()
            stack.callback(w.stopped.set)
            w.synced.wait(30)
        exporter = Exporter(pods)
        stack.callback(exporter.close)
        prom = start_prometheus([exporter.target], work / "prometheus", scrape_interval="5s")
        stack.callback(prom.stop)

        ctl: Controller
        if controller == "argo-rollouts":
            if analysing:
                custom.create_namespaced_custom_object(
                    ARGO_GROUP,
                    ARGO_VERSION,
                    NAMESPACE,
                    "analysistemplates",
                    argo_analysis_template(prom.url),
                )
            ctl = ArgoRolloutsController(cluster, work, exe, args)
        elif controller == "flagger":
            if analysing:
                custom.create_namespaced_custom_object(
                    FLAGGER_GROUP,
                    FLAGGER_VERSION,
                    NAMESPACE,
                    "metrictemplates",
                    flagger_metric_template(prom.url),
                )
            ctl = FlaggerController(cluster, work, exe, prom.url, args)
        else:
            ctl = Ftrollout(cluster, work, prom.url, args)
        stack.callback(ctl.stop)
        res["idle_rss_mib"] = round(proc_rss_mib(ctl.pid), 1)
        log(f"{controller} pid {ctl.pid} up, RSS {res['idle_rss_mib']} MiB")

        targets = names(n)
        pool = ThreadPoolExecutor(max_workers=8)
        stack.callback(pool.shutdown)
        cpu0, t0 = proc_cpu_seconds(ctl.pid), time.monotonic()
        if controller == "argo-rollouts":
            list(
                pool.map(
                    lambda t: custom.create_namespaced_custom_object(
                        ARGO_GROUP,
                        ARGO_VERSION,
                        NAMESPACE,
                        ARGO_PLURAL,
                        argo_rollout(t, args.replicas, analysing),
                        _preload_content=False,
                    ),
                    targets,
                )
            )

            def healthy() -> int:
                snap = objs.snapshot()
                return sum(
                    1
                    for t in targets
                    if (s := snap.get(t))
                    and s["phase"] == "Healthy"
                    and s["available"] == args.replicas
                )

            wait(
                "Rollouts Healthy",
                lambda: healthy() == n,
                1800,
                progress=lambda: f"{healthy()}/{n}",
            )
            res["initial_ready_s"] = round(time.monotonic() - t0, 1)
            log(f"{n} Rollouts Healthy in {res['initial_ready_s']} s; starting the canaries")
            cpu1, t1 = proc_cpu_seconds(ctl.pid), time.monotonic()
            patch = {
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": FT_IMAGE}]}}}
            }
            list(
                pool.map(
                    lambda t: custom.patch_namespaced_custom_object(
                        ARGO_GROUP,
                        ARGO_VERSION,
                        NAMESPACE,
                        ARGO_PLURAL,
                        t,
                        patch,
                        _preload_content=False,
                    ),
                    targets,
                )
            )

            def at_step() -> int:
                snap = objs.snapshot()
                return sum(
                    1
                    for t in targets
                    if (s := snap.get(t))
                    and s["phase"] == "Paused"
                    and s["paused"]
                    and s["updated"] >= 1
                    and s["available"] >= args.replicas
                )
        elif controller == "flagger":
            assert deps is not None
            fdeps: Watcher = deps  # for the closures below
            assert isinstance(ctl, FlaggerController)
            gate_url = ctl.gate.url
            list(
                pool.map(
                    lambda t: apps.create_namespaced_deployment(
                        NAMESPACE, app_deployment(t, args.replicas), _preload_content=False
                    ),
                    targets,
                )
            )

            def deps_ready() -> int:
                snap = fdeps.snapshot()
                return sum(1 for t in targets if (d := snap.get(t)) and d["ready"] == args.replicas)

            wait(
                "Deployments Ready",
                lambda: deps_ready() == n,
                1800,
                progress=lambda: f"{deps_ready()}/{n}",
            )
            list(
                pool.map(
                    lambda t: custom.create_namespaced_custom_object(
                        FLAGGER_GROUP,
                        FLAGGER_VERSION,
                        NAMESPACE,
                        FLAGGER_PLURAL,
                        flagger_canary(t, gate_url, analysing),
                        _preload_content=False,
                    ),
                    targets,
                )
            )

            def initialized() -> int:
                snap, dsnap = objs.snapshot(), fdeps.snapshot()
                return sum(
                    1
                    for t in targets
                    if (c := snap.get(t))
                    and c["phase"] == "Initialized"
                    and (p := dsnap.get(f"{t}-primary"))
                    and p["ready"] == args.replicas
                )

            # Flagger takes a new Canary on its next sync (-control-loop-interval, 10 s), then
            # initialises it over a few analysis ticks (primary created, Ready, target to 0).
            wait(
                "Canaries Initialized",
                lambda: initialized() == n,
                1800,
                progress=lambda: f"{initialized()}/{n}",
            )
            res["initial_ready_s"] = round(time.monotonic() - t0, 1)
            log(
                f"{n} Canaries Initialized (primary Ready) in {res['initial_ready_s']} s; "
                "new revision of every target"
            )
            cpu1, t1 = proc_cpu_seconds(ctl.pid), time.monotonic()
            patch = {
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": FT_IMAGE}]}}}
            }
            list(
                pool.map(
                    lambda t: apps.patch_namespaced_deployment(
                        t, NAMESPACE, patch, _preload_content=False
                    ),
                    targets,
                )
            )

            def at_step() -> int:
                snap, dsnap = objs.snapshot(), fdeps.snapshot()
                return sum(
                    1
                    for t in targets
                    if (c := snap.get(t))
                    and c["phase"] == "WaitingPromotion"
                    and (d := dsnap.get(t))
                    and d["ready"] >= 1
                )
        else:
            list(
                pool.map(
                    lambda t: apps.create_namespaced_deployment(
                        NAMESPACE, app_deployment(t, args.replicas), _preload_content=False
                    ),
                    targets,
                )
            )
            assert deps is not None

            def ready() -> int:
                snap = deps.snapshot()
                return sum(1 for t in targets if (d := snap.get(t)) and d["ready"] == args.replicas)

            wait("Deployments Ready", lambda: ready() == n, 1800, progress=lambda: f"{ready()}/{n}")
            res["initial_ready_s"] = round(time.monotonic() - t0, 1)
            log(f"{n} Deployments Ready in {res['initial_ready_s']} s; creating the rollouts")
            cpu1, t1 = proc_cpu_seconds(ctl.pid), time.monotonic()
            list(
                pool.map(
                    lambda t: custom.create_namespaced_custom_object(
                        scale.GROUP,
                        scale.VERSION,
                        NAMESPACE,
                        scale.PLURAL,
                        ftr_rollout(t, prom.url, analysing),
                        _preload_content=False,
                    ),
                    targets,
                )
            )

            def at_step() -> int:
                snap, dsnap = objs.snapshot(), deps.snapshot()
                count = 0
                for t in targets:
                    f, twin = snap.get(t), dsnap.get(f"{t}-ft")
                    if (
                        f
                        and f["phase"] == "Paused"
                        and f["step"] == 0
                        and twin
                        and twin["ready"] >= 1
                    ):
                        count += 1
                return count

        wait(
            "canaries paused at 50 %",
            lambda: at_step() == n,
            1800,
            progress=lambda: f"{at_step()}/{n}, {controller} RSS {proc_rss_mib(ctl.pid):.0f} MiB",
        )
        ramp = time.monotonic() - t1
        res["to_first_step_s"] = round(ramp, 1)
        res["to_first_step_cpu_cores"] = round((proc_cpu_seconds(ctl.pid) - cpu1) / ramp, 3)
        res["setup_cpu_s"] = round(proc_cpu_seconds(ctl.pid) - cpu0, 1)
        log(f"all {n} canaries paused at 50 % {ramp:.1f} s after the change")
        log(f"warm-up {args.warmup:.0f} s")
        time.sleep(args.warmup)
        profile_out = None
        if args.profile and controller == "ftrollout":
            profile_out = HERE / f"profile-{mode}-{n}{'-' + args.tag if args.tag else ''}.raw"
        res["steady"] = sample_window(ctl, cluster, args, profile_out)
        if profile_out is not None and profile_out.exists():
            res["profile"] = write_profile(profile_out, n, mode, args)
        if args.latency_samples > 0 and args.compare_pythonpath:
            log("latency phase skipped: it would change the objects the --compare run samples")
        elif args.latency_samples > 0 and controller == "flagger":
            res["latency"] = {"na": FLAGGER_NO_LATENCY}
            log(f"latency phase skipped for Flagger: {FLAGGER_NO_LATENCY}")
        elif args.latency_samples > 0:
            if deps is None:  # Argo: its ReplicaSets, watched from here on only
                deps = Watcher(
                    "replicasets", apps.list_namespaced_replica_set, (NAMESPACE,), rs_summary
                )
                deps.start()
                stack.callback(deps.stopped.set)
                deps.synced.wait(30)
            workloads = Workloads(controller, deps)
            try:
                res["latency"] = latency_phase(
                    controller, custom, core, pods, workloads, targets, args
                )
            finally:
                workloads.close()
        res["load_at_end"] = loadavg()
        if args.compare_pythonpath and isinstance(ctl, Ftrollout):
            res["compare"] = compare_run(ctl, cluster, work, prom.url, n, mode, args)
        return res
    finally:
        stack.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)


# ------------------------------------------------------------------------ report


def load_results() -> list[dict[str, Any]]:
    try:
        data = json.loads(RESULTS_JSON.read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("runs", []))


def save_results(runs: list[dict[str, Any]]) -> None:
    RESULTS_JSON.write_text(json.dumps({"runs": runs}, indent=1) + "\n")


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}" if a / b < 10 else f"{a / b:.0f}"


def report(runs: list[dict[str, Any]]) -> str:
    """One row per count and ftrollout build (run tag), against the Argo run of that count."""
    argo = {
        (r.get("mode", "idle"), r["rollouts"]): r
        for r in runs
        if r["controller"] == "argo-rollouts"
    }
    ftr = sorted(
        (r for r in runs if r["controller"] == "ftrollout"),
        key=lambda r: (r["rollouts"], r.get("tag", "") != "before-fix", r.get("tag", "")),
    )
    # Flagger as a third column group only once it has a run (its columns read "-" elsewhere).
    flagger = {
        (r.get("mode", "idle"), r["rollouts"]): r for r in runs if r["controller"] == "flagger"
    }
    lines = [
        "| mode | N | ftrollout build | Argo RSS MiB | ftrollout RSS MiB | ratio | "
        "Argo CPU cores | ftrollout CPU cores | ratio | Argo API writes/min | "
        "ftrollout API writes/min | Argo to first step s | ftrollout to first step s | "
        "ratio | ftrollout reconciles/s |"
        + (
            " Flagger RSS MiB | Flagger CPU cores | Flagger API writes/min | "
            "Flagger to first step s |"
            if flagger
            else ""
        ),
        "|" + "---|" * (19 if flagger else 15),
    ]
    keys = sorted(
        {(r.get("mode", "idle"), r["rollouts"]) for r in runs}, key=lambda k: (k[0] != "idle", k)
    )
    for mode, n in keys:
        a = argo.get((mode, n)) or {}
        fl = flagger.get((mode, n)) or {}
        sl = fl.get("steady") or {}
        rows = [f for f in ftr if f["rollouts"] == n and f.get("mode", "idle") == mode] or [{}]
        for f in rows:
            sa, sf = a.get("steady") or {}, f.get("steady") or {}
            lines.append(
                f"| {mode} | {n} | {f.get('tag') or ('this branch' if f else '-')} | "
                f"{sa.get('rss_mib_mean', '-')} | {sf.get('rss_mib_mean', '-')} | "
                f"{ratio(sf.get('rss_mib_mean'), sa.get('rss_mib_mean'))} | "
                f"{sa.get('cpu_cores', '-')} | {sf.get('cpu_cores', '-')} | "
                f"{ratio(sf.get('cpu_cores'), sa.get('cpu_cores'))} | "
                f"{sa.get('api_writes_per_min', '-')} | {sf.get('api_writes_per_min', '-')} | "
                f"{a.get('to_first_step_s', '-')} | {f.get('to_first_step_s', '-')} | "
                f"{ratio(f.get('to_first_step_s'), a.get('to_first_step_s'))} | "
                f"{sf.get('reconciles_per_s', '-')} |"
                + (
                    f" {sl.get('rss_mib_mean', '-')} | {sl.get('cpu_cores', '-')} | "
                    f"{sl.get('api_writes_per_min', '-')} | {fl.get('to_first_step_s', '-')} |"
                    if flagger
                    else ""
                )
            )
    slopes = []
    for ctl, tag in (
        ("argo-rollouts", None),
        ("ftrollout", "before-fix"),
        ("ftrollout", ""),
        ("flagger", None),
    ):
        pts = sorted(
            (r["rollouts"], r["steady"]["rss_mib_mean"])
            for r in runs
            if r["controller"] == ctl
            and r.get("steady")
            and r.get("mode", "idle") == "idle"
            and (tag is None or r.get("tag") == tag)
        )
        if len(pts) >= 2 and pts[-1][0] != pts[0][0]:
            kib = (pts[-1][1] - pts[0][1]) * 1024 / (pts[-1][0] - pts[0][0])
            label = ctl if tag is None else f"{ctl} ({tag or 'this branch'})"
            slopes.append(f"{label} {kib:.0f} KiB per rollout ({pts[0][0]} → {pts[-1][0]})")
    table = "\n".join(lines)
    if slopes:
        table += "\n\nMemory per rollout (RSS difference / count difference): " + "; ".join(slopes)
    return table


# (label, key in latency, key below it or None): one row of the latency table each.
LATENCY_ROWS = (
    ("promote request → canary scaled up", "promote", None),
    ("abort / rollback request → canary scaled to 0", "abort_to_canary_down", None),
    ("abort / rollback request → stable back to full", "abort_to_stable_full", None),
    ("crash of one canary pod → target back to full", "crash", "to_target_scaled"),
    ("crash of one canary pod → canary scaled to 0", "crash", "to_twin_down"),
)


def latency_report(runs: list[dict[str, Any]]) -> str:
    """p50 / p99 / max in ms per figure, Argo beside each ftrollout build that has them."""
    argo = {
        (r.get("mode", "idle"), r["rollouts"]): r.get("latency") or {}
        for r in runs
        if r["controller"] == "argo-rollouts"
    }
    ftr = sorted(
        (r for r in runs if r["controller"] == "ftrollout" and r.get("latency")),
        key=lambda r: (r.get("mode", "idle") != "idle", r["rollouts"], r.get("tag", "")),
    )
    if not ftr and not any(argo.values()):
        return ""
    lines = [
        "| mode | N | ftrollout build | figure | Argo p50 / p99 / max ms | "
        "ftrollout p50 / p99 / max ms | ratio p50 | ratio p99 | Argo samples done | "
        "ftrollout samples done |",
        "|" + "---|" * 10,
    ]
    pairs = [(f.get("mode", "idle"), f["rollouts"], f) for f in ftr] or [
        (m, n, {}) for (m, n), a in sorted(argo.items()) if a
    ]
    notes: set[str] = set()

    def cell(fig: dict[str, Any] | None) -> str:
        if not fig:
            return "-"
        if "na" in fig:
            return "n/a"
        return f"{fig.get('p50_ms')} / {fig.get('p99_ms')} / {fig.get('max_ms')}"

    def done(fig: dict[str, Any] | None) -> str:
        if not fig or "na" in fig:
            return "-"
        return f"{fig.get('completed')}/{fig.get('count')}"

    for mode, n, f in pairs:
        la, lf = argo.get((mode, n)) or {}, f.get("latency") or {}
        for label, key, sub in LATENCY_ROWS:
            fa, ff = la.get(key), lf.get(key)
            if sub is not None:
                if fa and "na" in fa:
                    notes.add(fa["na"])
                fa = fa if fa and "na" in fa else (fa or {}).get(sub)
                ff = ff if ff and "na" in ff else (ff or {}).get(sub)
            fa = fa if fa is None or "na" in fa or fa.get("completed") else None
            ff = ff if ff is None or "na" in ff or ff.get("completed") else None
            if fa is None and ff is None:
                continue
            lines.append(
                f"| {mode} | {n} | {f.get('tag') or 'this branch' if f else '-'} | {label} | "
                f"{cell(fa)} | {cell(ff)} | "
                f"{ratio((ff or {}).get('p50_ms'), (fa or {}).get('p50_ms'))} | "
                f"{ratio((ff or {}).get('p99_ms'), (fa or {}).get('p99_ms'))} | "
                f"{done(fa)} | {done(ff)} |"
            )
    text = "\n".join(lines)
    for note in sorted(notes):
        text += f"\n\nn/a: {note}."
    if any(r["controller"] == "flagger" for r in runs):
        text += f"\n\nFlagger: n/a for every figure: {FLAGGER_NO_LATENCY}."
    return text


def write_report(runs: list[dict[str, Any]]) -> None:
    if not runs:
        log("no results to report")
        return
    m = runs[-1]["machine"]
    details = []
    for r in sorted(runs, key=lambda r: (r.get("mode", "idle"), r["rollouts"], r["controller"])):
        s = r.get("steady") or {}
        load = s.get("load") or []
        details.append(
            f"* {r['controller']} N={r['rollouts']} {r.get('mode', 'idle')}"
            f"{' (' + r['tag'] + ')' if r.get('tag') else ''}, started {r['started']}: window "
            f"{s.get('window_s')} s, load average (1 min) {load[0][0] if load else '-'} → "
            f"{load[-1][0] if load else '-'}, RSS max {s.get('rss_mib_max')} MiB, idle RSS "
            f"before any object {r.get('idle_rss_mib')} MiB, setup before the canaries "
            f"{r.get('initial_ready_s')} s, controller's own write count "
            + (
                f"{s['own_writes_per_min']}/min"
                if s.get("own_writes_per_min") is not None
                else "n/a (none exported)"
            )
            + ", writes by resource "
            f"{s.get('api_writes_by_resource')}"
            + (
                f", GETs {s['api_gets_per_min']}/min {s.get('api_gets_by_resource')}"
                if "api_gets_per_min" in s
                else ""
            )
            + (
                f", confirm-promotion gate calls {s['gate_calls_per_min']}/min"
                if "gate_calls_per_min" in s
                else ""
            )
        )
    with_flagger = any(r["controller"] == "flagger" for r in runs)
    text = [
        "# Side by side with Argo Rollouts"
        + (" and Flagger" if with_flagger else "")
        + " (issue 22)",
        "",
        "Generated by `benchmarks/peers/bench_peers.py` (`make bench-peers`); see README.md here "
        "for what one run does. Idle mode: N canaries of 2 replicas paused at 50 %, no analysis.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_mib']} MiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}; shared with other jobs, so the figures are noisy.",
        "",
        report(runs),
        "",
        "Ratios are ftrollout / Argo Rollouts. API writes are counted by the kube-apiserver "
        "(write verbs, leases and nodes left out) over the steady window.",
        "",
    ]
    if with_flagger:
        text += [
            "Flagger v1.36.1 (kubernetes provider, blue/green): each canary held before "
            "promotion by a confirm-promotion webhook that answers 403, its canary Deployment at "
            "full size beside the primary (2 + 2 pods, not 1 + 1), analysis tick every "
            f"{FLAGGER_INTERVAL}; see README.md here. Its to-first-step time includes waiting "
            "for its ticks.",
            "",
        ]
    lat = latency_report(runs)
    if lat:
        text += [
            "## Latencies",
            "",
            "After the steady window, on the run's own cluster: from the request (what "
            "`kubectl ftr promote` / `rollback` and `kubectl argo rollouts promote` / `abort` "
            "write, or the crash written into one canary pod's status) to the receipt of the first "
            "Deployment (ftrollout) or ReplicaSet (Argo) watch event showing the controller's "
            'write; one rollout at a time, each figure on rollouts of its own. "stable back to '
            'full" only where the stable was below full at the request.',
            "",
            lat,
            "",
        ]
    text += [
        "## Runs",
        "",
        *details,
        "",
    ]
    findings = HERE / "findings.md"  # hand-written reading of the figures, kept with them
    if findings.is_file():
        text += ["## Findings", "", findings.read_text()]
    RESULTS_MD.write_text("\n".join(text))
    log(f"wrote {RESULTS_MD}")
    from plot_peers import plot

    png = plot(runs, HERE / "peers.png")
    if png is not None:
        log(f"wrote {png}")
    print(report(runs))
    if lat:
        print("\n" + lat)


# ------------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--counts", default="100,1000", help="canary counts (comma-separated)")
    p.add_argument(
        "--controllers",
        default="argo-rollouts,ftrollout",
        help="which controllers, in order (argo-rollouts, ftrollout, flagger); Flagger v1.36.1 "
        "(kubernetes provider) is not in the default list",
    )
    p.add_argument(
        "--modes",
        default="idle,analysing",
        help="idle (paused, no analysis) and/or analysing (a PromQL query per rollout every 30 s)",
    )
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument(
        "--duration",
        type=float,
        default=300,
        help="steady window (seconds); at least ftrollout's idle resync (300 s), so every "
        "rollout's periodic look falls in it once",
    )
    p.add_argument("--warmup", type=float, default=30, help="wait before the window (seconds)")
    p.add_argument(
        "--latency-samples",
        type=int,
        default=20,
        help="after the window: rollouts per latency figure (promote, abort/rollback request, "
        "crash), one at a time; 0 skips the latency phase",
    )
    p.add_argument(
        "--latency-every", type=float, default=2.0, help="seconds between latency samples"
    )
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--pods-per-node", type=int, default=1000)
    p.add_argument("--qps", type=float, default=200, help="client QPS of both controllers")
    p.add_argument("--burst", type=int, default=400, help="client burst of both controllers")
    p.add_argument("--profile", type=float, default=0, help="py-spy ftrollout for S seconds")
    p.add_argument(
        "--profile-rate",
        type=int,
        default=100,
        help="py-spy samples per second (an idle operator holds the GIL rarely: 1000 gives a "
        "profile worth reading in a few minutes)",
    )
    p.add_argument(
        "--py-spy",
        default=str(Path(sys.executable).parent / "py-spy"),
        help="py-spy executable (for --profile)",
    )
    p.add_argument("--tag", default="", help="label stored with the runs (e.g. before-fix)")
    p.add_argument(
        "--compare-pythonpath",
        default="",
        help="after ftrollout's window, run the operator from this PYTHONPATH (another build, "
        "e.g. an export of the code before a fix) on the same cluster and sample it again",
    )
    p.add_argument("--compare-tag", default="before-fix", help="tag of the --compare run")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if args.report_only:
        write_report(load_results())
        return 0

    from ftrollout_dev.localcluster import Binaries
    from ftrollout_dev.peers import ARGO_ROLLOUTS, FLAGGER, build_peer

    missing = Binaries.locate().missing_for_cluster()
    if missing:
        print(f"not built: {missing}; run `make tools`", file=sys.stderr)
        return 2
    controllers = [c for c in args.controllers.split(",") if c]
    for c in controllers:
        if c not in ("argo-rollouts", "ftrollout", "flagger"):
            print(f"unknown controller {c!r} (argo-rollouts, ftrollout, flagger)", file=sys.stderr)
            return 2
    for name, peer in (("argo-rollouts", ARGO_ROLLOUTS), ("flagger", FLAGGER)):
        if name in controllers and not peer.is_built():
            log(f"{name} is not built yet: building it ({peer.build_estimate} on an idle machine)")
            build_peer(peer, log=lambda m: log(m.strip()))
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in ("idle", "analysing"):
            print(f"unknown mode {mode!r} (idle, analysing)", file=sys.stderr)
            return 2
    for mode in modes:
        for n in [int(x) for x in args.counts.split(",") if x]:
            for ctl in controllers:
                res = run_one(n, ctl, mode, args)
                res["tag"] = args.tag
                # Runs of other controllers or counts may be going on beside this one.
                with (HERE / ".results.lock").open("w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    runs = [
                        r
                        for r in load_results()
                        if not (
                            r["controller"] == ctl
                            and r["rollouts"] == n
                            and r.get("mode", "idle") == res["mode"]
                            and r.get("tag", "") == args.tag
                        )
                    ]
                    runs.append(res)
                    if res.get("compare"):
                        tag = res["compare"]["tag"]
                        runs = [
                            r
                            for r in runs
                            if not (
                                r["controller"] == ctl
                                and r["rollouts"] == n
                                and r.get("mode", "idle") == mode
                                and r.get("tag", "") == tag
                            )
                        ]
                        runs.append(
                            {
                                **{k: v for k, v in res.items() if k not in NOT_COMPARED},
                                **res["compare"],
                                "same_cluster_as": args.tag or "this branch",
                            }
                        )
                    save_results(runs)
                log(f"saved {ctl} N={n} to {RESULTS_JSON}")
    write_report(load_results())
    return 0


if __name__ == "__main__":
    sys.exit(main())
