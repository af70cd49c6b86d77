"""The results: results.json (every run; a later run of the same controller, N, mode and tag
replaces the earlier one), and from it results.md (the tables, ratios ftrollout / Argo, the
runs, findings.md) and peers.png."""

from __future__ import annotations

import fcntl
import json
from typing import Any

from scale import log

from .common import HERE, RESULTS_JSON, RESULTS_MD
from .controllers.flagger import FLAGGER_INTERVAL, FLAGGER_NO_LATENCY

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


def load_results() -> list[dict[str, Any]]:
    try:
        data = json.loads(RESULTS_JSON.read_text())
    except (OSError, ValueError):
        return []
    return list(data.get("runs", []))


def save_results(runs: list[dict[str, Any]]) -> None:
    RESULTS_JSON.write_text(json.dumps({"runs": runs}, indent=1) + "\n")


def store_run(res: dict[str, Any], tag: str) -> None:
    """The run (and its --compare run) into results.json in place of any earlier one of the
    same controller, N, mode and tag."""
    ctl, n, mode = res["controller"], res["rollouts"], res["mode"]
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
                and r.get("tag", "") == tag
            )
        ]
        runs.append(res)
        if res.get("compare"):
            ctag = res["compare"]["tag"]
            runs = [
                r
                for r in runs
                if not (
                    r["controller"] == ctl
                    and r["rollouts"] == n
                    and r.get("mode", "idle") == mode
                    and r.get("tag", "") == ctag
                )
            ]
            runs.append(
                {
                    **{k: v for k, v in res.items() if k not in NOT_COMPARED},
                    **res["compare"],
                    "same_cluster_as": tag or "this branch",
                }
            )
        save_results(runs)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}" if a / b < 10 else f"{a / b:.0f}"


def _same_run(runs: list[dict[str, Any]], key: str | None = None) -> Any:
    """The Argo run to set beside an ftrollout run: the one of the same tag (the same
    `bench_peers.py` invocation), else the latest of that mode and count (with `key`, the
    latest that has it)."""
    argo = [r for r in runs if r["controller"] == "argo-rollouts" and (key is None or r.get(key))]
    tagged = {(r.get("mode", "idle"), r["rollouts"], r.get("tag", "")): r for r in argo}
    latest = {(r.get("mode", "idle"), r["rollouts"]): r for r in argo}

    def find(mode: str, n: int, tag: str) -> dict[str, Any]:
        return tagged.get((mode, n, tag)) or latest.get((mode, n)) or {}

    return find


def report(runs: list[dict[str, Any]]) -> str:
    """One row per count and ftrollout build (run tag), against the Argo run of that count
    (of the same tag when there is one)."""
    argo_for = _same_run(runs)
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
        fl = flagger.get((mode, n)) or {}
        sl = fl.get("steady") or {}
        rows = [f for f in ftr if f["rollouts"] == n and f.get("mode", "idle") == mode] or [{}]
        for f in rows:
            a = argo_for(mode, n, f.get("tag", ""))
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
    argo_for = _same_run(runs, "latency")
    argo = {
        (r.get("mode", "idle"), r["rollouts"]): r.get("latency") or {}
        for r in runs
        if r["controller"] == "argo-rollouts" and r.get("latency")
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
        la = (argo_for(mode, n, f["tag"]).get("latency") or {}) if f else argo[(mode, n)]
        lf = f.get("latency") or {}
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
    from .plot_peers import plot

    png = plot(runs, HERE / "peers.png")
    if png is not None:
        log(f"wrote {png}")
    print(report(runs))
    if lat:
        print("\n" + lat)
