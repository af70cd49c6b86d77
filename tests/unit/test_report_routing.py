"""The KPI "traffic share with the GIL off" with traffic routing: a share of requests (request
counts per pod of each track), not of pods; the replica share with a note when no request
counts can be had."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from prom_stub import Answer, PromStub, vector
from test_plugin import FakeApi, fake_api, run, sample  # noqa: F401 (fake_api: a fixture)

from ftrollout.cli import plugin, report
from ftrollout.model import api

ROUTING = {"gatewayAPI": {"httpRoutes": [{"name": "web"}], "stableService": "web"}}
FT_PODS = ("web-ft-h-1", "web-ft-h-2")
STD_PODS = ("web-h-1", "web-h-2", "web-h-3")


def routed(**status: Any) -> tuple[api.RolloutSpec, api.RolloutStatus]:
    """sample()'s rollout (5 + 5 Ready pods, 4 free-threaded with the GIL off, 1 on) with
    traffic routing at 10 %."""
    obj = sample(trafficRouting={"weight": 10, "service": "web-ft", "routes": []}, **status)
    obj["spec"]["trafficRouting"] = ROUTING
    return api.parse_spec(obj["spec"]), api.parse_status(obj["status"])


def counts(
    ft: dict[str, float], std: dict[str, float], off: frozenset[str] | None
) -> report.RequestCounts:
    return report.RequestCounts(ft, std, off, source="Prometheus http://prom")


def test_with_routing_the_share_is_of_requests_on_pods_with_the_gil_off() -> None:
    spec, status = routed()
    # 10 % of the requests go free-threaded (5 + 5 req/s of 100); the pod with the GIL on
    # served 5 of them.
    requests = counts(
        {"web-ft-h-1": 5.0, "web-ft-h-2": 5.0},
        {"web-h-1": 45.0, "web-h-2": 45.0},
        frozenset({"web-ft-h-1"}),
    )
    kpi = report.gil_off_share(status, spec, requests)
    assert kpi.value == pytest.approx(5.0)
    assert kpi.text == "5.0 %"
    assert "5 req/s of 100 req/s on free-threaded pods with the GIL off" in kpi.detail
    assert "5 req/s on free-threaded pods with the GIL on or not known" in kpi.detail
    assert "route weight 10%" in kpi.detail
    assert "window (5m by default), readiness-probe requests included" in kpi.detail
    # The replica share would have said 40 % (4 of 10 Ready pods): not what the users get.
    assert report.gil_off_share(status).value == pytest.approx(40.0)


def test_per_pod_gil_unknown_counts_every_pod_when_all_are_off() -> None:
    spec, status = routed(gil={"pods": 2, "disabled": 2, "summary": "off"})
    requests = counts({"web-ft-h-1": 1.0, "web-ft-h-2": 3.0}, {"web-h-1": 96.0}, None)
    kpi = report.gil_off_share(status, spec, requests)
    assert kpi.value == pytest.approx(4.0)


def test_per_pod_gil_unknown_and_not_all_off_falls_back_to_replicas_with_a_note() -> None:
    spec, status = routed()  # 4 off, 1 on: which pod served what is not known
    requests = counts({"web-ft-h-1": 1.0}, {"web-h-1": 99.0}, None)
    kpi = report.gil_off_share(status, spec, requests)
    assert kpi.value == pytest.approx(40.0)
    assert kpi.detail.startswith("replica share, not requests (the GIL state of each")


def test_without_request_counts_the_replica_share_is_shown_saying_why() -> None:
    spec, status = routed()
    kpi = report.gil_off_share(status, spec, None, "no Prometheus: pass --prometheus-url")
    assert kpi.value == pytest.approx(40.0)
    assert kpi.detail.startswith(
        "replica share, not requests (no Prometheus: pass --prometheus-url); 4 of 10 Ready pods"
    )
    zero = counts({"web-ft-h-1": 0.0}, {"web-h-1": 0.0}, frozenset({"web-ft-h-1"}))
    idle = report.gil_off_share(status, spec, zero)
    assert idle.value == pytest.approx(40.0)
    assert "no requests counted" in idle.detail
    # compute() passes the reason on.
    kpis = {k.key: k for k in report.compute(spec, status, None, "no Prometheus: why")}
    assert "replica share, not requests (no Prometheus: why)" in kpis["gil_off_share"].detail


def test_before_any_status_the_kpi_says_so_and_not_replica_share() -> None:
    spec, _ = routed()
    kpi = report.gil_off_share(api.RolloutStatus(), spec, None, "no Prometheus")
    assert kpi.text == "n/a (the operator has not reported status yet)"
    assert kpi.detail == ""


def test_without_routing_request_counts_are_not_used() -> None:
    obj = sample()
    spec, status = api.parse_spec(obj["spec"]), api.parse_status(obj["status"])
    requests = counts({"web-ft-h-1": 1.0}, {"web-h-1": 99.0}, frozenset({"web-ft-h-1"}))
    kpi = report.gil_off_share(status, spec, requests)
    assert kpi.value == pytest.approx(40.0)
    assert "replica share" not in kpi.detail
    assert not report.routing_on(spec, status)
    # Routing removed from the spec while the routes still carry its weights: still on.
    kept = sample(
        trafficRouting={
            "weight": 10,
            "service": "web-ft",
            "routes": [{"name": "web", "rules": [{"rule": "abc", "added": True}]}],
        }
    )
    assert report.routing_on(spec, api.parse_status(kept["status"]))


def by_pod(promql: str, rates: dict[str, float]) -> Answer:
    return vector(*(({"pod": p}, v) for p, v in rates.items() if p in promql))


RATES = {"web-ft-h-1": 4.0, "web-ft-h-2": 6.0, "web-h-1": 30.0, "web-h-2": 30.0, "web-h-3": 30.0}


def test_request_counts_query_each_track_with_its_pods() -> None:
    seen: list[str] = []

    def fake(url: str, q: str) -> Any:
        seen.append(q)
        return [{"metric": {"pod": p}, "value": [0, str(v)]} for p, v in RATES.items() if p in q]

    pods = {"free-threaded": list(FT_PODS), "standard": list(STD_PODS)}
    gil = {"web-ft-h-1": plugin.PodGil(False), "web-ft-h-2": plugin.PodGil(True)}
    got, why = plugin.request_counts(
        "http://prom", "shop", "web", pods, report.REQUESTS_QUERY, gil, query=fake
    )
    assert why == ""
    assert got is not None
    assert dict(got.free_threaded) == {"web-ft-h-1": 4.0, "web-ft-h-2": 6.0}
    assert sum(got.standard.values()) == pytest.approx(90.0)
    assert got.gil_off == frozenset({"web-ft-h-1"})
    assert seen[0] == (
        'sum by (pod) (rate(http_requests_total{namespace="shop", '
        'pod=~"web-ft-h-1|web-ft-h-2"}[5m]))'
    )
    # No probe metrics: the GIL state per pod is not known (None, not "none is off").
    got, _ = plugin.request_counts("u", "shop", "web", pods, report.REQUESTS_QUERY, {}, fake)
    assert got is not None
    assert got.gil_off is None


def test_a_requests_query_without_pods_counts_each_pod_once_in_its_own_track() -> None:
    # An overridden query by namespace only: each track's query returns the pods of both.
    def fake(url: str, q: str) -> Any:
        return [{"metric": {"pod": p}, "value": [0, str(v)]} for p, v in RATES.items()]

    pods = {"free-threaded": list(FT_PODS), "standard": list(STD_PODS)}
    gil = {"web-ft-h-1": plugin.PodGil(False), "web-ft-h-2": plugin.PodGil(False)}
    template = 'sum by (pod) (rate(http_requests_total{namespace="{{namespace}}"}[5m]))'
    got, why = plugin.request_counts("http://prom", "shop", "web", pods, template, gil, fake)
    assert got is not None, why
    assert set(got.free_threaded) == set(FT_PODS)
    assert set(got.standard) == set(STD_PODS)
    spec, status = routed()
    kpi = report.gil_off_share(status, spec, got)
    assert kpi.value == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ([], "no request counts in Prometheus"),
        ([{"metric": {}, "value": [0, "9"]}], "must keep the pod label"),
    ],
)
def test_request_counts_that_cannot_be_attributed_say_why(answer: Any, why: str) -> None:
    pods = {"free-threaded": list(FT_PODS), "standard": list(STD_PODS)}
    got, problem = plugin.request_counts(
        "u", "shop", "web", pods, "q{{pods}}", None, query=lambda url, q: answer
    )
    assert got is None
    assert why in problem


@pytest.fixture
def prom() -> Iterator[PromStub]:
    def answer(promql: str) -> Answer:
        if "python_gil_enabled" in promql:
            return vector(({"pod": "web-ft-h-1"}, 0), ({"pod": "web-ft-h-2"}, 1))
        if promql.startswith("sum by (pod) (rate(http_requests_total"):
            return by_pod(promql, RATES)
        return vector()

    stub = PromStub(answer)
    yield stub
    stub.close()


def running(name: str, owner: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"pod-template-hash": "h"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{owner}-h"}],
        },
        "status": {"phase": "Running"},
    }


def test_report_with_routing_reads_request_counts(
    fake_api: FakeApi,  # noqa: F811
    prom: PromStub,
    capsys: Any,
) -> None:
    obj = sample(trafficRouting={"weight": 10, "service": "web-ft", "routes": []})
    obj["spec"]["trafficRouting"] = ROUTING
    fake_api.rollouts[("shop", "web")] = obj
    fake_api.pods = [running(p, "web-ft") for p in FT_PODS] + [running(p, "web") for p in STD_PODS]
    code, out, err = run(capsys, "report", "web", "-o", "json", "--prometheus-url", prom.url)
    assert code == 0, err
    data = {k["key"]: k for k in json.loads(out)}
    # 4 of 100 req/s on the free-threaded pod with the GIL off.
    assert data["gil_off_share"]["value"] == pytest.approx(4.0)
    assert "4 req/s of 100 req/s" in data["gil_off_share"]["detail"]

    custom = 'sum by (pod) (rate(my_requests{pod=~"{{pods}}"}[1m]))'
    code, out, err = run(
        capsys, "report", "web", "-o", "json", "--prometheus-url", prom.url,
        "--query", f"requests={custom}",
    )  # fmt: skip
    assert code == 0, err
    assert 'sum by (pod) (rate(my_requests{pod=~"web-h-1|web-h-2|web-h-3"}[1m]))' in prom.queries
    data = {k["key"]: k for k in json.loads(out)}
    # The stub knows no such metric: the replica share, with the reason.
    assert data["gil_off_share"]["value"] == pytest.approx(40.0)
    assert "replica share, not requests (no request counts" in data["gil_off_share"]["detail"]
