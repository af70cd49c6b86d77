"""Prometheus addresses: parsed, normalised, checked against the operator's allow-list; and which
guardrail series a Prometheus may speak about (tenant isolation)."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from planfixtures import make_spec

from ftrollout.model import api
from ftrollout.plan.prometheus import (
    FIELD_ADDRESS,
    AddressError,
    AllowList,
    address_error,
    check_address,
    normalise,
    parse_allow_list,
    probe_series,
    reporting_pods,
    series_for,
    trusted_namespaces,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://prometheus.monitoring:9090", "http://prometheus.monitoring:9090"),
        ("HTTP://Prometheus.Monitoring:9090/", "http://prometheus.monitoring:9090"),
        ("https://prom.example", "https://prom.example"),
        ("https://prom.example:443", "https://prom.example"),  # the default port is dropped
        ("http://prom.example:80/", "http://prom.example"),
        ("http://prom.example:443", "http://prom.example:443"),  # not http's default
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://[::1]:9090", "http://[::1]:9090"),
        ("http://[FE80::1]", "http://[fe80::1]"),
        ("http://gw.example/prometheus", "http://gw.example/prometheus"),
        ("http://gw.example/team-a/prom/", "http://gw.example/team-a/prom"),  # path case kept
        ("http://gw.example/Prom_1.x~y", "http://gw.example/Prom_1.x~y"),
    ],
)
def test_addresses_are_normalised(raw: str, expected: str) -> None:
    assert normalise(raw) == expected
    assert normalise(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("prometheus:9090", "absolute URL"),
        ("//prometheus:9090", "absolute URL"),
        ("ftp://prometheus", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://x", "scheme"),
        ("http://user:pw@prometheus:9090", "user information"),
        ("http://@prometheus:9090", "user information"),
        ("http://prometheus:9090?x=1", "query"),
        ("http://prometheus:9090/?", "query"),
        ("http://prometheus:9090#", "fragment"),
        ("http://prometheus:9090/api/v1/admin/tsdb/delete_series#", "fragment"),
        ("http://", "no host"),
        ("http://:9090", "malformed host"),
        ("http://prom_etheus:9090", "malformed host"),
        ("http://prometheus.:9090", "malformed host"),
        ("http://-prom:9090", "malformed host"),
        ("http://prom%2e:9090", "malformed host"),
        ("http://prometheus:0", "out of range"),
        ("http://prometheus:65536", "out of range"),
        ("http://prometheus:+80", "malformed port"),
        ("http://prometheus:", "malformed port"),
        ("http://prometheus:9090:1", "malformed port"),
        ("http://[::1", "IPv6"),
        ("http://[zz::1]", "IPv6"),
        ("http://[::1]x", "malformed port"),
        ("http://prometheus/a/../b", "dot segments"),
        ("http://prometheus/./x", "dot segments"),
        ("http://prometheus/a//b", "empty path segment"),
        ("http://prometheus/%2e%2e/x", "percent-encoding"),
        ("http://prometheus/a;b", "percent-encoding"),
        ("http://prometheus/a=b", "percent-encoding"),
        ("http://prome theus", "whitespace"),
        ("http://prometheus\n", "whitespace"),
        ("http://prometheus\x00", "control"),
        ("http:\\\\prometheus", "backslash"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(AddressError) as exc:
        normalise(raw)
    assert why in str(exc.value)


def test_the_refusal_never_echoes_a_long_address() -> None:
    with pytest.raises(AddressError) as exc:
        normalise("ftp://" + "x" * 5000)
    assert len(str(exc.value)) < 100


def test_the_allow_list_holds_the_operators_own_url_by_default() -> None:
    allowed = parse_allow_list([], "http://Prometheus.monitoring:9090/")
    assert allowed == AllowList(frozenset({"http://prometheus.monitoring:9090"}))
    assert check_address("http://prometheus.monitoring:9090", allowed)
    with pytest.raises(AddressError, match="not in the operator's allow-list"):
        check_address("http://evil.example:9090", allowed)


def test_nothing_is_allowed_without_an_own_url_or_a_list() -> None:
    allowed = parse_allow_list([], None)
    with pytest.raises(AddressError, match="allowed: none"):
        check_address("http://prometheus:9090", allowed)


def test_allow_list_entries_are_comma_lists_normalised_and_star_is_an_explicit_opt_in() -> None:
    allowed = parse_allow_list(
        ["http://a:9090, https://B.example:443/", "http://c/prom"], "http://own:9090"
    )
    assert allowed.addresses == {
        "http://a:9090",
        "https://b.example",
        "http://c/prom",
        "http://own:9090",
    }
    assert not allowed.any_address
    assert check_address("HTTPS://b.example/", allowed) == "https://b.example"
    assert parse_allow_list(["*"], None).allows("http://anything:1")


def test_a_path_prefix_is_allowed_only_exactly() -> None:
    allowed = parse_allow_list(["http://gw/prometheus"], None)
    assert check_address("http://gw/prometheus/", allowed) == "http://gw/prometheus"
    for other in ("http://gw", "http://gw/prometheus/api/v1/admin", "http://gw/prometheusx"):
        with pytest.raises(AddressError, match="allow-list"):
            check_address(other, allowed)


def test_a_bad_allow_list_entry_is_named() -> None:
    with pytest.raises(AddressError, match="allow-list entry 'http://x@y'"):
        parse_allow_list(["http://ok:1,http://x@y"], None)
    with pytest.raises(AddressError, match="query"):
        parse_allow_list([], "http://own:9090?x")


def spec_with_address(address: str | None) -> api.RolloutSpec:
    spec = make_spec(metrics=("errors",))
    assert spec.analysis is not None
    prometheus = spec.analysis.prometheus.model_copy(update={"address": address})
    analysis = spec.analysis.model_copy(update={"prometheus": prometheus})
    return spec.model_copy(update={"analysis": analysis})


def test_a_spec_naming_an_address_outside_the_list_is_a_spec_error_on_the_field() -> None:
    allowed = parse_allow_list([], "http://own:9090")
    assert address_error(spec_with_address(None), allowed) is None
    assert address_error(spec_with_address("http://own:9090/"), allowed) is None
    assert address_error(make_spec(), allowed) is None  # no analysis at all
    err = address_error(spec_with_address("http://other:9090"), allowed)
    assert err is not None
    assert err.field == FIELD_ADDRESS
    assert "not in the operator's allow-list" in err.message
    err = address_error(spec_with_address("http://own:9090/api/v1/query?query=up#"), allowed)
    assert err is not None
    assert err.field == FIELD_ADDRESS
    assert "query" in err.message


# ---------------------------------------------------------------- namespace scopes

TEAM_A = "http://prom.team-a:9090"


def scoped() -> AllowList:
    return parse_allow_list(
        [TEAM_A, "http://shared:9090"],
        "http://own:9090",
        [f"{TEAM_A}/=team-a,team-a-staging"],
    )


def test_a_scoped_address_is_usable_only_from_its_namespaces() -> None:
    allowed = scoped()
    assert allowed.scopes == {TEAM_A: frozenset({"team-a", "team-a-staging"})}
    assert check_address("http://Prom.Team-A:9090/", allowed, "team-a") == TEAM_A
    assert check_address(TEAM_A, allowed, "team-a-staging") == TEAM_A
    with pytest.raises(AddressError, match="reserved for other namespaces") as exc:
        check_address(TEAM_A, allowed, "team-b")
    assert "team-a" not in str(exc.value).replace(TEAM_A, "")  # other teams' names not shown
    with pytest.raises(AddressError, match="reserved for other namespaces"):
        check_address(TEAM_A, allowed)  # namespace unknown: refused, never assumed


def test_unscoped_addresses_and_the_operators_own_stay_usable_from_every_namespace() -> None:
    allowed = scoped()
    for namespace in ("team-a", "team-b", None):
        assert check_address("http://shared:9090", allowed, namespace)
        assert check_address("http://own:9090", allowed, namespace)


def test_a_scope_holds_even_with_the_star_opt_in() -> None:
    allowed = parse_allow_list(["*"], None, [f"{TEAM_A}=team-a"])
    assert check_address("http://anything:1", allowed, "team-b")
    with pytest.raises(AddressError, match="reserved for other namespaces"):
        check_address(TEAM_A, allowed, "team-b")


def test_the_allowed_list_in_a_refusal_shows_only_what_the_namespace_may_use() -> None:
    with pytest.raises(AddressError) as exc:
        check_address("http://evil:9090", scoped(), "team-b")
    assert "allowed: http://own:9090, http://shared:9090" in str(exc.value)
    with pytest.raises(AddressError) as exc:
        check_address("http://evil:9090", scoped(), "team-a")
    assert f"allowed: http://own:9090, {TEAM_A}, http://shared:9090" in str(exc.value)


@pytest.mark.parametrize(
    ("scope", "why"),
    [
        ("http://prom.team-a:9090", "expected URL=NAMESPACE"),
        ("http://prom.team-a:9090=", "expected URL=NAMESPACE"),
        ("http://prom.team-a:9090=Team_A", "not a namespace name"),
        ("http://other:9090=team-a", "not in the allow-list"),
        ("http://own:9090=team-a", "the operator's own Prometheus"),
        ("http://x@y=team-a", "user information"),
    ],
)
def test_a_bad_scope_is_named(scope: str, why: str) -> None:
    with pytest.raises(AddressError, match=why):
        parse_allow_list([TEAM_A], "http://own:9090", [scope])


def test_a_spec_naming_another_namespaces_address_is_a_spec_error_on_the_field() -> None:
    allowed = scoped()
    assert address_error(spec_with_address(TEAM_A), allowed, "team-a") is None
    err = address_error(spec_with_address(TEAM_A), allowed, "team-b")
    assert err is not None
    assert err.field == FIELD_ADDRESS
    assert "reserved for other namespaces" in err.message
    assert "prometheus.allowedAddresses" in err.message


# ---------------------------------------------------------------- tenant isolation


def series(namespace: Any, pod: str = "web-ft-abc12-xyz") -> dict[str, Any]:
    labels = {"pod": pod} if namespace is None else {"namespace": namespace, "pod": pod}
    return {"metric": labels, "value": [0, "1"]}


def test_a_tenant_prometheus_speaks_only_for_its_rollouts_namespaces() -> None:
    trust = trusted_namespaces(
        [("http://team-a:9090", "a"), ("http://team-a:9090", "a2"), ("http://team-b:9090", "b")],
        "http://own:9090",
    )
    assert trust == {
        "http://team-a:9090": {"a", "a2"},
        "http://team-b:9090": {"b"},
        "http://own:9090": None,
    }
    answer = [series("a"), series("b"), series("a2"), series(None), {"value": [0, "1"]}]
    assert series_for(answer, trust["http://team-a:9090"]) == [series("a"), series("a2")]
    assert series_for(answer, trust["http://team-b:9090"]) == [series("b")]
    # The operator's own Prometheus is the platform's: it speaks for every namespace.
    assert series_for(answer, trust["http://own:9090"]) == answer


def test_a_tenant_naming_the_operators_own_prometheus_does_not_narrow_it() -> None:
    trust = trusted_namespaces([("http://own:9090", "a")], "http://own:9090")
    assert trust == {"http://own:9090": None}


def test_hostile_label_values_do_not_match_by_accident() -> None:
    trust = trusted_namespaces([("http://team-a:9090", "a")], None)
    hostile = [series(["a"]), series({"a": 1}), series("a "), series(""), {"metric": "a"}]
    assert series_for(hostile, trust["http://team-a:9090"]) == []


@pytest.mark.parametrize("trust", [None, frozenset({"team-a"})])
def test_malformed_series_never_count_and_never_raise(trust: frozenset[str] | None) -> None:
    """A Prometheus (even the operator's own) answering series that are not objects, or with
    labels that are not strings, must not stop the guardrail round for every namespace."""
    good = {
        "metric": {"namespace": "team-a", "pod": "web-ft-1-a", "module": "m"},
        "value": [0, "1"],
    }
    answer = [
        "x",
        {"metric": "x"},
        {"metric": {"namespace": "team-a", "pod": ["x"]}},
        {"metric": {"namespace": ["team-a"], "pod": "p"}},
        {"metric": {"namespace": "team-a", "pod": "p", "module": {"a": 1}}},
        good,
    ]
    assert series_for(answer, trust) == [good]
    assert series_for("not a list", trust) == []  # type: ignore[arg-type]


_label = st.sampled_from(["team-a", "team-b", "", "web-ft-5d9f7-x1", "web-ft-5d9f7-x2"])
_series = st.one_of(
    st.fixed_dictionaries(
        {
            "metric": st.dictionaries(
                st.sampled_from(["namespace", "pod", "module", "job"]),
                st.one_of(_label, st.integers(), st.none()),
            ),
            "value": st.one_of(
                st.tuples(st.floats(), st.sampled_from(["1", "NaN", "+Inf", "x", "0"])),
                st.none(),
                st.just([]),
            ),
        }
    ),
    st.none(),
    st.integers(),
    st.text(max_size=3),
)


@given(
    series=st.one_of(st.lists(_series, max_size=12), st.none(), st.text(max_size=3)),
    trust=st.one_of(st.none(), st.frozensets(st.sampled_from(["team-a", "team-b"]))),
)
@settings(max_examples=300, deadline=None)
def test_the_reporting_listing_finds_exactly_the_pods_probe_series_keeps(
    series: Any, trust: Any
) -> None:
    """reporting_pods reads no value any more (issue 22: the listing of 1000 pods every minute
    was an eighth of the idle CPU): the same pods as the full reading, for any answer, hostile
    or malformed ones included, and never one the operator does not know or trust."""
    known = {("team-a", "web-ft-5d9f7-x1"), ("team-b", "web-ft-5d9f7-x2"), ("", "")}
    pods, count = reporting_pods(series, trust, known)
    assert pods == {(s.namespace, s.pod) for s in probe_series(series, trust, known)}
    assert pods <= known
    assert count == (len(series) if isinstance(series, list) else 0)
