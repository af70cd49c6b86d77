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
    assert version["subresources"] == {"status": {}}
    columns = [
        c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")
    ]
    assert columns == ["TARGET", "PHASE", "WEIGHT", "GIL", "RACES", "AGE"]


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
