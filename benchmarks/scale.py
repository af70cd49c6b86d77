#!/usr/bin/env python3
"""Scale benchmark: N FreeThreadedRollouts at once on the local control plane (kwok pods).

For each count N (default 10, 100, 1000) this starts a FRESH local cluster (etcd, apiserver,
controller-manager, scheduler, kwok with 10 fake nodes of 1000 pods each), one exporter serving
per-pod series for every pod in the benchmark namespace (kept in step with a pod watch), a real
Prometheus scraping it every 5 s, and the operator as a subprocess (`ftrollout run`). It then

1. creates N Deployments (2 replicas) and N FreeThreadedRollouts (steps 50 % -> 100 %, each
   step waiting for a promote; analysis every 30 s: one error-ratio threshold query per round
   against the real Prometheus; race budget 0 so one crash rolls back),
2. waits until every rollout holds at its first step (Paused, stepIndex 0) = steady state,
3. measures the operator over a steady window: RSS (/proc/PID/status VmRSS), CPU
   (/proc/PID/stat utime+stime), reconciles, API writes, Prometheus queries (from the
   operator's own metrics endpoint),
4. end-to-end latency of a spec change: annotates K rollouts with freethreaded.dev/action=promote
   (5 per second) and times each until the annotation is gone and status.stepIndex == 1,
5. breach -> rollback: writes a SIGSEGV (exit 139) into the status of one twin pod of B rollouts
   (one every 2 s) and times until the target Deployment's spec.replicas is back up (watch), and
   until the rollout's phase is RolledBack.

Results: benchmarks/results/scale-<N>.json per count (the latest run of that count), and from
all of them benchmarks/results/summary.md and scale.png. `--report-only` rebuilds those two.

    make bench                                   # 10, 100, 1000
    .venv/bin/python benchmarks/scale.py --counts 10,100 --duration 120
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processes import QuietHandler, serve, stop_process, wait_serving
from sampling import (
    latency_figure,
    loadavg,
    machine,
    ms,
    pct,
    proc_cpu_seconds,
    proc_rss_mib,
    proc_threads,
    profile_text,
    py_spy_record,
    summarize_profile,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NAMESPACE = "bench"
CRD = ROOT / "crds" / "freethreaded.dev_freethreadedrollouts.yaml"
TRACK_LABEL = "freethreaded.dev/track"
ACTION = "freethreaded.dev/action"
GROUP, VERSION, PLURAL = "freethreaded.dev", "v1alpha1", "freethreadedrollouts"
ERROR_RATIO = (
    'sum(rate(http_errors_total{namespace="{{namespace}}", pod=~"{{pods}}"}[30s])) / '
    'sum(rate(http_requests_total{namespace="{{namespace}}", pod=~"{{pods}}"}[30s]))'
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_bench_extra() -> None:
    """matplotlib comes with the optional `bench` extra; install it into this venv if missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("installing the bench extra (matplotlib, py-spy) into this interpreter")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[bench]"],
            check=True,
        )


# ------------------------------------------------------------------------ cluster


def bench_cluster(workdir: Path, nodes: int, pods_per_node: int) -> Any:
    """A LocalCluster whose controllers are not throttled at 20 QPS and whose nodes hold 1000s
    of pods: the benchmark measures the operator, not the control plane's client limits."""
    from ftrollout_dev import localcluster

    original = localcluster.node_manifest

    def node_manifest(name: str) -> dict[str, Any]:
        m = original(name)
        for key in ("allocatable", "capacity"):
            m["status"][key] = {**m["status"][key], "pods": str(pods_per_node)}
        return m

    localcluster.node_manifest = node_manifest

    class BenchCluster(localcluster.LocalCluster):
        def _kcm_cmd(self, ports: dict[str, int], kc: dict[str, Path]) -> list[str]:
            return [
                *super()._kcm_cmd(ports, kc),
                "--kube-api-qps=300",
                "--kube-api-burst=600",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ]

        def _scheduler_cmd(self, ports: dict[str, int], kc: dict[str, Path]) -> list[str]:
            return [
                *super()._scheduler_cmd(ports, kc),
                "--kube-api-qps=300",
                "--kube-api-burst=600",
            ]

    return BenchCluster(workdir, nodes=nodes, die_with_parent=True, log=lambda m: log(m.strip()))


def kube_clients(cluster: Any) -> tuple[Any, Any, Any]:
    """(core, apps, custom) API clients of the cluster on one pool of 32 connections: the
    watches and the parallel creations share it."""
    import kubernetes

    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(cluster.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    client = kubernetes.client.ApiClient(cfg)
    return (
        kubernetes.client.CoreV1Api(client),
        kubernetes.client.AppsV1Api(client),
        kubernetes.client.CustomObjectsApi(client),
    )


def create_deployments(
    pool: ThreadPoolExecutor,
    apps: Any,
    deps: Watcher,
    targets: list[str],
    replicas: int,
    timeout: float,
) -> None:
    """One Deployment of `replicas` pods per target, created in parallel; until the watch
    `deps` shows every one Ready."""
    from ftrollout_dev.simulator import app_deployment

    list(
        pool.map(
            lambda t: apps.create_namespaced_deployment(
                NAMESPACE, app_deployment(t, replicas), _preload_content=False
            ),
            targets,
        )
    )

    def ready() -> int:
        snap = deps.snapshot()
        return sum(1 for t in targets if (d := snap.get(t)) and d["ready"] == replicas)

    n = len(targets)
    wait("Deployments Ready", lambda: ready() == n, timeout, progress=lambda: f"{ready()}/{n}")


# ------------------------------------------------------------------------ watches


class Watcher(threading.Thread):
    """list + watch of one resource in the namespace; keeps a summary per object with the
    monotonic time its latest event arrived."""

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        args: tuple[Any, ...],
        summarize: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        super().__init__(daemon=True, name=f"watch-{name}")
        self.list_fn, self.args, self.summarize = list_fn, args, summarize
        self.objects: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.synced = threading.Event()
        self.events = 0
        self.on_change: list[Callable[[str, dict[str, Any] | None], None]] = []

    def _put(self, typ: str, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            if typ == "DELETED":
                self.objects.pop(name, None)
                summary = None
            else:
                summary = {**self.summarize(obj), "seen": now}
                self.objects[name] = summary
        for hook in self.on_change:
            hook(name, summary)

    def run(self) -> None:
        from kubernetes import watch

        while not self.stopped.is_set():
            try:
                resp = self.list_fn(*self.args, _preload_content=False)
                data = json.loads(resp.data)
                rv = data["metadata"]["resourceVersion"]
                now = time.monotonic()
                with self.lock:
                    self.objects.clear()
                for item in data["items"]:
                    self._put("ADDED", item, now)
                self.synced.set()
                while not self.stopped.is_set():
                    w = watch.Watch()
                    for ev in w.stream(
                        self.list_fn,
                        *self.args,
                        resource_version=rv,
                        timeout_seconds=60,
                        deserialize=False,
                        allow_watch_bookmarks=True,
                    ):
                        now = time.monotonic()
                        obj, typ = ev["object"], ev["type"]
                        if typ == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        rv = obj["metadata"]["resourceVersion"]
                        if typ == "BOOKMARK":
                            continue
                        self.events += 1
                        self._put(typ, obj, now)
                        if self.stopped.is_set():
                            w.stop()
                            break
            except Exception as exc:
                if not self.stopped.is_set():
                    log(f"  ({self.name}: {type(exc).__name__}: {str(exc)[:120]}; re-listing)")
                    time.sleep(1)

    def get(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.objects.get(name)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.objects)


def pod_summary(o: dict[str, Any]) -> dict[str, Any]:
    labels = o["metadata"].get("labels") or {}
    return {
        "track": labels.get(TRACK_LABEL, "standard"),
        "deleting": bool(o["metadata"].get("deletionTimestamp")),
    }


def twin_pod(pods: dict[str, dict[str, Any]], rollout: str) -> str | None:
    """The first free-threaded pod of the rollout's twin `<rollout>-ft` in a pod snapshot."""
    return next(
        (
            p
            for p, s in sorted(pods.items())
            if p.startswith(f"{rollout}-ft-") and s["track"] == "free-threaded"
        ),
        None,
    )


def deploy_summary(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "replicas": (o.get("spec") or {}).get("replicas", 0),
        "ready": (o.get("status") or {}).get("readyReplicas") or 0,
    }


def ftr_summary(o: dict[str, Any]) -> dict[str, Any]:
    st = o.get("status") or {}
    return {
        "phase": st.get("phase"),
        "step": st.get("stepIndex"),
        "action": ACTION in (o["metadata"].get("annotations") or {}),
        "rounds": bool((st.get("analysis") or {}).get("lastRound")),
    }


def start_watches(stack: contextlib.ExitStack, watchers: list[Watcher]) -> None:
    """Each watch started, listed once (30 s at most), stopped when `stack` closes."""
    for w in watchers:
        w.start()
        stack.callback(w.stopped.set)
        w.synced.wait(30)


# ------------------------------------------------------------------------ exporter


class Exporter:
    """Per-pod series for every pod of the namespace: request/error counters growing with
    time (0.1 % errors) and the probe's GIL gauges (free-threaded pods: build 1, GIL off)."""

    def __init__(self, pods: Watcher) -> None:
        self.pods = pods
        self.t0 = time.time()
        exporter = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.reply(200, exporter.render().encode(), "text/plain; version=0.0.4")

        self.server = serve(Handler, "exporter")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def render(self) -> str:
        elapsed = time.time() - self.t0
        req, err = 100.0 * elapsed, 0.1 * elapsed
        out = []
        for pod, s in self.pods.snapshot().items():
            if s["deleting"]:
                continue
            lab = f'namespace="{NAMESPACE}",pod="{pod}"'
            ft = s["track"] == "free-threaded"
            out.append(f"http_requests_total{{{lab}}} {req:.1f}")
            out.append(f"http_errors_total{{{lab}}} {err:.2f}")
            out.append(f"python_gil_enabled{{{lab}}} {0 if ft else 1}")
            out.append(f"python_freethreading_build{{{lab}}} {1 if ft else 0}")
        return "\n".join(out) + "\n"

    def close(self) -> None:
        self.server.shutdown()


def serve_metrics(stack: contextlib.ExitStack, pods: Watcher, work: Path) -> tuple[Exporter, Any]:
    """The exporter of the namespace's pods and a real Prometheus scraping it every 5 s, both
    stopped when `stack` closes."""
    from ftrollout_dev.localcluster import start_prometheus

    exporter = Exporter(pods)
    stack.callback(exporter.close)
    prom = start_prometheus([exporter.target], work / "prometheus", scrape_interval="5s")
    stack.callback(prom.stop)
    return exporter, prom


# ------------------------------------------------------------------------ operator


class Operator:
    def __init__(
        self,
        cluster: Any,
        workdir: Path,
        extra: list[str],
        trace: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        from ftrollout_dev.localcluster import free_port

        self.port = free_port()
        self.log_path = workdir / "operator.log"
        env = cluster.env()
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra_env or {})
        self.tracemalloc = workdir / "tracemalloc.txt" if trace else None
        launcher = (
            [str(ROOT / "benchmarks" / "tracemem.py"), str(self.tracemalloc)]
            if trace
            else ["-m", "ftrollout.main"]
        )
        cmd = [
            sys.executable,
            *launcher,
            "run",
            "--log-format=json",
            "--health-port=0",
            f"--metrics-port={self.port}",
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=env
        )
        wait_serving(
            self.proc,
            self.metrics,
            240 if trace else 60,
            "operator",
            "operator metrics endpoint did not come up",
            self.log_path,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith("ftrollout_"):
                continue
            key, value = line.rsplit(" ", 1)
            out[key] = out.get(key, 0.0) + float(value)
        return out

    def sample(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "cpu": proc_cpu_seconds(self.pid),
            "rss": proc_rss_mib(self.pid),
            "threads": proc_threads(self.pid),
            "metrics": self.metrics(),
        }

    def stop(self) -> None:
        stop_process(self.proc)


def histogram(m: dict[str, float], name: str) -> list[tuple[float, float]]:
    out = []
    for key, v in m.items():
        mt = re.match(rf'{name}_bucket\{{le="([^"]+)"\}}', key)
        if mt:
            out.append((math.inf if mt.group(1) == "+Inf" else float(mt.group(1)), v))
    return sorted(out)


def hist_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative buckets (linear interpolation, as PromQL)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return None


def delta_hist(a: dict[str, float], b: dict[str, float], name: str) -> list[tuple[float, float]]:
    ha, hb = dict(histogram(a, name)), histogram(b, name)
    return [(le, c - ha.get(le, 0.0)) for le, c in hb]


# ------------------------------------------------------------------------ objects


def rollout(name: str, target: str, prometheus: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FreeThreadedRollout",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": target},
            "freeThreaded": {"image": "example/app:3.14t"},
            "steps": [{"weight": 50, "pause": {}}, {"weight": 100, "pause": {}}],
            "analysis": {
                "prometheus": {"address": prometheus, "timeout": "5s"},
                "interval": interval,
                "metrics": [
                    {"name": "error-ratio", "query": ERROR_RATIO, "threshold": {"max": 0.01}}
                ],
            },
            "guardrails": {"raceBudget": {"maxIncidents": 0}},
        },
    }


def wait(
    what: str,
    cond: Callable[[], Any],
    timeout: float,
    every: float = 5.0,
    progress: Callable[[], str] | None = None,
) -> float:
    t0 = time.monotonic()
    last = t0
    while True:
        if cond():
            return time.monotonic() - t0
        now = time.monotonic()
        if now - t0 > timeout:
            raise TimeoutError(
                f"{what}: not done after {timeout:.0f}s ({progress() if progress else ''})"
            )
        if progress and now - last >= every:
            log(f"  waiting for {what}: {progress()}")
            last = now
        time.sleep(0.05)


def names(n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"r{i:0{width}d}" for i in range(n)]


# ------------------------------------------------------------------------ one count


def run_count(n: int, args: argparse.Namespace) -> dict[str, Any]:

    res: dict[str, Any] = {
        "rollouts": n,
        "replicas": args.replicas,
        "interval": args.interval,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_at_start": loadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix=f"ftr-bench-{n}-"))
    log(f"=== {n} rollouts (work dir {work}); load average {res['load_at_start']}")
    pods_needed = n * (args.replicas * 2 + 1)
    nodes = max(args.nodes, math.ceil(pods_needed / args.pods_per_node))
    cluster = bench_cluster(work / "cluster", nodes, args.pods_per_node)
    stack = contextlib.ExitStack()
    try:
        cluster.up()
        stack.callback(cluster.down)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/freethreadedrollouts.freethreaded.dev",
            "--timeout=60s",
        )
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl(
            "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE, "--timeout=60s"
        )

        core, apps, custom = kube_clients(cluster)

        pods = Watcher("pods", core.list_namespaced_pod, (NAMESPACE,), pod_summary)
        deps = Watcher("deployments", apps.list_namespaced_deployment, (NAMESPACE,), deploy_summary)
        ftrs = Watcher(
            "ftrs",
            custom.list_namespaced_custom_object,
            (GROUP, VERSION, NAMESPACE, PLURAL),
            ftr_summary,
        )
        start_watches(stack, [pods, deps, ftrs])
        exporter, prom = serve_metrics(stack, pods, work)
        log(f"prometheus {prom.url} scraping the exporter at {exporter.target}")

        op = Operator(
            cluster,
            work,
            [
                "--qps",
                str(args.qps),
                "--burst",
                str(args.burst),
                "--prometheus-url",
                prom.url,
                "--status-refresh",
                f"{args.status_refresh:g}",
            ],
            trace=args.tracemalloc,
            extra_env=dict(kv.split("=", 1) for kv in args.operator_env),
        )
        res["operator_env"] = args.operator_env
        stack.callback(op.stop)
        res["idle_rss_mib"] = proc_rss_mib(op.pid)
        log(f"operator pid {op.pid} up, RSS {res['idle_rss_mib']:.0f} MiB")

        targets = names(n)
        pool = ThreadPoolExecutor(max_workers=8)
        stack.callback(pool.shutdown)

        # --- Deployments, all Ready
        t0 = time.monotonic()
        create_deployments(pool, apps, deps, targets, args.replicas, 900)
        res["deployments_ready_s"] = round(time.monotonic() - t0, 1)
        log(f"{n} Deployments with {args.replicas} Ready pods in {res['deployments_ready_s']} s")

        # --- rollouts, all at their first step
        cpu0, t0 = proc_cpu_seconds(op.pid), time.monotonic()
        peak = {"rss": 0.0}
        stop_peak = threading.Event()

        def track_peak() -> None:
            while not stop_peak.wait(1.0):
                with contextlib.suppress(OSError):
                    peak["rss"] = max(peak["rss"], proc_rss_mib(op.pid))

        threading.Thread(target=track_peak, daemon=True).start()
        list(
            pool.map(
                lambda t: custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    PLURAL,
                    rollout(t, t, prom.url, args.interval),
                    _preload_content=False,
                ),
                targets,
            )
        )
        res["ftrs_created_s"] = round(time.monotonic() - t0, 1)

        def at_first_step() -> int:
            snap, dsnap = ftrs.snapshot(), deps.snapshot()
            count = 0
            for t in targets:
                f, twin = snap.get(t), dsnap.get(f"{t}-ft")
                if f and f["phase"] == "Paused" and f["step"] == 0 and twin and twin["ready"] >= 1:
                    count += 1
            return count

        wait(
            "rollouts at their first step",
            lambda: at_first_step() == n,
            1200,
            progress=lambda: f"{at_first_step()}/{n}, operator RSS {proc_rss_mib(op.pid):.0f} MiB",
        )
        ramp = time.monotonic() - t0
        res["ramp_s"] = round(ramp, 1)
        res["ramp_cpu_cores"] = round((proc_cpu_seconds(op.pid) - cpu0) / ramp, 3)
        log(
            f"all {n} rollouts at their first step {ramp:.1f} s after creation "
            f"(operator {res['ramp_cpu_cores']} cores meanwhile)"
        )

        # --- steady state
        warm = args.warmup
        log(f"warm-up {warm:.0f} s (every rollout gets analysis rounds) ...")
        time.sleep(warm)
        stop_peak.set()
        res["peak_rss_ramp_mib"] = round(peak["rss"], 1)
        res["steady"] = steady(op, n, args)
        if op.tracemalloc is not None:
            res["tracemalloc"] = dump_tracemalloc(op, n)

        # --- spec change -> patch (promote)
        res["promote"] = promote_latency(custom, ftrs, targets, args)

        # --- breach -> rollback
        res["breach"] = breach_latency(core, pods, deps, ftrs, targets, args)
        res["final_rss_mib"] = round(proc_rss_mib(op.pid), 1)
        res["operator_errors"] = count_errors(op.log_path)
        res["load_at_end"] = loadavg()
        if args.profile:
            res["profile"] = profile(op, n, args)
        return res
    finally:
        stack.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)


def steady(op: Operator, n: int, args: argparse.Namespace) -> dict[str, Any]:
    log(f"steady state: sampling the operator for {args.duration:.0f} s")
    first = op.sample()
    load = [loadavg()]
    samples = [first]
    end = first["t"] + args.duration
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        samples.append(op.sample())
        load.append(loadavg())
    last = samples[-1]
    a, b = first["metrics"], last["metrics"]
    dt = last["t"] - first["t"]

    def d(key: str) -> float:
        return b.get(key, 0.0) - a.get(key, 0.0)

    hname = "ftrollout_reconcile_duration_seconds"
    reconciles = d(f"{hname}_count")
    writes = d("ftrollout_api_writes_total")
    queries = d("ftrollout_prometheus_queries_total")
    rounds = sum(v for k, v in b.items() if k.startswith("ftrollout_analysis_results_total")) - sum(
        v for k, v in a.items() if k.startswith("ftrollout_analysis_results_total")
    )
    hist = delta_hist(a, b, hname)
    cores = (last["cpu"] - first["cpu"]) / dt
    rss = [s["rss"] for s in samples]
    guard_per_30s = 4 * 30 / 5.0  # 4 batched probe queries every GUARD_INTERVAL (5 s)
    out = {
        "window_s": round(dt, 1),
        "rss_mib_mean": round(sum(rss) / len(rss), 1),
        "rss_mib_max": round(max(rss), 1),
        "threads": last["threads"],
        "cpu_cores": round(cores, 4),
        "cpu_s_per_min": round(cores * 60, 2),
        "reconciles_per_s": round(reconciles / dt, 2),
        "reconcile_p50_ms": ms(hist_quantile(0.5, hist)),
        "reconcile_p99_ms": ms(hist_quantile(0.99, hist)),
        "writes": int(writes),
        "writes_per_reconcile": round(writes / reconciles, 3) if reconciles else None,
        "analysis_rounds": int(rounds),
        # Rounds whose results do not change keep their numbers in memory; each rollout's
        # status is refreshed once per --status-refresh (30 s / 300 s = 0.1 write per round).
        # A reconcile with nothing new writes nothing, so writes/round stays at that figure.
        "writes_per_round": round(writes / rounds, 3) if rounds else None,
        "status_refresh_s": args.status_refresh,
        "prom_queries_per_30s": round(queries / dt * 30, 1),
        "guard_queries_per_30s": guard_per_30s,
        "slo_queries_per_30s": round(queries / dt * 30 - guard_per_30s, 1),
        "load": load,
    }
    log(
        f"  RSS {out['rss_mib_mean']} MiB (max {out['rss_mib_max']}), CPU {out['cpu_cores']} "
        f"cores = {out['cpu_s_per_min']} s/min, {out['threads']} threads"
    )
    log(
        f"  {out['reconciles_per_s']} reconciles/s, p50 {out['reconcile_p50_ms']} ms, p99 "
        f"{out['reconcile_p99_ms']} ms; writes {out['writes']} "
        f"({out['writes_per_reconcile']}/reconcile), analysis rounds {out['analysis_rounds']} "
        f"({out['writes_per_round']} writes/round, status refresh {args.status_refresh:g} s)"
    )
    log(
        f"  Prometheus queries per 30 s: {out['prom_queries_per_30s']} "
        f"(guardrails {guard_per_30s:.0f}, SLO ~{out['slo_queries_per_30s']}); "
        f"load {load[-1]}"
    )
    return out


def dump_tracemalloc(op: Operator, n: int) -> str:
    assert op.tracemalloc is not None
    op.tracemalloc.unlink(missing_ok=True)
    op.proc.send_signal(signal.SIGUSR1)
    with contextlib.suppress(TimeoutError):
        wait("tracemalloc snapshot", op.tracemalloc.exists, 300)
    time.sleep(2)
    out = RESULTS / f"tracemalloc-{n}.txt"
    out.write_text(op.tracemalloc.read_text() if op.tracemalloc.exists() else "no snapshot\n")
    log(f"tracemalloc top sites -> {out}")
    return out.name


def promote_latency(
    custom: Any, ftrs: Watcher, targets: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    k = min(args.promote, len(targets) // 2 or 1)
    chosen = targets[:k]
    log(f"spec change -> patch: promoting {k} rollouts, {args.promote_rate:g} per second")
    started: dict[str, float] = {}
    done: dict[str, float] = {}

    def hook(name: str, s: dict[str, Any] | None) -> None:
        if name in started and name not in done and s and not s["action"] and s["step"] == 1:
            done[name] = s["seen"]

    ftrs.on_change.append(hook)
    try:
        for name in chosen:
            started[name] = time.monotonic()
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                PLURAL,
                name,
                {"metadata": {"annotations": {ACTION: "promote"}}},
                _preload_content=False,
            )
            time.sleep(1.0 / args.promote_rate)
        with contextlib.suppress(TimeoutError):
            wait("promotions", lambda: len(done) == k, 120, progress=lambda: f"{len(done)}/{k}")
    finally:
        ftrs.on_change.remove(hook)
    lat = [done[x] - started[x] for x in chosen if x in done]
    # samples_ms in promotion order: a slow stretch shows where it fell (p50 at 100 rollouts
    # varied 71-411 ms between runs).
    out = latency_figure(lat, k)
    log(
        f"  promote -> stepIndex 1: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, "
        f"max {out['max_ms']} ms ({len(lat)}/{k})"
    )
    return out


def breach_latency(
    core: Any,
    pods: Watcher,
    deps: Watcher,
    ftrs: Watcher,
    targets: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    from ftrollout_dev.simulator import crash_status_patch

    k = min(args.breaches, len(targets) // 2 or 1)
    chosen = targets[len(targets) - k :]
    log(
        f"breach -> rollback: crashing one twin pod of {k} rollouts, one every "
        f"{args.breach_every:g} s"
    )
    started: dict[str, float] = {}
    scaled: dict[str, float] = {}
    rolled: dict[str, float] = {}

    def dep_hook(name: str, s: dict[str, Any] | None) -> None:
        if name in started and name not in scaled and s and s["replicas"] >= args.replicas:
            scaled[name] = s["seen"]

    def ftr_hook(name: str, s: dict[str, Any] | None) -> None:
        if name in started and name not in rolled and s and s["phase"] == "RolledBack":
            rolled[name] = s["seen"]

    deps.on_change.append(dep_hook)
    ftrs.on_change.append(ftr_hook)
    try:
        snap = pods.snapshot()
        for name in chosen:
            pod = twin_pod(snap, name)
            if pod is None:
                log(f"  no twin pod for {name}; skipped")
                continue
            started[name] = time.monotonic()
            core.patch_namespaced_pod_status(
                pod,
                NAMESPACE,
                crash_status_patch("app", "example/app:3.14t"),
                _preload_content=False,
            )
            time.sleep(args.breach_every)
        with contextlib.suppress(TimeoutError):
            wait(
                "rollbacks",
                lambda: len(scaled) == len(started) and len(rolled) == len(started),
                60,
                progress=lambda: f"{len(scaled)}/{len(started)}",
            )
    finally:
        deps.on_change.remove(dep_hook)
        ftrs.on_change.remove(ftr_hook)
    to_scale = [scaled[x] - started[x] for x in started if x in scaled]
    to_phase = [rolled[x] - started[x] for x in started if x in rolled]
    out = {
        "count": len(started),
        "completed": len(to_scale),
        "to_target_scaled_p50_ms": ms(pct(to_scale, 0.5)),
        "to_target_scaled_max_ms": ms(max(to_scale) if to_scale else None),
        "to_rolledback_p50_ms": ms(pct(to_phase, 0.5)),
        "to_rolledback_max_ms": ms(max(to_phase) if to_phase else None),
        "samples_ms": [round(x * 1000, 1) for x in to_scale],
    }
    log(
        f"  crash -> target scaled back: p50 {out['to_target_scaled_p50_ms']} ms, max "
        f"{out['to_target_scaled_max_ms']} ms; -> phase RolledBack p50 "
        f"{out['to_rolledback_p50_ms']} ms ({len(to_scale)}/{len(started)})"
    )
    return out


def count_errors(path: Path) -> dict[str, int]:
    out = {"error": 0, "warning": 0}
    with contextlib.suppress(OSError), path.open(errors="replace") as f:
        for line in f:
            low = line[:200].lower()
            if '"level": "error"' in low or '"levelname": "error"' in low:
                out["error"] += 1
            elif '"level": "warning"' in low or '"levelname": "warning"' in low:
                out["warning"] += 1
    return out


def profile(op: Operator, n: int, args: argparse.Namespace) -> dict[str, Any]:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return {"error": "py-spy not installed (pip install -e .[bench])"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{n}.txt"
    log(f"profiling the operator with py-spy for {args.profile:.0f} s -> {out}")
    proc = subprocess.run(
        py_spy_record(spy, op.pid, args.profile, str(out) + ".raw"),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:]}
    raw = Path(str(out) + ".raw")
    incl, own, samples = summarize_profile(raw)
    with raw.open("rb") as src, gzip.open(RESULTS / f"profile-{n}.collapsed.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)  # for flamegraph.pl / speedscope
    raw.unlink()
    title = (
        f"py-spy record --gil --duration {int(args.profile)}: {samples} samples of threads "
        "holding the GIL (= Python CPU time)"
    )
    out.write_text(profile_text(title, incl, own))
    return {"file": out.name, "samples": samples, "self_top": own[:15], "inclusive_top": incl[:25]}


# ------------------------------------------------------------------------ report


def load_results() -> list[dict[str, Any]]:
    out = []
    for p in sorted(RESULTS.glob("scale-*.json")):
        with contextlib.suppress(ValueError, OSError):
            out.append(json.loads(p.read_text()))
    return sorted(out, key=lambda r: r["rollouts"])


def fmt(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v}{unit}"


def summary_table(results: list[dict[str, Any]]) -> str:
    head = (
        "| rollouts | load avg (1m, window start-end) | RSS MiB (mean/max) | CPU cores (s/min) | "
        "reconciles/s | reconcile p50 / p99 ms | writes/reconcile (/analysis round) | "
        "Prom queries /30 s (guardrail) | promote p50 / p99 ms | crash → rollback p50 / max ms |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s, p, b = r["steady"], r["promote"], r["breach"]
        load1 = f"{s['load'][0][0]}-{s['load'][-1][0]}" if s.get("load") else None
        lines.append(
            f"| {r['rollouts']} | {fmt(load1)} | {s['rss_mib_mean']} / {s['rss_mib_max']} | "
            f"{s['cpu_cores']} ({s['cpu_s_per_min']}) | {s['reconciles_per_s']} | "
            f"{fmt(s['reconcile_p50_ms'])} / {fmt(s['reconcile_p99_ms'])} | "
            f"{fmt(s['writes_per_reconcile'])} ({fmt(s.get('writes_per_round'))}) | "
            f"{s['prom_queries_per_30s']} ({s['guard_queries_per_30s']:.0f}) | "
            f"{fmt(p['p50_ms'])} / {fmt(p['p99_ms'])} | "
            f"{fmt(b['to_target_scaled_p50_ms'])} / {fmt(b['to_target_scaled_max_ms'])} |"
        )
    return "\n".join(lines)


def write_report(results: list[dict[str, Any]]) -> None:
    if not results:
        log("no results to report")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    m = results[-1]["machine"]
    md = [
        "# Scale benchmark results",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_mib']} MiB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}. The whole control plane, Prometheus, the exporter "
        "and the operator share these CPUs.",
        "",
        summary_table(results),
        "",
        "Per count: "
        + ", ".join(
            f"{r['rollouts']}: run {r['started']}, steady window {r['steady']['window_s']} s, "
            f"ramp to first step {r['ramp_s']} s, peak RSS during ramp {r['peak_rss_ramp_mib']} MiB"
            for r in results
        )
        + ".",
        "",
        "![RSS and CPU vs rollouts](scale.png)",
        "",
    ]
    (RESULTS / "summary.md").write_text("\n".join(md))
    plot(results)
    log(f"wrote {RESULTS / 'summary.md'} and {RESULTS / 'scale.png'}")
    print(summary_table(results))


def plot(results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["rollouts"] for r in results]
    rss = [r["steady"]["rss_mib_mean"] for r in results]
    cpu = [r["steady"]["cpu_cores"] for r in results]
    p99 = [r["steady"]["reconcile_p99_ms"] or 0 for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].plot(xs, rss, "o-")
    axes[0].axhline(300, color="red", ls="--", lw=1, label="goal at 1000: 300 MiB")
    axes[0].set_ylabel("operator RSS (MiB)")
    axes[1].plot(xs, cpu, "o-", color="tab:orange")
    axes[1].axhline(0.2, color="red", ls="--", lw=1, label="goal at 1000: 0.2 cores")
    axes[1].set_ylabel("operator CPU (cores, steady state)")
    axes[2].plot(xs, p99, "o-", color="tab:green")
    axes[2].axhline(2000, color="red", ls="--", lw=1, label="goal: 2000 ms")
    axes[2].set_ylabel("reconcile p99 (ms)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("FreeThreadedRollouts")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = results[-1]["machine"]
    fig.suptitle(f"ftrollout at scale ({m['nproc']} CPUs, {m['cpu_model']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=110)


# ------------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--counts", default="10,100,1000", help="rollout counts (comma-separated)")
    p.add_argument("--replicas", type=int, default=2, help="replicas per target Deployment")
    p.add_argument("--interval", default="30s", help="analysis interval")
    p.add_argument(
        "--duration",
        type=float,
        default=300,
        help="steady window (seconds); at least --status-refresh, so every rollout's status "
        "refresh falls in it once",
    )
    p.add_argument(
        "--status-refresh", type=float, default=300, help="operator --status-refresh (seconds)"
    )
    p.add_argument("--warmup", type=float, default=45, help="wait after the ramp (seconds)")
    p.add_argument("--nodes", type=int, default=10, help="kwok nodes (at least)")
    p.add_argument("--pods-per-node", type=int, default=1000)
    p.add_argument("--qps", type=float, default=200, help="operator --qps")
    p.add_argument("--burst", type=int, default=400, help="operator --burst")
    p.add_argument("--promote", type=int, default=50, help="rollouts promoted (latency)")
    p.add_argument("--promote-rate", type=float, default=5.0, help="promotes per second")
    p.add_argument("--breaches", type=int, default=10, help="rollouts crashed (rollback time)")
    p.add_argument("--breach-every", type=float, default=2.0, help="seconds between crashes")
    p.add_argument("--profile", type=float, default=0, help="py-spy the operator N seconds")
    p.add_argument(
        "--tracemalloc", action="store_true", help="operator under tracemalloc (memory sites)"
    )
    p.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment for the operator (e.g. MALLOC_ARENA_MAX=2)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    p.add_argument("--report-only", action="store_true", help="rebuild summary.md and the plot")
    args = p.parse_args()

    ensure_bench_extra()
    if args.report_only:
        write_report(load_results())
        return 0
    from ftrollout_dev.localcluster import Binaries

    missing = Binaries.locate().missing_for_cluster()
    if missing:
        print(f"not built: {missing}; run `make tools`", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in [int(x) for x in args.counts.split(",") if x]:
        res = run_count(n, args)
        # A tracemalloc run is slowed down: its numbers stay out of the table.
        # So is a run with a changed operator environment (an experiment, not the baseline).
        if args.tracemalloc:
            out = RESULTS / f"tracemalloc-run-{n}.json"
        elif args.operator_env:
            tag = "-".join(kv.replace("=", "") for kv in args.operator_env).lower()
            out = RESULTS / f"experiment-{n}-{tag}.json"
        else:
            out = RESULTS / f"scale-{n}.json"
        out.write_text(json.dumps(res, indent=1) + "\n")
        log(f"wrote {out}")
    write_report(load_results())
    return 0


if __name__ == "__main__":
    sys.exit(main())
