"""The resource models accept what DESIGN.md documents and name the field of every mistake."""

from __future__ import annotations

import copy
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ftrollout.model import api
from ftrollout.model.durations import format_duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "manifests/examples/checkout.yaml").read_text())


def spec(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(EXAMPLE["spec"])
    out.update(changes)
    return out


def error_of(raw: Any) -> api.SpecError:
    with pytest.raises(api.SpecError) as info:
        api.parse_spec(raw)
    return info.value


def test_design_example_is_accepted_with_parsed_durations() -> None:
    s = api.parse_spec(EXAMPLE["spec"])
    assert s.target_ref.name == "checkout"
    assert s.free_threaded.container == "app"
    assert [st.weight for st in s.steps] == [10, 50, 100]
    assert s.steps[0].pause.seconds == 300
    assert s.steps[2].pause.seconds is None
    assert s.analysis is not None
    assert s.analysis.interval_seconds == 60
    assert s.analysis.metrics[0].compare is not None
    assert s.analysis.metrics[0].compare.max_increase_percent == 10
    assert s.guardrails.race_budget.window_seconds == 3600
    assert s.guardrails.dependency_gate is not None
    assert s.guardrails.dependency_gate.modules == ["numpy", "orjson"]


def test_wire_form_round_trips_in_camel_case() -> None:
    s = api.parse_spec(EXAMPLE["spec"])
    wire = api.dump(s)
    # The defaults are written out, as the apiserver stores them (CRD defaults).
    assert wire["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"}
    assert wire["analysis"]["failureLimit"] == 2
    assert api.parse_spec(wire) == s


def test_minimal_spec_gets_documented_defaults() -> None:
    s = api.parse_spec(
        {"targetRef": {"name": "web"}, "freeThreaded": {"image": "x:t"}, "steps": [{"weight": 100}]}
    )
    assert s.guardrails.gil_fallback.max_pods == 0
    assert s.guardrails.gil_fallback.action == api.GuardAction.ROLLBACK
    assert s.guardrails.race_budget.max_incidents == 3
    assert s.analysis is None
    assert s.paused is False
    assert s.free_threaded.probe.enabled is False


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (spec(steps=[{"weight": 50}, {"weight": 10}, {"weight": 100}]), "spec", "strictly increasing"),
        (spec(steps=[{"weight": 10}, {"weight": 10}, {"weight": 100}]), "spec", "strictly increasing"),
        (spec(steps=[{"weight": 10}, {"weight": 50}]), "spec", "weight 100"),
        (spec(steps=[{"weight": 0}, {"weight": 100}]), "spec.steps[0].weight", "greater than or equal to 1"),
        (spec(steps=[{"weight": 101}]), "spec.steps[0].weight", "less than or equal to 100"),
        (spec(steps=[]), "spec.steps", "at least 1"),
        (spec(steps=[{"weight": 100, "pause": {"duration": "5 minutes"}}]), "spec.steps[0].pause.duration", "invalid duration"),
        (spec(targetRef={}), "spec.targetRef.name", "Field required"),
        (spec(freeThreaded={"image": ""}), "spec.freeThreaded.image", "at least 1"),
        (spec(bogus=1), "spec.bogus", "Extra inputs"),
        (spec(analysis={"interval": "1d"}), "spec.analysis.interval", "invalid duration"),
        (spec(analysis={"metrics": [{"name": "a", "query": "up"}]}), "spec.analysis.metrics[0]", "exactly one of compare or threshold"),
        (spec(analysis={"metrics": [{"name": "a", "query": "up", "compare": {}, "threshold": {"max": 1}}]}), "spec.analysis.metrics[0].compare", "maxIncreasePercent"),
        (spec(analysis={"metrics": [{"name": "a", "query": "up", "threshold": {"min": 2, "max": 1}}]}), "spec.analysis.metrics[0].threshold", "min must not be greater"),
        (spec(analysis={"metrics": [{"name": "a", "query": "up", "threshold": {"max": 1}}, {"name": "a", "query": "up", "threshold": {"max": 1}}]}), "spec.analysis", "unique"),
        (spec(analysis={"onInconclusive": "Promote"}), "spec.analysis.onInconclusive", "'Pause' or 'Rollback'"),
        (spec(guardrails={"gilFallback": {"maxPods": -1}}), "spec.guardrails.gilFallback.maxPods", "greater than or equal to 0"),
        (spec(guardrails={"dependencyGate": {"modules": ["num py"]}}), "spec.guardrails.dependencyGate.modules[0]", "pattern"),
        ("not a mapping", "spec", "valid dictionary"),
    ],
)  # fmt: skip
def test_bad_spec_names_the_field(raw: Any, field: str, words: str) -> None:
    err = error_of(raw)
    assert err.field == field
    assert words in err.message
    assert str(err).startswith(field + ": ")


@given(st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=api.MAX_STEPS))
def test_weights_valid_iff_strictly_increasing_and_ending_at_100(weights: list[int]) -> None:
    raw = spec(steps=[{"weight": w} for w in weights])
    valid = all(b > a for a, b in pairwise(weights)) and weights[-1] == 100
    if valid:
        assert [s.weight for s in api.parse_spec(raw).steps] == weights
    else:
        assert error_of(raw).field == "spec"


@given(st.integers(min_value=-1000, max_value=1000).filter(lambda w: not 1 <= w <= 100))
def test_out_of_range_weight_is_rejected_at_the_step(weight: int) -> None:
    err = error_of(spec(steps=[{"weight": weight}]))
    assert err.field == "spec.steps[0].weight"


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000), st.sampled_from(["ms", "s", "m", "h"])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_go_durations_parse_to_seconds(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    expected = sum(n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
    assert parse_duration(text) == pytest.approx(expected)
    raw = spec(steps=[{"weight": 100, "pause": {"duration": text}}])
    if expected <= 168 * 3600:
        assert api.parse_spec(raw)
    else:
        assert error_of(raw).message == "must be between 0s and 168h"


@given(st.text(max_size=12).filter(lambda t: not t or not t[0].isdigit() or " " in t))
def test_garbage_durations_are_rejected_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_status_defaults_and_unreadable_status_start_afresh() -> None:
    assert api.parse_status(None).phase is None
    assert api.parse_status({"phase": "Nonsense"}) == api.RolloutStatus()
    st_ = api.parse_status(
        {"phase": "Progressing", "stepIndex": 1, "replicas": {"freeThreaded": 5}}
    )
    assert st_.phase == api.Phase.PROGRESSING
    assert st_.replicas.free_threaded == 5


@pytest.mark.parametrize("length", [1, 63])
def test_a_rollout_name_that_fits_a_label_value_is_accepted(length: int) -> None:
    api.check_name("a" * length)


def test_a_rollout_name_longer_than_a_label_value_names_metadata_name() -> None:
    with pytest.raises(api.SpecError) as info:
        api.check_name("a" * 64)
    assert info.value.field == "metadata.name"
    assert info.value.message == api.MSG_NAME_TOO_LONG
    assert "63 characters" in str(info.value)


# (wire path under spec, a value just outside, a value at the edge, the words of the message)
BOUNDS: list[tuple[str, Any, Any, str]] = [
    ("steps[0].pause.duration", "169h", "168h", "must be between 0s and 168h"),
    ("analysis.interval", "0s", "1s", "must be between 1s and 1h"),
    ("analysis.interval", "61m", "1h", "must be between 1s and 1h"),
    ("analysis.prometheus.timeout", "500ms", "1s", "must be between 1s and 5m"),
    ("analysis.prometheus.timeout", "5m1s", "5m", "must be between 1s and 5m"),
    ("analysis.failureLimit", 101, 100, "less than or equal to 100"),
    ("analysis.failureLimit", -1, 0, "greater than or equal to 0"),
    ("guardrails.gilFallback.maxPods", 1001, 1000, "less than or equal to 1000"),
    ("guardrails.raceBudget.maxIncidents", 1001, 1000, "less than or equal to 1000"),
    ("guardrails.raceBudget.window", "59s", "1m", "must be between 1m and 24h"),
    ("guardrails.raceBudget.window", "24h1s", "24h", "must be between 1m and 24h"),
    ("guardrails.dependencyGate.timeout", "9s", "10s", "must be between 10s and 1h"),
    ("guardrails.dependencyGate.timeout", "1000000h", "1h", "must be between 10s and 1h"),
    ("progressDeadline", "9s", "10s", "must be between 10s and 24h"),
    ("progressDeadline", "24h1s", "24h", "must be between 10s and 24h"),
]


def with_value(path: str, value: Any) -> dict[str, Any]:
    raw = spec()
    node: Any = raw
    parts = path.replace("[0]", ".0").split(".")
    for part in parts[:-1]:
        key: Any = int(part) if part.isdigit() else part
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[parts[-1]] = value
    return raw


@pytest.mark.parametrize(("path", "outside", "edge", "words"), BOUNDS)
def test_every_duration_and_count_is_bounded_with_a_message_naming_the_field(
    path: str, outside: Any, edge: Any, words: str
) -> None:
    err = error_of(with_value(path, outside))
    assert err.field == f"spec.{path}"
    assert words in err.message
    api.parse_spec(with_value(path, edge))  # the bound itself is allowed


# ---------------------------------------------------------------- targetRef kind


def test_target_ref_defaults_to_an_apps_v1_deployment() -> None:
    ref = api.parse_spec(spec(targetRef={"name": "checkout"})).target_ref
    assert (ref.api_version, ref.kind, ref.name) == ("apps/v1", "Deployment", "checkout")
    explicit = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"}
    assert api.parse_spec(spec(targetRef=explicit)).target_ref == ref
    assert api.dump(ref) == explicit


@pytest.mark.parametrize(
    ("ref", "field", "message"),
    [
        ({"kind": "StatefulSet"}, "spec.targetRef.kind", api.MSG_TARGET_KIND),
        ({"kind": "Rollout", "apiVersion": "argoproj.io/v1alpha1"}, "spec.targetRef.apiVersion",
         api.MSG_TARGET_API_VERSION),
        ({"apiVersion": "extensions/v1beta1"}, "spec.targetRef.apiVersion",
         api.MSG_TARGET_API_VERSION),
    ],
)  # fmt: skip
def test_a_target_other_than_an_apps_v1_deployment_is_refused_naming_the_field(
    ref: dict[str, str], field: str, message: str
) -> None:
    err = error_of(spec(targetRef={"name": "checkout", **ref}))
    assert (err.field, err.message) == (field, message)
    assert "apps/v1 Deployment" in message


# ------------------------------------------------------- nulls: the API server's rule (#21)


def test_a_null_is_read_as_the_field_left_out_as_the_api_server_does() -> None:
    """The CRD has no nullable field, so the API server drops a null before validation: the
    operator only ever sees the field missing. The models read a null the same way, so `lint`
    and the operator agree with the cluster (`paused: null` used to be refused offline)."""
    raw = spec(
        paused=None,
        steps=[
            {"weight": 10, "pause": None},  # no hold: the step advances by itself
            {"weight": 50, "pause": {"duration": None}},  # `pause: {}`: waits for a promote
            {"weight": 100},
        ],
    )
    s = api.parse_spec(raw)
    assert s.paused is False
    assert s.steps[0].pause is None
    assert not s.steps[0].waits_for_promote
    assert s.steps[0].hold_seconds == 0
    assert s.steps[1].waits_for_promote
    assert api.parse_spec(raw) == api.parse_spec(api.drop_nulls(raw)[0])


def test_drop_nulls_names_every_null_it_drops_with_its_wire_path() -> None:
    raw = {
        "paused": None,
        "steps": [{"weight": 10, "pause": None}, {"weight": 100, "pause": {"duration": None}}],
        "analysis": {"metrics": [{"name": "m", "query": "q", "threshold": {"max": None}}]},
    }
    pruned, dropped = api.drop_nulls(raw, "spec")
    assert dropped == [
        "spec.paused",
        "spec.steps[0].pause",
        "spec.steps[1].pause.duration",
        "spec.analysis.metrics[0].threshold.max",
    ]
    assert pruned == {
        "steps": [{"weight": 10}, {"weight": 100, "pause": {}}],
        "analysis": {"metrics": [{"name": "m", "query": "q", "threshold": {}}]},
    }
    assert raw["paused"] is None  # the input is left as it was
    assert api.drop_nulls(None, "spec") == (None, [])
