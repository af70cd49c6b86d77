#!/usr/bin/env python3
"""How well each compare judge sees a small p99 regression: synthetic series, known shifts.

Per trial, one canary step of `--samples` time buckets (one analysis interval each, e.g. 40 x
30 s = a 20-minute step). Each bucket's p99 per track is

    base * load(t) * track factor * lognormal(0, --noise) * (x1.5 with probability --spikes)

where load(t) (lognormal(0, 0.03), shared by all tracks in that bucket) is traffic moving every
pod's latency together, the per-sample noise is the p99's own jitter and the spikes are GC
pauses or a noisy neighbour. The track factors:

* free-threaded canary (new pods): 1 + shift (0 %, 3 %, 5 %, 10 %);
* standard track (long-running, warm pods): 1 - --bias (warm pods are faster: the pod-age bias);
* fresh baseline (standard image, started with the canary): 1 (same age, no bias).

Judges, each against the standard track ("no baseline") and against the fresh baseline:

* Instant (today's): one value per track, the last bucket, change in % > maxIncreasePercent.
* MannWhitney (the new judge, `plan.metrics.judge_samples`): all buckets of the step.

Each judge is counted two ways: "end" = the one round at the end of the step; "step" = every
round of the step (Instant: one per bucket; MannWhitney: every bucket once minSamples are in,
over the samples so far) counted against failureLimit, i.e. the rollout rolls back when more
than --failure-limit rounds fail. For shift 0 a Failed verdict is a false alarm; for a shift
above the tolerance it is a detection. "MW CI" is the stricter rule, Failed only when the whole
confidence interval is beyond the tolerance (shown for comparison; not what the judge does).

    .venv/bin/python benchmarks/judge_eval.py                # 500 trials, ~3 min on one core
    .venv/bin/python benchmarks/judge_eval.py --trials 100   # quicker, coarser
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from ftrollout.model import api
from ftrollout.plan.metrics import Samples, Value, judge, judge_samples

SHIFTS = (0.0, 3.0, 5.0, 10.0)
RESULTS = Path(__file__).parent / "results" / "judge-eval.md"


@dataclass
class Args:
    trials: int
    samples: int
    noise: float
    bias: float
    spikes: float
    tolerance: float
    failure_limit: int
    seed: int


def metric(judge_name: str, tolerance: float) -> api.Metric:
    return api.Metric.model_validate(
        {
            "name": "p99",
            "query": "q",
            "compare": {"maxIncreasePercent": tolerance, "judge": judge_name},
        }
    )


def track(rnd: random.Random, load: list[float], factor: float, a: Args) -> list[float]:
    out = []
    for lf in load:
        v = 100.0 * lf * factor * rnd.lognormvariate(0, a.noise)
        if rnd.random() < a.spikes:
            v *= 1.5
        out.append(v)
    return out


@dataclass
class Counts:
    instant_end: int = 0
    instant_step: int = 0
    mw_end: int = 0
    mw_step: int = 0
    mw_ci_end: int = 0


def trial(rnd: random.Random, shift: float, a: Args, counts: dict[bool, Counts]) -> None:
    load = [rnd.lognormvariate(0, 0.03) for _ in range(a.samples)]
    canary = track(rnd, load, 1 + shift / 100, a)
    refs = {
        False: track(rnd, load, 1 - a.bias / 100, a),  # the warm standard track
        True: track(rnd, load, 1.0, a),  # a fresh baseline
    }
    instant, mw = metric("Instant", a.tolerance), metric("MannWhitney", a.tolerance)
    assert mw.compare is not None
    for with_baseline, ref in refs.items():
        c = counts[with_baseline]
        rounds = [judge(instant, Value(canary[i]), Value(ref[i]), "t") for i in range(a.samples)]
        c.instant_end += rounds[-1].phase == "Failed"
        c.instant_step += sum(r.phase == "Failed" for r in rounds) > a.failure_limit
        failed = 0
        last = None
        for n in range(mw.compare.min_samples, a.samples + 1):
            last = judge_samples(mw, Samples(tuple(canary[:n])), Samples(tuple(ref[:n])), "t")
            failed += last.phase == "Failed"
        assert last is not None
        assert last.statistics is not None
        c.mw_end += last.phase == "Failed"
        c.mw_step += failed > a.failure_limit
        low = last.statistics.low_percent
        c.mw_ci_end += low is not None and low > a.tolerance


def run(a: Args) -> str:
    rnd = random.Random(a.seed)
    table: dict[float, dict[bool, Counts]] = {}
    for shift in SHIFTS:
        counts = {False: Counts(), True: Counts()}
        for _ in range(a.trials):
            trial(rnd, shift, a, counts)
        table[shift] = counts

    def pct(k: int) -> str:
        return f"{100 * k / a.trials:.0f} %"

    lines = [
        f"{a.trials} trials per shift; {a.samples} samples per track per step; noise "
        f"lognormal sigma={a.noise:g} per sample + shared load sigma=0.03; spikes x1.5 with "
        f"p={a.spikes:g}; warm standard pods {a.bias:g} % faster; maxIncreasePercent "
        f"{a.tolerance:g}; confidence 0.95, minSamples 8; failureLimit {a.failure_limit}; "
        f"seed {a.seed}.",
        "",
        "Share of trials judged Failed (shift 0 %: false alarm; otherwise: detection).",
        "",
        "| true shift | against | Instant, end | Instant, step | MannWhitney, end "
        "| MannWhitney, step | MW CI rule, end |",
        "|---|---|---|---|---|---|---|",
    ]
    for shift, counts in table.items():
        for with_baseline in (False, True):
            c = counts[with_baseline]
            against = "fresh baseline" if with_baseline else "warm standard"
            lines.append(
                f"| {shift:g} % | {against} | {pct(c.instant_end)} | {pct(c.instant_step)} | "
                f"{pct(c.mw_end)} | {pct(c.mw_step)} | {pct(c.mw_ci_end)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--samples", type=int, default=40, help="time buckets per step and track")
    p.add_argument("--noise", type=float, default=0.05, help="lognormal sigma per sample")
    p.add_argument("--bias", type=float, default=2.0, help="warm standard pods faster by (%%)")
    p.add_argument("--spikes", type=float, default=0.02, help="chance of a x1.5 sample")
    p.add_argument("--tolerance", type=float, default=2.0, help="maxIncreasePercent")
    p.add_argument("--failure-limit", type=int, default=2)
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    ns = p.parse_args()
    a = Args(**{k: v for k, v in vars(ns).items() if k != "no_write"})
    text = run(a)
    print(text)
    if not ns.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text("# Compare judges on synthetic p99 series\n\n" + text)


if __name__ == "__main__":
    main()
