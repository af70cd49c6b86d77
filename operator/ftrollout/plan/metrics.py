"""Metric analysis, pure: query templates, reading a PromQL result, judging one metric.

A result is Successful, Failed or Inconclusive. Inconclusive covers everything that is not a
measurement: no series, several series where one was expected, NaN/Inf, a timeout or an error
from Prometheus. It never counts as success.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ftrollout.model import api

TRACK_STANDARD = "standard"
TRACK_FREE_THREADED = "free-threaded"
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
    if math.isnan(v):
        return Value(None, "value is NaN")
    if math.isinf(v):
        return Value(None, "value is infinite")
    return Value(v)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def judge(metric: api.Metric, ft: Value, std: Value | None, time: str) -> api.MetricResult:
    """Judge one metric's round from its free-threaded (and, for compare, standard) value."""

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
        return result("Inconclusive", f"standard: {std.problem if std else 'not queried'}")
    c = metric.compare
    base, cur = std.value, ft.value
    if base == 0:
        change = 0.0 if cur == 0 else math.copysign(math.inf, cur)
    else:
        change = (cur - base) / abs(base) * 100
    shown = "n/a (standard is 0)" if math.isinf(change) else f"{change:+.1f}%"
    detail = f"free-threaded {_fmt(cur)} vs standard {_fmt(base)} ({shown})"
    if c.max_increase_percent is not None and change > c.max_increase_percent:
        return result("Failed", f"{detail} > +{_fmt(c.max_increase_percent)}% allowed")
    if c.max_decrease_percent is not None and -change > c.max_decrease_percent:
        return result("Failed", f"{detail} < -{_fmt(c.max_decrease_percent)}% allowed")
    return result("Successful", detail)
