"""The plot of `results.json` (issue 22): CPU and RSS per controller, mode and N, latest run of
each (untagged or this session's tag), side by side. Written next to results.md as
`peers.png`; called by bench_peers.py after each report, or on its own:

    .venv/bin/python benchmarks/peers/plot_peers.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLORS = {"argo-rollouts": "#ef7b45", "ftrollout": "#2a6f97", "flagger": "#7b9e3f"}


def latest(runs: list[dict[str, Any]]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """The newest run per (mode, N, controller), tags other than `before-fix` included."""
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in sorted(runs, key=lambda r: str(r.get("started"))):
        if r.get("tag") == "before-fix" or not r.get("steady"):
            continue
        out[(r.get("mode", "idle"), int(r["rollouts"]), r["controller"])] = r
    return out


def plot(runs: list[dict[str, Any]], out: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib missing (the `bench` extra): no plot", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs_by = latest(runs)
    groups = sorted({(mode, n) for mode, n, _ in runs_by})
    controllers = [c for c in COLORS if any(k[2] == c for k in runs_by)]
    if not groups or not controllers:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(controllers)
    for ax, key, label, log_scale in (
        (axes[0], "cpu_cores", "CPU (cores, log scale)", True),
        (axes[1], "rss_mib_mean", "RSS (MiB)", False),
    ):
        for i, c in enumerate(controllers):
            xs, ys = [], []
            for g, (mode, n) in enumerate(groups):
                r = runs_by.get((mode, n, c))
                if r is not None and r["steady"].get(key) is not None:
                    xs.append(g + (i - (len(controllers) - 1) / 2) * width)
                    ys.append(max(float(r["steady"][key]), 1e-5))
            ax.bar(xs, ys, width, label=c, color=COLORS[c])
            for x, y in zip(xs, ys, strict=True):
                text = f"{y:.4f}" if key == "cpu_cores" else f"{y:.0f}"
                ax.annotate(text, (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)), [f"{mode}\nN={n}" for mode, n in groups])
        ax.set_ylabel(label)
        if log_scale:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Steady window per controller, one at a time on the same local cluster setup")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> int:
    runs = json.loads((HERE / "results.json").read_text())["runs"]
    out = plot(runs, HERE / "peers.png")
    print(out or "no plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
