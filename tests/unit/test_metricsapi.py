"""The dev external metrics API (ftrollout_dev.metricsapi) answers as the HPA controller expects.

The e2e test tests/e2e/test_autoscale.py drives the real HPA controller through it; here its
answers are checked directly over TLS, without a cluster.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ftrollout_dev.localcluster import generate_pki
from ftrollout_dev.metricsapi import NAMESPACE, SERVICE, ExternalMetricsServer


class FakeCluster:
    def __init__(self, pki: Path) -> None:
        self.pki = pki


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExternalMetricsServer]:
    generate_pki(tmp_path)
    srv = ExternalMetricsServer(FakeCluster(tmp_path))  # type: ignore[arg-type]
    srv.serve()
    try:
        yield srv
    finally:
        srv.shutdown()


def get(server: ExternalMetricsServer, path: str) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(server.cluster.pki / "ca.crt"))
    try:
        with urllib.request.urlopen(
            f"https://localhost:{server.port}{path}", context=ctx, timeout=5
        ) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


BASE = "/apis/external.metrics.k8s.io/v1beta1"


def test_a_set_metric_is_served_as_a_quantity_for_its_namespace(
    server: ExternalMetricsServer,
) -> None:
    server.set("shop", "queue_depth", 2.5)
    code, body = get(server, f"{BASE}/namespaces/shop/queue_depth?labelSelector=a%3Db")
    assert code == 200
    assert body["kind"] == "ExternalMetricValueList"
    assert [(i["metricName"], i["value"]) for i in body["items"]] == [("queue_depth", "2500m")]
    server.set("shop", "queue_depth", 10)
    assert get(server, f"{BASE}/namespaces/shop/queue_depth")[1]["items"][0]["value"] == "10"
    assert server.served("shop", "queue_depth") == 2


def test_unknown_metrics_and_paths_answer_404_and_discovery_lists_a_get_only_resource(
    server: ExternalMetricsServer,
) -> None:
    server.set("shop", "queue_depth", 1)
    assert get(server, f"{BASE}/namespaces/other/queue_depth")[0] == 404
    assert get(server, "/apis")[0] == 404  # the aggregator then falls back to legacy discovery
    code, body = get(server, BASE)
    assert code == 200
    assert body["kind"] == "APIResourceList"
    assert [r["verbs"] for r in body["resources"]] == [["get"]]


def test_the_apiservice_trusts_the_cluster_ca_and_points_at_the_port(
    server: ExternalMetricsServer,
) -> None:
    svc, api = server.manifests()
    assert svc["spec"] == {"type": "ExternalName", "externalName": "localhost"}
    assert api["spec"]["service"]["port"] == server.port
    assert api["spec"]["caBundle"]


def test_the_certificate_names_the_service_the_aggregator_verifies(
    server: ExternalMetricsServer,
) -> None:
    # The aggregator dials localhost but verifies the Service's DNS name (a certificate for
    # localhost only left the APIService FailedDiscoveryCheck).
    ctx = ssl.create_default_context(cafile=str(server.cluster.pki / "ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=f"{SERVICE}.{NAMESPACE}.svc") as tls,
    ):
        assert tls.version()
