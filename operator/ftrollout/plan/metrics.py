"""Metric analysis, pure: query templates, reading a PromQL result, judging one metric.

A result is Successful, Failed or Inconclusive. Inconclusive covers everything that is not a
measurement: no series, several series where one was expected, NaN/Inf, a timeout or an error
from Prometheus. It never counts as success.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any, Literal

from ftrollout.model import api
from ftrollout.plan import stats

TRACK_STANDARD = "standard"
TRACK_FREE_THREADED = "free-threaded"
TRACK_BASELINE = "baseline"  # plan.baseline's pods: the compare side when the rollout runs one
# A regex that matches no pod name: a track without pods must yield "no series", not "all".
NO_PODS = "ftrollout-no-pods-in-track"


def pods_regex(pods: Iterable[str]) -> str:
    """Regex alternation of pod names, escaped for a PromQL double-quoted string.

    Pod names are DNS-1123 ([a-z0-9.-]); only "." is a regex metacharacter there, and inside
    a PromQL string the regex backslash itself must be escaped.
    """
    names = sorted(set(pods))
    if not names:
        return NO_PODS
    return "|".join(n.replace(".", "\\\\.") for n in names)


def comparison_side(
    standard_pods: Iterable[str], baseline_pods: Iterable[str] | None
) -> tuple[str, tuple[str, ...]]:
    """({{track}}, pods) of the side a compare metric measures the free-threaded pods against.

    With a fresh baseline (`baseline_pods` not None) that is the baseline, also while it has
    no pods yet (its queries then find no series: Inconclusive): falling back to the warm
    standard pods would bring back the bias the baseline is there to remove.
    """
    if baseline_pods is not None:
        return TRACK_BASELINE, tuple(sorted(baseline_pods))
    return TRACK_STANDARD, tuple(sorted(standard_pods))


def expand(query: str, *, namespace: str, rollout: str, track: str, pods: Iterable[str]) -> str:
    return (
        query.replace("{{namespace}}", namespace)
        .replace("{{rollout}}", rollout)
        .replace("{{track}}", track)
        .replace("{{pods}}", pods_regex(pods))
    )


@dataclass(frozen=True)
class Value:
    """One scalar read from a query, or why there is none."""

    value: float | None
    problem: str = ""


def read_vector(result: Sequence[dict[str, Any]] | Any) -> Value:
    """A PromQL instant-vector (or scalar) result reduced to one number."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        raw = result[1]  # resultType scalar: [ts, "value"]
    elif not isinstance(result, list):
        return Value(None, "unexpected result type")
    elif not result:
        return Value(None, "no series")
    elif len(result) > 1:
        return Value(None, f"{len(result)} series, expected 1 (aggregate with sum/avg/max)")
    else:
        sample = result[0].get("value")
        if not isinstance(sample, list | tuple) or len(sample) != 2:
            return Value(None, "result has no instant value")
        raw = sample[1]
    try:
        v = float(raw)
    except (TypeError, ValueError):
        # Not the value itself: the server chose it, and messages reach status and Events.
        return Value(None, "value is not a number")
    except OverflowError:  # a bare JSON integer beyond a float's range
        v = math.inf
    if math.isnan(v):
        return Value(None, "value is NaN")
    if math.isinf(v):
        return Value(None, "value is infinite")
    return Value(v)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def judge(
    metric: api.Metric,
    ft: Value,
    std: Value | None,
    time: str,
    against: str = TRACK_STANDARD,
) -> api.MetricResult:
    """Judge one metric's round from its free-threaded (and, for compare, standard) value.

    `against` names the compare side in messages: `standard`, or `baseline` with a fresh
    baseline (its value is still reported as `standard`, the compare side's field).
    """

    def result(phase: str, message: str) -> api.MetricResult:
        return api.MetricResult.model_validate(
            {
                "name": metric.name,
                "phase": phase,
                "freeThreaded": ft.value,
                "standard": None if std is None else std.value,
                "message": message,
                "time": time,
            }
        )

    if ft.value is None:
        return result("Inconclusive", f"free-threaded: {ft.problem}")
    if metric.threshold is not None:
        t = metric.threshold
        if t.max is not None and ft.value > t.max:
            return result("Failed", f"free-threaded {_fmt(ft.value)} > max {_fmt(t.max)}")
        if t.min is not None and ft.value < t.min:
            return result("Failed", f"free-threaded {_fmt(ft.value)} < min {_fmt(t.min)}")
        return result("Successful", f"free-threaded {_fmt(ft.value)} within threshold")
    assert metric.compare is not None
    if std is None or std.value is None:
        return result("Inconclusive", f"{against}: {std.problem if std else 'not queried'}")
    c = metric.compare
    base, cur = std.value, ft.value
    if base == 0:
        change = 0.0 if cur == 0 else math.copysign(math.inf, cur)
    else:
        change = (cur - base) / abs(base) * 100
    shown = f"n/a ({against} is 0)" if math.isinf(change) else f"{change:+.1f}%"
    detail = f"free-threaded {_fmt(cur)} vs {against} {_fmt(base)} ({shown})"
    if c.max_increase_percent is not None and change > c.max_increase_percent:
        return result("Failed", f"{detail} > +{_fmt(c.max_increase_percent)}% allowed")
    if c.max_decrease_percent is not None and -change > c.max_decrease_percent:
        return result("Failed", f"{detail} < -{_fmt(c.max_decrease_percent)}% allowed")
    return result("Successful", detail)


@dataclass(frozen=True)
class Samples:
    """One track's samples over the step (a range query), or why there are none."""

    values: tuple[float, ...] = ()
    problem: str = ""
    dropped: int = 0  # NaN or infinite samples left out
    thinned: int = 0  # samples left out to stay within MAX_SAMPLES


MAX_SAMPLE = 1e150  # no latency, ratio or rate comes near; squares stay finite
# At most this many samples per track and round. The judge compares every pair (n1 * n2
# differences held at once), so the range query asks for no more (shell.scheduler) and an
# answer with more, which is the server's choice, is thinned to it: 20,000 points per track
# were 4e8 differences, a MemoryError or minutes of the operator's one event loop.
MAX_SAMPLES = 240


def thin(values: Sequence[float], cap: int = MAX_SAMPLES) -> tuple[float, ...]:
    """`cap` of `values` evenly spread over them in their (time) order, first and last kept:
    every part of the step keeps its share, as a coarser query resolution would."""
    n = len(values)
    if n <= cap:
        return tuple(values)
    if cap == 1:
        return (values[-1],)
    # round(i * (n - 1) / (cap - 1)) in integers
    return tuple(values[(2 * i * (n - 1) + cap - 1) // (2 * (cap - 1))] for i in range(cap))


def read_matrix(result: Sequence[dict[str, Any]] | Any) -> Samples:
    """A PromQL range-query (matrix) result reduced to one series' values; NaN/Inf dropped."""
    if not isinstance(result, list):
        return Samples(problem="unexpected result")  # the server's text never reaches status
    if not result:
        return Samples(problem="no series")
    if len(result) > 1:
        return Samples(problem=f"{len(result)} series, expected 1 (aggregate with sum/avg/max)")
    raw = result[0].get("values") if isinstance(result[0], dict) else None
    if not isinstance(raw, list):
        return Samples(problem="result has no range values")
    values: list[float] = []
    dropped = 0
    for point in raw:
        try:
            v = float(point[1])
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            dropped += 1
            continue
        # Beyond MAX_SAMPLE the medians and differences of the judge overflow to inf/NaN.
        if math.isfinite(v) and abs(v) <= MAX_SAMPLE:
            values.append(v)
        else:
            dropped += 1
    kept = thin(values)
    return Samples(kept, dropped=dropped, thinned=len(values) - len(kept))


def _pct(v: float) -> str:
    return f"{v:+.1f}%"


def underpowered(c: api.CompareCheck) -> str | None:
    """Why a MannWhitney check's minSamples can never give a Failed at its confidence (the
    rounds stay Inconclusive until more samples come), or None."""
    if c.judge != "MannWhitney":
        return None
    if c.min_samples > MAX_SAMPLES:
        return (
            f"minSamples {c.min_samples} is more than the {MAX_SAMPLES} samples a track holds "
            f"per round (the query asks for at most {MAX_SAMPLES}, a larger answer is "
            f"thinned): the judge needs {MAX_SAMPLES}; set minSamples to {MAX_SAMPLES} or less"
        )
    needed = stats.samples_needed(c.confidence)
    if c.min_samples >= needed:
        return None
    return (
        f"minSamples {c.min_samples} cannot reach {c.confidence * 100:g}% confidence (the "
        f"smallest possible p without ties at {c.min_samples} samples per track is "
        f"{stats.smallest_p(c.min_samples, c.min_samples):.2g}): rounds stay Inconclusive "
        f"until a track has more; raise it to {needed}"
    )


def judge_samples(
    metric: api.Metric, ft: Samples, std: Samples, time: str, against: str = TRACK_STANDARD
) -> api.MetricResult:
    """The MannWhitney judge of one compare metric from both tracks' samples over the step.

    The shift is the Hodges-Lehmann estimate (free-threaded minus standard) relative to the
    standard median. Failed when the two-sided Mann-Whitney p-value is below 1 - confidence
    (the tracks differ) and the estimate is beyond maxIncreasePercent or maxDecreasePercent;
    the confidence interval is reported alongside. Fewer than minSamples usable samples on
    either track is Inconclusive (a minSamples above MAX_SAMPLES counts as MAX_SAMPLES: a
    track never holds more), and so is a result that is not significant at sizes where untied
    data never is (`stats.smallest_p`): otherwise any shift, a doubling too, would be
    Successful. Tied data can be significant below that bound, so the test runs first.
    """
    c = metric.compare
    assert c is not None
    # Outliers need no clipping: the test uses ranks and the estimate is a median, so one
    # wild sample moves either by at most one rank's worth.
    # Thinned here too, whoever built the samples: the cost is n1 * n2.
    x, y = thin(std.values), thin(ft.values)
    full = (len(ft.values) + ft.thinned, len(std.values) + std.thinned)

    def result(
        phase: Literal["Successful", "Failed", "Inconclusive"],
        message: str,
        numbers: api.JudgeStatistics | None = None,
    ) -> api.MetricResult:
        return api.MetricResult(
            name=metric.name,
            phase=phase,
            free_threaded=median(y) if y else None,
            standard=median(x) if x else None,
            statistics=numbers,
            message=message,
            time=time,
        )

    counts = api.JudgeStatistics(
        free_threaded_samples=len(y), standard_samples=len(x), confidence=c.confidence
    )
    for track, s in (("free-threaded", ft), (against, std)):
        if s.problem:
            return result("Inconclusive", f"{track}: {s.problem}", counts)
    # The CRD allows up to 1000, but no track holds more than MAX_SAMPLES after thinning.
    needed = min(c.min_samples, MAX_SAMPLES)
    if min(len(x), len(y)) < needed:
        dropped = ft.dropped + std.dropped
        note = f", {dropped} NaN/Inf dropped" if dropped else ""
        return result(
            "Inconclusive",
            f"{len(y)} free-threaded / {len(x)} {against} samples over the step{note}: "
            f"need {needed} per track",
            counts,
        )
    level = f"{c.confidence * 100:g}%"
    test = stats.mann_whitney(x, y)
    significant = test.p < 1 - c.confidence
    if not significant and stats.smallest_p(len(x), len(y)) >= 1 - c.confidence:
        # Untied data at these sizes is never significant: "Successful" would pass any shift.
        return result(
            "Inconclusive",
            f"n={len(y)}/{len(x)} cannot reach {level} confidence (the smallest possible "
            f"p without ties is {stats.smallest_p(len(y), len(x)):.2g}): raise minSamples "
            f"to {stats.samples_needed(c.confidence)} or more",
            counts.model_copy(update={"p_value": test.p}),
        )
    shift = stats.hodges_lehmann(x, y, c.confidence)
    base = median(x)
    if base == 0:
        if shift.low == shift.high == 0:
            numbers = counts.model_copy(
                update={
                    "effect_percent": 0.0,
                    "low_percent": 0.0,
                    "high_percent": 0.0,
                    "p_value": test.p,
                }
            )
            return result("Successful", "no shift (both tracks' medians are 0)", numbers)
        numbers = counts.model_copy(update={"p_value": test.p})
        return result(
            "Inconclusive",
            f"{against} median is 0: a percent shift is undefined (shift {_fmt(shift.estimate)}, "
            f"p={test.p:.2g}); use a threshold check for this metric",
            numbers,
        )
    effect, low, high = (v / abs(base) * 100 for v in (shift.estimate, shift.low, shift.high))
    if not all(math.isfinite(v) for v in (effect, low, high)):
        # A subnormal median overflows the percent to inf, which JSON (the status) cannot carry.
        numbers = counts.model_copy(update={"p_value": test.p})
        return result(
            "Inconclusive",
            f"{against} median {_fmt(base)} is too close to 0 for a percent shift (shift "
            f"{_fmt(shift.estimate)}, p={test.p:.2g}); use a threshold check for this metric",
            numbers,
        )
    numbers = counts.model_copy(
        update={
            "effect_percent": effect,
            "low_percent": low,
            "high_percent": high,
            "p_value": test.p,
        }
    )
    thinned = f", thinned evenly from {full[0]}/{full[1]}" if full != (len(y), len(x)) else ""
    detail = (
        f"free-threaded {_pct(effect)} vs {against} ({level} CI {_pct(low)}..{_pct(high)}, "
        f"p={test.p:.2g}, n={len(y)}/{len(x)}{thinned})"
    )
    if significant and c.max_increase_percent is not None and effect > c.max_increase_percent:
        return result("Failed", f"{detail} > +{_fmt(c.max_increase_percent)}% allowed", numbers)
    if significant and c.max_decrease_percent is not None and -effect > c.max_decrease_percent:
        return result("Failed", f"{detail} < -{_fmt(c.max_decrease_percent)}% allowed", numbers)
    return result("Successful", detail, numbers)
