"""One run: a fresh cluster (configured as benchmarks/scale.py configures it), one controller,
N canaries brought to "paused at 50 %", a warm-up, the steady window, the latency phase, and
(`--compare-pythonpath`) the same objects under another build of ftrollout."""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sampling import loadavg, machine, proc_cpu_seconds, proc_rss_mib
from scale import (
    Watcher,
    bench_cluster,
    kube_clients,
    log,
    names,
    pod_summary,
    serve_metrics,
    start_watches,
    wait,
)

from .common import HERE, NAMESPACE, SERVICE_CIDR
from .controllers import PEERS, Controller, Run
from .controllers.argo import rs_summary
from .controllers.ftrollout import Ftrollout
from .latency import Workloads, latency_phase
from .pyspy import write_profile
from .sampler import sample_window


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


def run_one(n: int, controller: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from ftrollout_dev import localcluster

    peer = PEERS[controller]
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
        peer.install(cluster, res)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl(
            "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE, "--timeout=60s"
        )

        core, apps, custom = kube_clients(cluster)
        pods = Watcher("pods", core.list_namespaced_pod, (NAMESPACE,), pod_summary)
        objs, deps = peer.watchers(apps, custom)
        watchers = [pods, objs] if deps is None else [pods, objs, deps]
        start_watches(stack, watchers)
        _, prom = serve_metrics(stack, pods, work)

        ctl: Controller = peer.start(cluster, work, custom, prom.url, args, analysing)
        stack.callback(ctl.stop)
        res["idle_rss_mib"] = round(proc_rss_mib(ctl.pid), 1)
        log(f"{controller} pid {ctl.pid} up, RSS {res['idle_rss_mib']} MiB")

        targets = names(n)
        pool = ThreadPoolExecutor(max_workers=8)
        stack.callback(pool.shutdown)
        run = Run(n, targets, args, analysing, pool, apps, custom, objs, deps, ctl, prom.url)
        cpu0, t0 = proc_cpu_seconds(ctl.pid), time.monotonic()
        peer.create(run)
        res["initial_ready_s"] = round(time.monotonic() - t0, 1)
        log(peer.ready_log.format(n=n, s=res["initial_ready_s"]))
        cpu1, t1 = proc_cpu_seconds(ctl.pid), time.monotonic()
        peer.change(run)
        wait(
            "canaries paused at 50 %",
            lambda: peer.at_step(run) == n,
            1800,
            progress=lambda: (
                f"{peer.at_step(run)}/{n}, {controller} RSS {proc_rss_mib(ctl.pid):.0f} MiB"
            ),
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
        elif args.latency_samples > 0 and peer.no_latency is not None:
            res["latency"] = {"na": peer.no_latency}
            log(f"latency phase skipped for Flagger: {peer.no_latency}")
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
                res["latency"] = latency_phase(peer, custom, core, pods, workloads, targets, args)
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
