"""Unit tests of the local-cluster tooling that need no binaries."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from ftrollout_dev.localcluster import (
    KUBERNETES_VERSION,
    LocalCluster,
    PodMetricsExporter,
    go_components,
    node_manifest,
    parse_local_replaces,
)
from ftrollout_dev.main import main

K8S_GOMOD = """\
module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tk8s.io/utils v0.0.0-20260626114624-be93311217bd
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // a comment
\tgithub.com/example/fork => github.com/example/fork v1.2.3
)

replace k8s.io/kms => ./staging/src/k8s.io/kms
replace go.etcd.io/tests/v3 => ./FORBIDDEN_DEPENDENCY
"""


def test_local_replaces_are_parsed_from_block_and_single_lines() -> None:
    assert parse_local_replaces(K8S_GOMOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kms"]


def test_kubernetes_component_builds_three_binaries_with_version_ldflags() -> None:
    kube = next(c for c in go_components() if c.name == "kubernetes")
    assert [b for _, b in kube.packages] == [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    assert kube.staging_replaces
    assert f"-X k8s.io/component-base/version.gitVersion=v{KUBERNETES_VERSION}" in kube.ldflags
    assert kube.bin_dir().name == f"kubernetes-v{KUBERNETES_VERSION}"


def test_components_are_cached_outside_the_repository(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FTR_CACHE_DIR", str(tmp_path))
    for comp in go_components():
        assert comp.bin_dir().parent == tmp_path / "bin"
        assert not comp.is_built()


def test_kwok_nodes_carry_the_managed_annotation_and_no_taint() -> None:
    node = node_manifest("kwok-node-0")
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert "taints" not in node["spec"]


def test_down_and_status_without_a_cluster_are_one_line_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "down", "--dir", str(tmp_path)]) == 0
    assert "no cluster running" in capsys.readouterr().out
    assert main(["cluster", "status", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == f"no cluster running in {tmp_path}"


def test_up_without_binaries_says_how_to_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FTR_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["cluster", "up", "--dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "not built" in err
    assert "ftrollout-dev cluster build" in err
    assert not LocalCluster(tmp_path / "c").is_running()


def test_exporter_serves_prometheus_text() -> None:
    e = PodMetricsExporter()
    try:
        e.set("http_requests_total", 3, namespace="shop", pod='we"ird')
        e.inc("http_requests_total", 2, namespace="shop", pod='we"ird')
        e.set("up_value", 1)
        with urllib.request.urlopen(f"http://{e.target}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        e.close()
    assert 'http_requests_total{namespace="shop",pod="we\\"ird"} 5.0' in body
    assert "up_value 1.0" in body
