"""The steady window: the controller's RSS and CPU (/proc) every 5 s, the load average, the
API requests the kube-apiserver served meanwhile (apiserver_request_total deltas) and the
controller's own counts; the drift over a long window (the soak)."""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from sampling import loadavg, proc_cpu_seconds, proc_rss_mib, proc_threads
from scale import log

from .common import WRITE_VERBS
from .controllers.base import Controller
from .pyspy import start_py_spy

# Heartbeats of the control plane and kwok's nodes, the same whichever controller runs.
HEARTBEATS = {"leases", "nodes"}


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


def sample_window(
    ctl: Controller, cluster: Any, args: argparse.Namespace, profile_out: Path | None
) -> dict[str, Any]:
    log(f"  steady window: sampling {ctl.name} (pid {ctl.pid}) every 5 s for {args.duration:.0f} s")
    (api0, get0), own0 = apiserver_requests(cluster), ctl.own_writes()
    rec0 = ctl.reconciles()
    gate0 = ctl.gate_calls()
    t0, cpu0 = time.monotonic(), proc_cpu_seconds(ctl.pid)
    rss = [proc_rss_mib(ctl.pid)]
    load = [loadavg()]
    spy: subprocess.Popen[bytes] | None = None
    if profile_out is not None:
        log(f"  py-spy record --gil for {args.profile:.0f} s -> {profile_out}")
        spy = start_py_spy(ctl.pid, profile_out, args)
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
        "cpu_cores": round(cpu / dt, 5),
        # Five places and the CPU seconds themselves (clock ticks of 10 ms): at idle both
        # controllers round to the same 0.0009 cores at four.
        "cpu_seconds": round(cpu, 2),
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
    if rec0 is not None and (rec1 := ctl.reconciles()) is not None:
        out["reconciles_per_s"] = round((rec1 - rec0) / dt, 2)
    if gate0 is not None and (gate1 := ctl.gate_calls()) is not None:
        out["gate_calls_per_min"] = round((gate1 - gate0) / dt * 60, 1)
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
