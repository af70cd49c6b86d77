"""Flagger in benchmarks/peers (controllers/flagger.py, report.py): the gate that holds the
canaries, the MetricTemplate's pod pattern, and Flagger's columns in results.md."""

from __future__ import annotations

import importlib
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> SimpleNamespace:
    """The parts of the peers benchmark (benchmarks/peers, imported as `peers` with benchmarks/
    on sys.path, as bench_peers.py imports it) these tests read."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        flagger = importlib.import_module("peers.controllers.flagger")
        report = importlib.import_module("peers.report")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return SimpleNamespace(
        PromotionGate=flagger.PromotionGate,
        flagger_canary=flagger.flagger_canary,
        FLAGGER_ERROR_RATIO=flagger.FLAGGER_ERROR_RATIO,
        report=report.report,
    )


def test_gate_never_opens_and_counts_calls(bench: SimpleNamespace) -> None:
    gate = bench.PromotionGate()
    try:
        for _ in range(2):
            req = urllib.request.Request(gate.url, data=b'{"name": "r0000"}', method="POST")
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 403
        assert gate.count() == 2
    finally:
        gate.close()


def test_error_ratio_selects_the_canary_pods_only(bench: SimpleNamespace) -> None:
    canary = bench.flagger_canary("r0001", "http://127.0.0.1:1/gate/halt", analysing=True)
    analysis = canary["spec"]["analysis"]
    assert canary["spec"]["provider"] == "kubernetes"
    assert analysis["metrics"][0]["templateRef"] == {"name": "error-ratio"}
    assert analysis["webhooks"][0]["type"] == "confirm-promotion"
    assert (
        "metrics"
        not in bench.flagger_canary("r0001", "http://x/", analysing=False)["spec"]["analysis"]
    )
    # Flagger renders {{ target }}; Prometheus anchors the regex at both ends (fullmatch).
    query = bench.FLAGGER_ERROR_RATIO.replace("{{ target }}", "r0001")
    pattern = re.search(r'pod=~"([^"]+)"', query)
    assert pattern is not None
    rx = re.compile(pattern.group(1))
    assert rx.fullmatch("r0001-68f9cdf876-x7k2p")
    assert not rx.fullmatch("r0001-primary-5d9c7b8f4-abcde")
    assert not rx.fullmatch("r00012-68f9cdf876-x7k2p")


def _run(controller: str, rss: float) -> dict[str, Any]:
    return {
        "controller": controller,
        "rollouts": 20,
        "mode": "idle",
        "to_first_step_s": 1.0,
        "steady": {"rss_mib_mean": rss, "cpu_cores": 0.01, "api_writes_per_min": 0.0},
    }


def test_flagger_columns_only_once_flagger_ran(bench: SimpleNamespace) -> None:
    without = bench.report([_run("argo-rollouts", 90.0), _run("ftrollout", 120.0)])
    assert "Flagger" not in without
    table = bench.report(
        [_run("argo-rollouts", 90.0), _run("ftrollout", 120.0), _run("flagger", 57.0)]
    )
    header, rule, row = table.splitlines()[:3]
    assert "Flagger RSS MiB" in header
    assert header.count("|") == rule.count("|") == row.count("|")
    assert "| 57.0 |" in row
