"""The guardrail round against a real Prometheus (issue 22): one query per round that answers
only what is not healthy, and the same readings as asking for every pod's series.

A unit stub cannot tell whether the PromQL filters (`!= 0` keeping NaN, `label_replace` tags
kept apart by `or`, `count(group by ...)`) do what the round relies on; Prometheus can.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from cluster_fixtures import PrometheusFactory
from ftrollout.shell.scheduler import Prometheus, Scheduler
from ftrollout.shell.state import GilReading, State
from ftrollout_dev.localcluster import PodMetricsExporter

pytestmark = [pytest.mark.timeout(60)]

NS = "shop"
ON, OFF, ODD, NOT_FT, MODULE, INCIDENTS, SILENT = (
    f"web-ft-5d9f7-{s}" for s in ("on111", "off11", "nan11", "nft11", "mod11", "inc11", "sil11")
)
STANDARD = "web-7c4b2-std11"  # exports the probe too (a standard build with GIL on): not a twin


def pod(name: str) -> dict[str, Any]:
    rs = name.rsplit("-", 1)[0]
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"pod-template-hash": rs.rsplit("-", 1)[1]},
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs}],
        },
        "status": {},
    }


def wait_for(url: str, promql: str, value: float) -> None:
    """Until Prometheus has scraped what the test just set."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as r:
            result = json.load(r)["data"]["result"]
        if result and float(result[0]["value"][1]) == value:
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus never showed {promql} = {value}")


def healthy(e: PodMetricsExporter, name: str) -> None:
    e.set("python_gil_enabled", 0, namespace=NS, pod=name)
    e.set("python_freethreading_build", 1, namespace=NS, pod=name)
    e.set("python_freethreading_incidents_total", 0, namespace=NS, pod=name)


async def test_one_query_per_round_reads_what_every_series_would(
    exporter: PodMetricsExporter, prometheus_factory: PrometheusFactory
) -> None:
    for name in (ON, OFF, ODD, NOT_FT, MODULE, INCIDENTS):
        healthy(exporter, name)
    exporter.set("python_gil_enabled", 1, namespace=NS, pod=ON)
    exporter.set("python_gil_enabled", float("nan"), namespace=NS, pod=ODD)
    exporter.set("python_freethreading_build", 0, namespace=NS, pod=NOT_FT)
    exporter.set("python_gil_enabled", 1, namespace=NS, pod=MODULE)
    exporter.set("python_gil_fallback_total", 1, namespace=NS, pod=MODULE, module="numpy")
    exporter.set("python_freethreading_incidents_total", 3, namespace=NS, pod=INCIDENTS)
    exporter.set("python_gil_enabled", 1, namespace=NS, pod=STANDARD)
    prom = prometheus_factory([exporter.target])
    wait_for(prom.url, 'count(python_gil_enabled{pod=~".+-ft-.+"})', 6)
    wait_for(prom.url, "sum(python_gil_fallback_total)", 1)

    state = State()
    for name in (ON, OFF, ODD, NOT_FT, MODULE, INCIDENTS, SILENT, STANDARD):
        state.cache.put_pod(pod(name))
    client = Prometheus(workers=2)
    sched = Scheduler(state, prom=client, default_url=prom.url)
    await sched.guard_round()
    assert state.gil == {
        (NS, ON): GilReading(enabled=True),
        (NS, OFF): GilReading(enabled=False),
        (NS, ODD): GilReading(enabled=None),  # NaN: not known, as before
        (NS, NOT_FT): GilReading(enabled=False, build=False),
        (NS, MODULE): GilReading(enabled=True, modules=("numpy",)),
        (NS, INCIDENTS): GilReading(enabled=False),
    }  # SILENT reports nothing; STANDARD is not a twin pod
    assert state.probe_counts == {(NS, INCIDENTS): 3.0}
    assert client.queries == 2  # the round's query and the first listing of reporting pods

    # Nothing changed: one query, whose answer is the few pods that are not healthy.
    await sched.guard_round()
    assert client.queries == 3

    # A pod falls back to the GIL and another counts an incident: seen in the next round,
    # still one query (the number of reporting pods did not change).
    exporter.set("python_gil_enabled", 1, namespace=NS, pod=OFF)
    exporter.inc("python_freethreading_incidents_total", 2, namespace=NS, pod=INCIDENTS)
    wait_for(prom.url, f'python_gil_enabled{{pod="{OFF}"}}', 1)
    wait_for(prom.url, f'python_freethreading_incidents_total{{pod="{INCIDENTS}"}}', 5)
    await sched.guard_round()
    assert state.gil[(NS, OFF)] == GilReading(enabled=True)
    assert state.probe_counts[(NS, INCIDENTS)] == 5.0
    assert client.queries == 4

    # A pod starts reporting (GIL off): the count changed, the listing is asked again.
    healthy(exporter, SILENT)
    wait_for(prom.url, 'count(python_gil_enabled{pod=~".+-ft-.+"})', 7)
    await sched.guard_round()
    assert state.gil[(NS, SILENT)] == GilReading(enabled=False)
    assert client.queries == 6
