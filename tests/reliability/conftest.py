"""Fixtures for the reliability suite: a real control plane, operators the tests kill and restart.

The cluster and Prometheus fixtures mirror tests/e2e/conftest.py (fixtures of a non-root conftest
cannot be shared, and `pytest_plugins` is only allowed in the root one); the operator process and
the helpers come from tests/e2e/e2e_operator.py, put on sys.path here.

Every test starts its own operators (`operators`), restricted to its own namespaces with `-n`, so
a killed or restarted operator never sees another test's rollouts, and the API write counter of
each process belongs to that test alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes
import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from e2e_operator import CRD, CRD_NAME, OperatorProcess, wait_for  # noqa: E402
from rel_support import RESULTS, OperatorFactory  # noqa: E402

from ftrollout.localcluster import (  # noqa: E402
    Binaries,
    LocalCluster,
    PodMetricsExporter,
    PrometheusHandle,
    find_prometheus,
    start_prometheus,
)

SKIP_E2E = os.environ.get("FTR_SKIP_E2E") == "1"
BUILD_HINT = "run `make tools` (or `.venv/bin/ftrollout cluster build`), or set FTR_SKIP_E2E=1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not SKIP_E2E:
        return
    skip = pytest.mark.skip(reason="FTR_SKIP_E2E=1")
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("reliability measurements")
    for row in RESULTS:
        terminalreporter.write_line(json.dumps(row))


# ------------------------------------------------------------------------------ cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    missing = Binaries.locate().missing_for_cluster()
    if missing:
        pytest.fail(
            f"reliability: control-plane binaries not built ({', '.join(missing)}): {BUILD_HINT}"
        )
    c = LocalCluster(tmp_path_factory.mktemp("rel-cluster"), nodes=3, die_with_parent=True)
    try:
        c.up()
    except Exception as exc:
        pytest.fail(f"reliability: local cluster did not start: {exc}")
    try:
        yield c
    finally:
        c.down()


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> LocalCluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    wait_for(
        lambda: cluster.kubectl("get", "ftr", "-A", check=False).returncode == 0,
        60,
        "discovery of ftr",
    )
    return cluster


def new_namespace(cluster: LocalCluster, base: str) -> str:
    name = f"{base[:40].strip('-')}-{int(time.monotonic() * 1000) % 100000}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    return name


@pytest.fixture
def namespace(crd: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    ns = new_namespace(crd, request.node.name.lower().replace("_", "-"))
    yield ns
    crd.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def api(cluster: LocalCluster) -> kubernetes.client.ApiClient:
    """An in-process client: cheap enough to sample the cluster every 50 ms."""
    return kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def operators(crd: LocalCluster, tmp_path: Path) -> Iterator[OperatorFactory]:
    """start(*namespaces, extra flags...) -> a running `ftrollout run -n ns...` (stopped at the end)."""
    started: list[OperatorProcess] = []

    def start(*args: str, log_name: str | None = None) -> OperatorProcess:
        flags = [a if a.startswith("-") else f"--namespace={a}" for a in args]
        op = OperatorProcess(crd, tmp_path / (log_name or f"operator-{len(started)}.log"), *flags)
        op.start()
        started.append(op)
        return op

    try:
        yield start
    finally:
        for op in started:
            op.stop()
        if os.environ.get("FTR_E2E_SHOW_LOGS"):
            for op in started:
                print(op.log_path, op.log_tail(120), sep="\n")


# --------------------------------------------------------------------------- prometheus


@pytest.fixture
def exporter() -> Iterator[PodMetricsExporter]:
    e = PodMetricsExporter()
    try:
        yield e
    finally:
        e.close()


PrometheusFactory = Callable[..., PrometheusHandle]


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    if find_prometheus() is None:
        pytest.fail(f"reliability: prometheus is not installed: {BUILD_HINT}")
    handles: list[PrometheusHandle] = []

    def start(targets: Sequence[str], **kw: Any) -> PrometheusHandle:
        h = start_prometheus(list(targets), tmp_path / f"prometheus-{len(handles)}", **kw)
        handles.append(h)
        return h

    try:
        yield start
    finally:
        for h in handles:
            h.stop()
