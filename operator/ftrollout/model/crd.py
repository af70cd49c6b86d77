"""Generate the CustomResourceDefinition from the pydantic models in `api.py`.

Pydantic emits JSON Schema (draft 2020-12 flavour); Kubernetes wants a *structural* OpenAPI v3
schema: no $ref, no anyOf for optional fields, a type on every node, no `title`. This module
translates one into the other and adds what only a CRD has (printer columns, CEL rules carried
through from `json_schema_extra`, the status subresource).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from ftrollout.model import api

CRD_FILE = "crds/freethreaded.dev_freethreadedrollouts.yaml"

# Keys of JSON Schema that the apiserver's OpenAPI v3 subset accepts and we use.
_KEEP = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
}


class SchemaError(ValueError):
    """The models produced something that cannot become a structural schema."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    merged: dict[str, Any] = copy.deepcopy(defs[name])
    # A field-level description/validation wins over the referenced model's own.
    for key, value in node.items():
        if key != "$ref":
            merged[key] = value
    return merged


def _strip_optional(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None` arrives as anyOf [X, null]; in a CRD "optional" simply means "not required"."""
    any_of = node.get("anyOf")
    if any_of is None:
        return node
    options = [o for o in any_of if o.get("type") != "null"]
    if len(options) != 1:
        raise SchemaError(f"unsupported union in schema: {any_of}")
    merged = dict(options[0])
    for key, value in node.items():
        if key != "anyOf":
            merged.setdefault(key, value)
    if merged.get("default", 0) is None:
        del merged["default"]
    return merged


def to_structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    node = _strip_optional(_resolve(node, defs))
    node = _strip_optional(_resolve(node, defs))
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = _resolve(node["allOf"][0], defs)
        node = {**inner, **{k: v for k, v in node.items() if k != "allOf"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out["properties"] = {
                name: to_structural(prop, defs, f"{path}.{name}") for name, prop in value.items()
            }
        elif key == "items":
            out["items"] = to_structural(value, defs, f"{path}[]")
        elif key == "default" and isinstance(value, dict | list):
            # Object/list defaults come from default_factory models; the operator applies them,
            # and keeping them out of the CRD avoids pinning today's defaults into stored objects.
            continue
        elif key in _KEEP:
            out[key] = value
    if "type" not in out:
        if "enum" in node:
            out["type"] = "string"
        else:
            raise SchemaError(f"no type for {path or '<root>'}: {node}")
    if out["type"] == "object" and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    # type and description first: the YAML is read by people reviewing CRD upgrades.
    order = ["type", "description"]
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    return to_structural(schema, defs)


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name",
         "description": "Deployment being rolled"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
         "description": "Rollout phase"},
        {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep",
         "description": "Current step, counted from 1 (0 before step 1)"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.weight",
         "description": "Free-threaded share of replicas (%)"},
        {"name": "Available", "type": "string", "jsonPath": ".status.replicas.summary",
         "description": "Ready replicas over both tracks / N"},
        {"name": "GIL", "type": "string", "jsonPath": ".status.gil.summary",
         "description": "GIL state of free-threaded pods: off, ON(n), ?"},
        {"name": "Races", "type": "string", "jsonPath": ".status.races.summary",
         "description": "Race incidents in the window / budget"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1,
         "description": "What the operator is doing"},
    ]  # fmt: skip


def build_crd() -> dict[str, Any]:
    spec_schema = model_schema(api.RolloutSpec)
    status_schema = model_schema(api.RolloutStatus)
    spec_schema["description"] = (
        "Desired rollout of the target Deployment onto a free-threaded CPython image."
    )
    status_schema["description"] = "Observed state, written by the ftrollout operator."
    root = {
        "type": "object",
        "description": "FreeThreadedRollout canaries a Python Deployment onto a free-threaded "
        "(PEP 703, no-GIL) image and rolls back when pods fall back to the GIL, crash on races "
        "or lose to the standard pods on SLO metrics.",
        "required": ["spec"],
        "x-kubernetes-validations": api.root_rules(),
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            # The apiserver allows nothing on metadata but its type.
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "ftrollout"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": api.CATEGORIES,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    # The scale subresource lets an HPA (or `kubectl scale ftr/NAME`) set
                    # the total the operator splits, as Argo Rollouts' Rollout does.
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas.target",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = (
        "# Generated by `ftrollout crd` from operator/ftrollout/model/api.py. "
        "Do not edit by hand:\n"
        "# run `make crd`; tests/unit/test_crd.py fails when this file drifts from the models.\n"
    )
    body = yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)
    return header + "---\n" + body


def cli_main(args: object) -> int:
    """`ftrollout crd`: print the CRD (redirect into crds/ with `make crd`)."""
    import sys

    sys.stdout.write(render_crd_yaml())
    return 0
