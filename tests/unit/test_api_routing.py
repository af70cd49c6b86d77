"""spec.trafficRouting.gatewayAPI: accepted shapes and a clear message naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from ftrollout.model import api
from ftrollout.model.crd import build_crd


def spec(routing: Any) -> dict[str, Any]:
    return {
        "targetRef": {"name": "app"},
        "freeThreaded": {"image": "x"},
        "steps": [{"weight": 100}],
        "trafficRouting": {"gatewayAPI": routing},
    }


OK = {"httpRoutes": [{"name": "web"}], "stableService": "app"}


def test_routing_is_optional_and_off_by_default() -> None:
    raw = spec(OK)
    del raw["trafficRouting"]
    assert api.parse_spec(raw).traffic_routing is None


def test_matches_round_trip_in_gateway_api_wire_names() -> None:
    routing = {
        **OK,
        "matches": [
            {
                "path": {"type": "Exact", "value": "/api/items"},
                "method": "GET",
                "headers": [{"type": "RegularExpression", "name": "x-user", "value": "^a"}],
            }
        ],
    }
    parsed = api.parse_spec(spec(routing))
    assert parsed.traffic_routing is not None
    assert parsed.traffic_routing.gateway_api is not None
    assert api.dump(parsed)["trafficRouting"]["gatewayAPI"] == routing
    # A path without a type is a PathPrefix, as in Gateway API.
    short = api.parse_spec(spec({**OK, "matches": [{"path": {"value": "/x"}}]}))
    assert api.dump(short)["trafficRouting"]["gatewayAPI"]["matches"][0]["path"] == {
        "type": "PathPrefix",
        "value": "/x",
    }


@pytest.mark.parametrize(
    ("routing", "field", "words"),
    [
        ({**OK, "httpRoutes": []}, "spec.trafficRouting.gatewayAPI.httpRoutes", "at least 1"),
        (
            {**OK, "httpRoutes": [{"name": "a"}, {"name": "a"}]},
            "spec.trafficRouting.gatewayAPI",
            api.MSG_ROUTES_UNIQUE,
        ),
        ({**OK, "stableService": "Bad_Name"}, "spec.trafficRouting.gatewayAPI.stableService", ""),
        ({**OK, "stableService": "app-ft"}, "spec", api.MSG_STABLE_IS_FT),
        (
            {**OK, "matches": [{"path": {"type": "Exact", "value": "api"}}]},
            "spec.trafficRouting.gatewayAPI.matches[0].path",
            api.MSG_PATH_SLASH,
        ),
        (
            {**OK, "matches": [{"method": "FETCH"}]},
            "spec.trafficRouting.gatewayAPI.matches[0].method",
            "GET",
        ),
        (
            {
                **OK,
                "matches": [
                    {"headers": [{"name": "A", "value": "1"}, {"name": "a", "value": "2"}]}
                ],
            },
            "spec.trafficRouting.gatewayAPI.matches[0]",
            api.MSG_HEADERS_UNIQUE,
        ),
        ({**OK, "weights": 5}, "spec.trafficRouting.gatewayAPI.weights", "not permitted"),
    ],
)
def test_bad_routing_names_the_field(routing: Any, field: str, words: str) -> None:
    with pytest.raises(api.SpecError) as info:
        api.parse_spec(spec(routing))
    assert info.value.field == field
    assert words in info.value.message


def test_crd_carries_the_same_rules_as_cel() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    messages = [v["message"] for v in schema["x-kubernetes-validations"]]
    assert any(api.MSG_STABLE_IS_FT in m for m in messages)
    gw = schema["properties"]["trafficRouting"]["properties"]["gatewayAPI"]
    assert gw["required"] == ["httpRoutes", "stableService"]
    routes = gw["properties"]["httpRoutes"]["x-kubernetes-validations"]
    assert routes[0]["message"] == api.MSG_ROUTES_UNIQUE
