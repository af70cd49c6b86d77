"""What the benchmarks read of a process and of the machine, shared by `scale.py` and
`peers/`: RSS, CPU and threads from /proc, the load average, the machine's description,
percentiles of latency samples, and py-spy profiles summed up per function."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------ machine and /proc


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_mib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def proc_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------ latencies


def ms(v: float | None) -> float | None:
    """Seconds as milliseconds (2 decimals); None stays None."""
    return None if v is None else round(v * 1000, 2)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def latency_figure(lat: list[float], count: int) -> dict[str, Any]:
    """p50 / p99 / max in ms of the samples (seconds) that completed out of `count`, and the
    samples in request order: a slow stretch shows where it fell."""
    return {
        "count": count,
        "completed": len(lat),
        "p50_ms": ms(pct(lat, 0.5)),
        "p99_ms": ms(pct(lat, 0.99)),
        "max_ms": ms(max(lat) if lat else None),
        "samples_ms": [round(x * 1000, 1) for x in lat],
    }


# ------------------------------------------------------------------------ py-spy


def py_spy_record(
    exe: Path, pid: int, duration: float, output: Path | str, rate: int | None = None
) -> list[str]:
    """`py-spy record` of the threads holding the GIL (= Python CPU time), collapsed stacks."""
    cmd = [
        str(exe),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(duration)),
        "--format",
        "raw",
        "--output",
        str(output),
        "--nonblocking",
        "--gil",
    ]
    return cmd if rate is None else [*cmd, "--rate", str(rate)]


def summarize_profile(
    raw: Path,
) -> tuple[list[tuple[str, float]], list[tuple[str, float]], int]:
    """(inclusive, self) share of samples per function, from py-spy's collapsed stacks."""
    total = 0
    incl: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        c = int(count_s)
        total += c
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";")]
        for fn in set(frames):
            incl[fn] = incl.get(fn, 0) + c
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + c
    if not total:
        return [], [], 0

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        return sorted(((fn, round(100 * c / total, 2)) for fn, c in d.items()), key=lambda x: -x[1])

    return top(incl)[:80], top(own)[:40], total


def profile_text(title: str, incl: list[tuple[str, float]], own: list[tuple[str, float]]) -> str:
    """The profile as read: a title line, the top self shares, the top inclusive shares."""
    text = [
        title,
        "",
        "== self (leaf) share",
        *(f"{p_:5.1f}%  {fn}" for fn, p_ in own[:30]),
        "",
        "== inclusive share",
        *(f"{p_:5.1f}%  {fn}" for fn, p_ in incl[:60]),
    ]
    return "\n".join(text) + "\n"
