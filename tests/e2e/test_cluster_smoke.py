"""Smoke tests of the local control plane and the Prometheus fixture (real binaries, no mocks)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from ftrollout_dev.localcluster import AlreadyRunningError, LocalCluster, PrometheusWithExporter

pytestmark = pytest.mark.e2e


def deployment(name: str, replicas: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              containers:
                - {{name: app, image: registry.example/{name}:1.0}}
        """
    )


def test_apiserver_is_the_version_we_built(cluster: LocalCluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert out["serverVersion"]["gitVersion"] != "v0.0.0-master+$Format:%H$"


def test_kwok_nodes_are_ready(cluster: LocalCluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == cluster.nodes
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]


def test_deployment_of_four_replicas_gets_four_ready_pods(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("web", 4))
    cluster.kubectl(
        "rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s", timeout=100
    )
    pods: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout
    )["items"]
    assert len(pods) == 4
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions.get("Ready") == "True", pod["metadata"]["name"]
        assert pod["spec"]["nodeName"].startswith("kwok-node-")
        assert pod["status"]["phase"] == "Running"
        assert pod["status"].get("podIP")
    # Garbage collection works: deleting the Deployment removes its ReplicaSet and pods.
    cluster.kubectl("delete", "deployment/web", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.kubectl(
        "wait", "--for=delete", "pod", "-l", "app=web", "-n", namespace, "--timeout=60s"
    )


def test_rbac_is_enforced(cluster: LocalCluster) -> None:
    sa = "system:serviceaccount:default:default"
    denied = cluster.kubectl("auth", "can-i", f"--as={sa}", "list", "pods", check=False)
    assert denied.stdout.strip() == "no"
    assert denied.returncode != 0
    allowed = cluster.kubectl("auth", "can-i", "list", "pods", check=False)
    assert allowed.stdout.strip() == "yes"


def test_service_account_token_is_denied_without_bindings(cluster: LocalCluster) -> None:
    """A real token (TokenRequest) of the default ServiceAccount authenticates but is forbidden."""
    token = cluster.kubectl("create", "token", "default", "-n", "default").stdout.strip()
    proc = subprocess.run(
        [
            str(cluster.binaries.kubectl),
            f"--server={cluster.server}",
            f"--certificate-authority={cluster.pki / 'ca.crt'}",
            f"--token={token}",
            "--kubeconfig=/dev/null",
            "get",
            "pods",
            "-n",
            "default",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower(), proc.stderr
    assert "system:serviceaccount:default:default" in proc.stderr


def test_starting_a_running_cluster_twice_is_a_clear_error(cluster: LocalCluster) -> None:
    with pytest.raises(AlreadyRunningError, match="already running"):
        LocalCluster(cluster.dir).up()


def test_cluster_status_cli_reports_healthy(cluster: LocalCluster) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftrollout_dev.main",
            "cluster",
            "status",
            "--dir",
            str(cluster.dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "healthy" in proc.stdout
    assert f"{cluster.nodes}/{cluster.nodes} Ready" in proc.stdout


def test_prometheus_scrapes_the_test_exporter(
    prometheus_with_exporter: PrometheusWithExporter,
) -> None:
    p = prometheus_with_exporter
    p.exporter.set("ftr_smoke_value", 42, namespace="shop", pod="checkout-std-1")
    p.exporter.set("ftr_smoke_value", 7.5, namespace="shop", pod="checkout-ft-1")
    result = p.wait_for('ftr_smoke_value{namespace="shop"}', lambda r: len(r) == 2)
    values = {r["metric"]["pod"]: float(r["value"][1]) for r in result}
    assert values == {"checkout-std-1": 42.0, "checkout-ft-1": 7.5}
    # Values follow the test: change one and Prometheus sees the new value.
    p.exporter.set("ftr_smoke_value", 99, namespace="shop", pod="checkout-ft-1")
    p.wait_for(
        'ftr_smoke_value{pod="checkout-ft-1"}',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == 99.0,
    )
