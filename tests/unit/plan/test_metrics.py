"""Every analysis outcome: Successful, Failed and each kind of Inconclusive."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftrollout.model import api
from ftrollout.plan.metrics import NO_PODS, Value, expand, judge, pods_regex, read_vector

T = "2026-01-01T00:00:00Z"


def metric(**check: object) -> api.Metric:
    return api.Metric.model_validate({"name": "m", "query": "q", **check})


def vec(*values: str) -> list[dict[str, object]]:
    return [{"metric": {"pod": f"p{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]


def test_template_variables_are_expanded() -> None:
    q = 'x{namespace="{{namespace}}", rollout="{{rollout}}", track="{{track}}", pod=~"{{pods}}"}'
    out = expand(q, namespace="shop", rollout="co", track="free-threaded", pods=["b-1", "a-2"])
    assert out == 'x{namespace="shop", rollout="co", track="free-threaded", pod=~"a-2|b-1"}'


def test_pod_names_are_regex_escaped_for_promql_strings() -> None:
    # In a PromQL string "\\." is the regex \. : a literal dot.
    assert pods_regex(["web.v2-abc"]) == "web\\\\.v2-abc"


def test_a_track_without_pods_matches_nothing() -> None:
    assert pods_regex([]) == NO_PODS


@given(
    st.lists(
        st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True),
        min_size=1,
        max_size=8,
    )
)
def test_pods_regex_matches_exactly_the_pods(pods: list[str]) -> None:
    # What Prometheus sees after unescaping the string literal once.
    regex = pods_regex(pods).replace("\\\\", "\\")
    for p in pods:
        assert re.fullmatch(regex, p)
    if pods[0] + "x" not in pods:  # hypothesis found ["0", "0x"]: that one is a pod
        assert not re.fullmatch(regex, pods[0] + "x")


@pytest.mark.parametrize(
    ("result", "value", "problem"),
    [
        (vec("0.25"), 0.25, ""),
        ([], None, "no series"),
        (vec("1", "2"), None, "2 series"),
        (vec("NaN"), None, "NaN"),
        (vec("+Inf"), None, "infinite"),
        (vec("abc"), None, "not a number"),
        ([1.0, "3"], 3.0, ""),  # scalar result
        ("garbage", None, "unexpected result"),
    ],
)
def test_read_vector(result: object, value: float | None, problem: str) -> None:
    v = read_vector(result)
    assert v.value == value
    assert problem in v.problem


def test_compare_within_limit_is_successful() -> None:
    r = judge(metric(compare={"maxIncreasePercent": 10}), Value(0.105), Value(0.1), T)
    assert r.phase == "Successful"
    assert r.free_threaded == 0.105
    assert r.standard == 0.1
    assert "+5.0%" in r.message


def test_compare_30_percent_worse_p99_fails_with_numbers() -> None:
    r = judge(metric(compare={"maxIncreasePercent": 10}), Value(0.13), Value(0.1), T)
    assert r.phase == "Failed"
    assert "+30.0%" in r.message
    assert "0.13" in r.message


def test_compare_throughput_drop_fails() -> None:
    r = judge(metric(compare={"maxDecreasePercent": 5}), Value(90), Value(100), T)
    assert r.phase == "Failed"
    assert "-10.0%" in r.message


def test_compare_from_zero_baseline() -> None:
    assert (
        judge(metric(compare={"maxIncreasePercent": 10}), Value(0), Value(0), T).phase
        == "Successful"
    )
    r = judge(metric(compare={"maxIncreasePercent": 10}), Value(0.01), Value(0), T)
    assert r.phase == "Failed"
    assert "standard is 0" in r.message


@pytest.mark.parametrize(
    ("check", "value", "phase"),
    [
        ({"max": 0.01}, 0.005, "Successful"),
        ({"max": 0.01}, 0.02, "Failed"),
        ({"min": 100}, 50, "Failed"),
        ({"min": 100, "max": 200}, 150, "Successful"),
    ],
)
def test_threshold(check: dict[str, float], value: float, phase: str) -> None:
    assert judge(metric(threshold=check), Value(value), None, T).phase == phase


@pytest.mark.parametrize(
    ("ft", "std"),
    [
        (Value(None, "no series"), Value(1.0)),
        (Value(1.0), Value(None, "prometheus http://p: timed out")),
        (Value(None, "value is NaN"), None),
    ],
)
def test_missing_data_is_inconclusive_never_successful(ft: Value, std: Value | None) -> None:
    m = (
        metric(compare={"maxIncreasePercent": 10})
        if std is not None
        else metric(threshold={"max": 1})
    )
    r = judge(m, ft, std, T)
    assert r.phase == "Inconclusive"
    assert (ft.problem or (std.problem if std else "")) in r.message


@given(
    st.floats(min_value=1e-6, max_value=1e6),
    st.floats(min_value=-90, max_value=300),
    st.floats(min_value=0, max_value=100),
)
def test_compare_fails_exactly_beyond_the_allowed_increase(
    base: float, change: float, limit: float
) -> None:
    ft = base * (1 + change / 100)
    r = judge(metric(compare={"maxIncreasePercent": limit}), Value(ft), Value(base), T)
    actual = (ft - base) / base * 100
    assert r.phase == ("Failed" if actual > limit else "Successful")
    assert not math.isnan(r.free_threaded or 0)
