"""The demo's Gateway API scenario, its pure parts: the route as printed, the share of requests
a Gateway would send free-threaded, and the simulator playing that split."""

from __future__ import annotations

from typing import Any

import pytest

from ftrollout_dev import demo
from ftrollout_dev.simulator import REQUESTS_PER_TICK, Simulator


def ref(name: str, weight: int = 1) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 80, "weight": weight}


ROOT = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
CATALOG = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/catalog"}, "method": "GET"}],
}


def test_rules_are_printed_with_their_weights() -> None:
    assert demo.describe_rule({**ROOT, "backendRefs": [ref("checkout")]}) == "/ → checkout"
    split = {**CATALOG, "backendRefs": [ref("checkout", 95), ref("checkout-ft", 5)]}
    assert demo.describe_rule(split) == "GET /catalog → checkout 95 · checkout-ft 5"


def test_share_of_requests_a_gateway_would_send_free_threaded() -> None:
    user = [{**ROOT, "backendRefs": [ref("checkout")]}]
    assert demo.free_threaded_share(user) == 0.0
    at_25 = [{**CATALOG, "backendRefs": [ref("checkout", 75), ref("checkout-ft", 25)]}, *user]
    assert demo.free_threaded_share(at_25) == pytest.approx(demo.CATALOG_SHARE * 0.25)
    promoted = [
        {**CATALOG, "backendRefs": [ref("checkout", 0), ref("checkout-ft", 100)]},
        {**ROOT, "backendRefs": [ref("checkout", 0), ref("checkout-ft", 100)]},
    ]
    assert demo.free_threaded_share(promoted) == pytest.approx(1.0)


class Sink:
    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def set(self, name: str, value: float, **labels: str) -> None:
        self.values[name, tuple(sorted(labels.items()))] = value

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.values[key] = self.values.get(key, 0.0) + amount

    def remove(self, name: str, **labels: str) -> None:
        self.values.pop((name, tuple(sorted(labels.items()))), None)

    def requests(self, pod: str) -> float:
        return self.values["http_requests_total", (("namespace", "ns"), ("pod", pod))]


PODS = [
    ("std-1", "standard"),
    ("std-2", "standard"),
    ("std-3", "standard"),
    ("ft-1", "free-threaded"),
]


def test_the_simulator_splits_requests_by_track_when_told() -> None:
    sink = Sink()
    sim = Simulator(None, "ns", "app=x", sink)
    sim.apply(PODS)  # no split: every pod serves the same
    assert {sink.requests(p) for p, _ in PODS} == {REQUESTS_PER_TICK}
    sim.knobs.free_threaded_request_share = 0.1
    sim.apply(PODS)
    total = REQUESTS_PER_TICK * len(PODS)
    assert sink.requests("ft-1") == pytest.approx(REQUESTS_PER_TICK + total * 0.1)
    assert sink.requests("std-1") == pytest.approx(REQUESTS_PER_TICK + total * 0.9 / 3)
