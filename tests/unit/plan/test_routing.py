"""HTTPRoute edits (plan.routing): what the user's route looks like at every weight and after.

A user reading their HTTPRoute during a rollout sees the free-threaded Service beside the stable
one with weights w / 100 - w, their own rules and filters untouched; after a rollback or a
deletion they see their route exactly as they wrote it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftrollout.model import api
from ftrollout.plan.routing import RoutingError, Services, apply, restore, rule_weights

SVC = Services(stable="app", free_threaded="app-ft")


def ref(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": 8080, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def rule(*refs: dict[str, Any], path: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"backendRefs": list(refs), **extra}
    if path is not None:
        out["matches"] = [{"path": {"type": "PathPrefix", "value": path}}]
    return out


def route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"parentRefs": [{"name": "gw"}], "rules": list(rules)}


GET_API = [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}]


@pytest.mark.parametrize(
    ("before", "weight", "matches", "after"),
    [
        pytest.param(
            route(rule(ref("app"))),
            10,
            [],
            route(rule(ref("app", 90), ref("app-ft", 10))),
            id="one rule to the stable Service: 90/10",
        ),
        pytest.param(
            route(rule(ref("app", 1), path="/a"), rule(ref("app"), path="/b")),
            25,
            [],
            route(
                rule(ref("app", 75), ref("app-ft", 25), path="/a"),
                rule(ref("app", 75), ref("app-ft", 25), path="/b"),
            ),
            id="every rule to the stable Service is split",
        ),
        pytest.param(
            route(rule(ref("app")), rule(ref("other"), path="/o")),
            50,
            [],
            route(rule(ref("app", 50), ref("app-ft", 50)), rule(ref("other"), path="/o")),
            id="a rule to another Service is untouched",
        ),
        pytest.param(
            route(rule(ref("app", 3), ref("other", 1))),
            10,
            [],
            route(rule(ref("app", 270), ref("app-ft", 30), ref("other", 100))),
            id="beside another backend: the stable share is divided, the other keeps its share",
        ),
        pytest.param(
            route(
                rule(
                    ref("app", filters=[{"type": "RequestHeaderModifier"}]),
                    filters=[{"type": "URLRewrite"}],
                )
            ),
            5,
            [],
            route(
                rule(
                    ref("app", 95, filters=[{"type": "RequestHeaderModifier"}]),
                    ref("app-ft", 5, filters=[{"type": "RequestHeaderModifier"}]),
                    filters=[{"type": "URLRewrite"}],
                )
            ),
            id="rule and backend filters kept, the backend's copied to the free-threaded one",
        ),
        pytest.param(
            route(rule(ref("app", namespace="elsewhere"))),
            10,
            [],
            RoutingError,
            id="another namespace's Service of the same name is not the stable Service",
        ),
        pytest.param(
            route(rule(ref("other"))),
            10,
            [],
            RoutingError,
            id="no rule to the stable Service: an error, not a silent no-op",
        ),
        pytest.param(
            route(rule(ref("app", 1), path="/"), rule(ref("other"), path="/o")),
            20,
            GET_API,
            route(
                {"matches": GET_API, "backendRefs": [ref("app", 80), ref("app-ft", 20)]},
                rule(ref("app", 1), path="/"),
                rule(ref("other"), path="/o"),
            ),
            id="matches: one rule added first, the user's rules untouched",
        ),
        pytest.param(
            route(rule(ref("app"))),
            100,
            [],
            route(rule(ref("app", 0), ref("app-ft", 100))),
            id="promoted: 0/100",
        ),
    ],
)
def test_apply_then_restore(
    before: dict[str, Any],
    weight: int,
    matches: list[dict[str, Any]],
    after: dict[str, Any] | type[Exception],
) -> None:
    original = copy.deepcopy(before)
    if isinstance(after, type):
        with pytest.raises(after):
            apply(before, [], SVC, weight, matches)
        return
    new, records = apply(before, [], SVC, weight, matches)
    assert new == after
    assert before == original  # the observed object is not mutated
    assert rule_weights(new, SVC) == [weight] * len(rule_weights(new, SVC))
    # Idempotent, and undone exactly (also by applying weight 0).
    assert apply(new, records, SVC, weight, matches) == (new, records)
    assert restore(new, records, SVC) == original
    assert apply(new, records, SVC, 0, matches) == (original, [])


def test_matches_rule_is_never_duplicated_and_follows_a_new_weight() -> None:
    r0 = route(rule(ref("app")))
    r1, rec1 = apply(r0, [], SVC, 10, GET_API)
    r2, rec2 = apply(r1, rec1, SVC, 50, GET_API)
    assert len(r2["rules"]) == 2
    assert r2["rules"][0]["backendRefs"] == [ref("app", 50), ref("app-ft", 50)]
    assert restore(r2, rec2, SVC) == r0


def test_changing_matches_mid_rollout_replaces_the_added_rule() -> None:
    r0 = route(rule(ref("app")))
    r1, rec1 = apply(r0, [], SVC, 10, GET_API)
    other = [{"path": {"type": "Exact", "value": "/health"}}]
    r2, rec2 = apply(r1, rec1, SVC, 10, other)
    assert [r.get("matches") for r in r2["rules"]] == [other, None]
    # And back to splitting every rule: the added rule goes, the user's rule is split.
    r3, rec3 = apply(r2, rec2, SVC, 10, [])
    assert r3 == route(rule(ref("app", 90), ref("app-ft", 10)))
    assert restore(r3, rec3, SVC) == r0


def test_a_rule_added_by_the_user_mid_rollout_is_kept_and_restored_as_written() -> None:
    r0 = route(rule(ref("app"), path="/"))
    r1, rec1 = apply(r0, [], SVC, 10, [])
    added_other = rule(ref("other"), path="/o")
    added_stable = rule(ref("app", 7), path="/new")
    r1["rules"] = [added_other, *r1["rules"], added_stable]
    r2, rec2 = apply(r1, rec1, SVC, 50, [])
    assert r2["rules"][0] == added_other
    assert r2["rules"][2]["backendRefs"] == [ref("app", 50), ref("app-ft", 50)]
    assert restore(r2, rec2, SVC) == route(added_other, rule(ref("app"), path="/"), added_stable)


def test_a_rule_whose_matches_the_user_edits_mid_rollout_is_still_restored() -> None:
    r0 = route(rule(ref("app", 4), path="/"))
    r1, rec1 = apply(r0, [], SVC, 10, [])
    r1["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "/v2"}}]
    assert restore(r1, rec1, SVC) == route(rule(ref("app", 4), path="/v2"))


def test_without_a_record_only_the_free_threaded_backend_is_taken_out() -> None:
    # The status was lost: the route is still made to send nothing to the free-threaded pods.
    r1, _ = apply(route(rule(ref("app")), rule(ref("app"), path="/x")), [], SVC, 100, GET_API)
    restored = restore(r1, [], SVC, GET_API)
    assert rule_weights(restored, SVC) == []
    assert restored["rules"] == [rule(ref("app")), rule(ref("app"), path="/x")]
    half, _ = apply(route(rule(ref("app"))), [], SVC, 100, [])
    assert restore(half, [], SVC) == route(rule(ref("app")))  # a lone backend never at weight 0


def test_records_survive_a_status_round_trip() -> None:
    r1, rec1 = apply(route(rule(ref("app", 2), ref("other"))), [], SVC, 30, [])
    wire = api.dump(api.TrafficRoutingStatus(routes=[api.RouteRecord(name="r", rules=rec1)]))
    back = api.TrafficRoutingStatus.model_validate(json.loads(json.dumps(wire)))
    assert restore(r1, back.routes[0].rules, SVC) == route(rule(ref("app", 2), ref("other")))


# ------------------------------------------------------------------------ properties

names = st.sampled_from(["app", "other", "third"])
backend = st.builds(
    lambda n, w: ref(n, w), names, st.one_of(st.none(), st.integers(min_value=0, max_value=9))
)
a_rule = st.builds(
    lambda refs, path: rule(*refs, path=path),
    st.lists(backend, min_size=1, max_size=3),
    st.one_of(st.none(), st.sampled_from(["/", "/a", "/b"])),
)
routes = st.builds(lambda rules: route(*rules), st.lists(a_rule, min_size=1, max_size=5)).filter(
    lambda r: any(b["name"] == "app" for x in r["rules"] for b in x["backendRefs"])
)
weights = st.integers(min_value=1, max_value=100)
match_sets = st.sampled_from([[], GET_API, [{"headers": [{"name": "x", "value": "1"}]}]])


@settings(max_examples=300, deadline=None)
@given(routes, weights, weights, match_sets, match_sets)
def test_apply_is_idempotent_and_undone_exactly(
    r: dict[str, Any], w1: int, w2: int, m1: list[dict[str, Any]], m2: list[dict[str, Any]]
) -> None:
    original = copy.deepcopy(r)
    r1, rec1 = apply(r, [], SVC, w1, m1)
    assert apply(r1, rec1, SVC, w1, m1) == (r1, rec1)
    assert restore(r1, rec1, SVC) == original
    # Any sequence of weights and match sets lands where a single apply would.
    r2, rec2 = apply(r1, rec1, SVC, w2, m2)
    assert (r2, rec2) == apply(original, [], SVC, w2, m2)
    assert restore(r2, rec2, SVC) == original
    assert all(w == w2 for w in rule_weights(r2, SVC))


@settings(max_examples=300, deadline=None)
@given(routes, weights, weights, match_sets, a_rule, st.integers(min_value=0, max_value=6))
def test_user_rules_added_mid_rollout_are_preserved(
    r: dict[str, Any],
    w1: int,
    w2: int,
    matches: list[dict[str, Any]],
    extra: dict[str, Any],
    at: int,
) -> None:
    r1, rec1 = apply(r, [], SVC, w1, matches)
    k = min(at, len(r1["rules"]))
    r1["rules"].insert(k, extra)
    r2, rec2 = apply(r1, rec1, SVC, w2, matches)
    assert apply(r2, rec2, SVC, w2, matches) == (r2, rec2)
    added = 1 if matches else 0
    expected = copy.deepcopy(r)
    expected["rules"].insert(max(0, k - added), extra)
    assert restore(r2, rec2, SVC) == expected
    # Never duplicated: one added rule at most, each user rule once.
    ft_rules = [x for x in r2["rules"] if any(b["name"] == "app-ft" for b in x["backendRefs"])]
    assert len(r2["rules"]) == len(expected["rules"]) + added
    assert len(ft_rules) <= len(expected["rules"]) + added


SIXTEEN_RULES = route(*(rule(ref("app", port=80), path=f"/p{i}") for i in range(16)))
SIXTEEN_REFS = route(rule(ref("app", port=80), *(ref(f"o{i}", port=80) for i in range(15))))
HEAVY = route(rule(ref("app", 20000, port=80), ref("other", 20000, port=80)))


@pytest.mark.parametrize(
    ("user", "matches", "limit"),
    [
        (SIXTEEN_RULES, [{"path": {"type": "PathPrefix", "value": "/catalog"}}], "16 rules"),
        (SIXTEEN_REFS, [], "16 backendRefs"),
        (HEAVY, [], "1000000"),
    ],
)
def test_a_split_past_gateway_api_limits_is_refused_with_the_limit(
    user: dict[str, Any], matches: list[dict[str, Any]], limit: str
) -> None:
    # The apiserver rejects such a route (422): the planner says why instead of writing it.
    with pytest.raises(RoutingError, match=limit):
        apply(user, [], SVC, 10, matches)


def test_a_rule_another_rollout_splits_is_refused_naming_it() -> None:
    # Two rollouts whose stable Services share one rule would undo each other's edit at every
    # reconcile: the second one is refused, the first keeps its split.
    a = Services(stable="a", free_threaded="a-ft", others=(("b-ft", "rollout-b"),))
    b = Services(stable="b", free_threaded="b-ft", others=(("a-ft", "rollout-a"),))
    shared = route(rule(ref("a", 1, port=80), ref("b", 1, port=80)))
    split_a, rec_a = apply(shared, [], a, 10, [])
    with pytest.raises(RoutingError, match="'rollout-a'"):
        apply(split_a, [], b, 10, [])
    again, _ = apply(split_a, rec_a, a, 10, [])
    assert again == split_a


def test_the_added_rule_keeps_the_filters_timeouts_and_port_of_the_rule_it_takes_from() -> None:
    # The matched requests used to go through the user's rule: its URL rewrite, header
    # changes and timeouts apply to both shares of the added rule.
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/api/"}},
    }
    header = {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]},
    }
    user = route(
        rule(
            ref("app", port=8080, filters=[header]),
            path="/",
            filters=[rewrite],
            timeouts={"request": "5s"},
        )
    )
    new, records = apply(user, [], SVC, 10, [{"path": {"type": "PathPrefix", "value": "/c"}}])
    added = new["rules"][0]
    assert added["filters"] == [rewrite]
    assert added["timeouts"] == {"request": "5s"}
    assert [(r["name"], r["port"], r.get("filters")) for r in added["backendRefs"]] == [
        ("app", 8080, [header]),
        ("app-ft", 8080, [header]),
    ]
    assert restore(new, records, SVC) == user


def test_a_prefix_rewrite_copied_beside_an_exact_match_is_refused() -> None:
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/api/"}},
    }
    user = route(rule(ref("app"), path="/", filters=[rewrite]))
    with pytest.raises(RoutingError, match="PathPrefix"):
        apply(user, [], SVC, 10, [{"path": {"type": "Exact", "value": "/c"}}])
