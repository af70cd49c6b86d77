"""The committed CRD is exactly what the models generate, and it is a valid structural schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftrollout.main import main
from ftrollout.model import api
from ftrollout.model.crd import CRD_FILE, build_crd, render_crd_yaml

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_matches_the_models_byte_for_byte() -> None:
    committed = (ROOT / CRD_FILE).read_text()
    assert committed == render_crd_yaml(), "CRD drifted from api.py: run `make crd` and commit"


def test_cli_prints_the_same_crd(capsys: Any) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == (ROOT / CRD_FILE).read_text()


def test_schema_is_structural() -> None:
    for path, node in walk(root_schema()):
        assert node.get("type") in ALLOWED_TYPES, f"{path or '<root>'} has no valid type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title", "additionalProperties"):
            assert forbidden not in node, f"{path}: {forbidden} is not structural"
        if node["type"] == "object" and "properties" not in node and path != ".metadata":
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, path


def test_every_property_has_a_description() -> None:
    missing = [
        f"{path}.{name}"
        for path, node in walk(root_schema())
        for name, prop in node.get("properties", {}).items()
        if not prop.get("description") and f"{path}.{name}" != ".metadata"
    ]
    assert missing == []


def test_names_printer_columns_and_subresource() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "freethreadedrollouts.freethreaded.dev"
    assert names["shortNames"] == ["ftr"]
    assert names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [
        c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")
    ]
    assert columns == ["TARGET", "PHASE", "STEP", "WEIGHT", "AVAILABLE", "GIL", "RACES", "AGE"]


def column(name: str) -> dict[str, Any]:
    cols = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    found: dict[str, Any] = next(c for c in cols if c["name"] == name)
    return found


def node_at(path: str) -> dict[str, Any]:
    node = root_schema()
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_step_column_counts_from_1_like_the_messages() -> None:
    """The 0-based stepIndex stays in status; the column shows status.currentStep (1-based)."""
    step = column("Step")
    assert step["jsonPath"] == ".status.currentStep"
    assert step["type"] == "integer"
    assert node_at("status.currentStep")["type"] == "integer"
    assert "1" in step["description"]


def test_available_column_shows_ready_over_n() -> None:
    available = column("Available")
    assert available["jsonPath"] == ".status.replicas.summary"
    assert node_at("status.replicas.summary")["type"] == "string"


TIME_FIELDS = [
    "status.stepStartedAt",
    "status.promotedAt",
    "status.bakeUntil",
    "status.races.since",
    "status.races.recent.[].time",
    "status.races.probeCounters.[].time",
    "status.analysis.lastRound",
    "status.analysis.metrics.[].time",
    "status.analysis.lastComparison.time",
    "status.preflight.time",
    "status.rollback.time",
    "status.lastAction.time",
    "status.lastAction.writtenAt",
    "status.recentActions.[].time",
    "status.recentActions.[].writtenAt",
    "status.conditions.[].lastTransitionTime",
]


@pytest.mark.parametrize("path", TIME_FIELDS)
def test_times_are_date_time_strings(path: str) -> None:
    node = node_at(path)
    assert (node["type"], node.get("format")) == ("string", "date-time")


def test_every_date_time_field_is_listed() -> None:
    dated = [
        p.lstrip(".").replace("[]", ".[]")
        for p, n in walk(root_schema())
        if n.get("format") == "date-time"
    ]
    assert sorted(dated) == sorted(TIME_FIELDS)


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = node_at("status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_cross_field_rules_are_cel_with_the_python_messages() -> None:
    spec = root_schema()["properties"]["spec"]["properties"]
    step_messages = {r["message"] for r in spec["steps"]["x-kubernetes-validations"]}
    assert step_messages == {api.MSG_STEPS_INCREASING, api.MSG_STEPS_LAST_100}
    metric = spec["analysis"]["properties"]["metrics"]["items"]
    assert {r["message"] for r in metric["x-kubernetes-validations"]} == {api.MSG_METRIC_ONE_CHECK}
    assert spec["steps"]["items"]["properties"]["weight"]["minimum"] == 1
    assert spec["steps"]["items"]["properties"]["weight"]["maximum"] == 100


def test_design_example_fits_the_schema_shape() -> None:
    example = yaml.safe_load((ROOT / "manifests/examples/checkout.yaml").read_text())
    spec_props = root_schema()["properties"]["spec"]["properties"]
    assert set(example["spec"]) <= set(spec_props)


def test_the_rollout_name_is_bounded_by_a_root_cel_rule_with_the_python_message() -> None:
    # CEL may only see metadata.name (and generateName) at the root of the schema.
    rules = root_schema()["x-kubernetes-validations"]
    assert rules[0] == {
        "rule": "self.metadata.name.size() <= 63",
        "message": api.MSG_NAME_TOO_LONG,
    }
    assert api.MAX_NAME_LENGTH == 63


def test_the_held_target_is_immutable_by_a_root_transition_rule() -> None:
    # Status is visible only at the root: a targetRef may be corrected until the rollout holds
    # a target (status.target), never moved away from it after.
    rules = root_schema()["x-kubernetes-validations"]
    assert rules[1]["message"] == api.MSG_TARGET_IMMUTABLE
    assert "oldSelf.status.target" in rules[1]["rule"]
    assert "target" in root_schema()["properties"]["status"]["properties"]


def schema_at(path: str) -> dict[str, Any]:
    node = root_schema()["properties"]["spec"]
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


@pytest.mark.parametrize(
    ("path", "low", "high"),
    [
        ("steps.[].pause.duration", "0s", "168h"),
        ("analysis.interval", "1s", "1h"),
        ("analysis.prometheus.timeout", "1s", "5m"),
        ("guardrails.raceBudget.window", "1m", "24h"),
        ("guardrails.dependencyGate.timeout", "10s", "1h"),
        ("progressDeadline", "10s", "24h"),
    ],
)
def test_durations_carry_their_bounds_as_cel_with_the_python_message(
    path: str, low: str, high: str
) -> None:
    node = schema_at(path)
    assert node["type"] == "string"
    assert node["maxLength"] <= 32  # keeps the CEL cost estimate of duration() small
    (rule,) = node["x-kubernetes-validations"]
    assert rule == {
        "rule": f"duration(self) >= duration('{low}') && duration(self) <= duration('{high}')",
        "message": f"must be between {low} and {high}",
    }


@pytest.mark.parametrize(
    ("path", "low", "high"),
    [
        ("analysis.failureLimit", 0, 100),
        ("guardrails.gilFallback.maxPods", 0, 1000),
        ("guardrails.raceBudget.maxIncidents", 0, 1000),
    ],
)
def test_counts_carry_their_bounds(path: str, low: int, high: int) -> None:
    node = schema_at(path)
    assert (node["type"], node["minimum"], node["maximum"]) == ("integer", low, high)


def test_target_ref_refuses_anything_but_an_apps_v1_deployment_with_the_python_message() -> None:
    ref = schema_at("targetRef")
    assert ref["required"] == ["name"]
    for field, value, message in (
        ("apiVersion", "apps/v1", api.MSG_TARGET_API_VERSION),
        ("kind", "Deployment", api.MSG_TARGET_KIND),
    ):
        node = ref["properties"][field]
        assert node["default"] == value
        assert node["x-kubernetes-validations"] == [
            {"rule": f"self == '{value}'", "message": message}
        ]
