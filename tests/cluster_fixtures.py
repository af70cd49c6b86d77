"""Fixtures shared by tests/e2e and tests/reliability: ONE local control plane per session.

Registered by the root tests/conftest.py (`pytest_plugins`: fixtures of a non-root conftest are
not visible to a sibling directory). A uniquely named module, so helpers such as
:func:`new_namespace` can be imported (`conftest` is ambiguous with several conftest.py files).

* ``cluster`` (session): etcd + kube-apiserver (TLS, RBAC) + controller-manager + scheduler + kwok
  fake nodes, started in a temporary directory and stopped at the end of the session. It is a
  :class:`ftrollout_dev.localcluster.LocalCluster`: ``.kubeconfig``, ``.env()``, ``.kubectl(*args)``.
* ``namespace``: a fresh namespace per test, deleted afterwards (without waiting).
* ``exporter``: a tiny HTTP server in a thread serving Prometheus text whose series (any metric
  name, labels such as ``namespace`` and ``pod``) the test sets.
* ``prometheus_factory``: start real Prometheus servers on given targets (``start_prometheus``
  keywords such as ``port=`` are passed on).
* ``prometheus_with_exporter``: a real Prometheus (1 s scrape interval) scraping that exporter,
  with a ``query`` helper (prometheus-api-client) and ``wait_for_value``.

A failed test's report shows the tail of the log of every operator it ran (the e2e suite's
module ``operator`` and the reliability suite's ``operators``): CI keeps no other trace.

The operators are not here: the e2e suite has a cluster-wide one per module
(tests/e2e/e2e_operator.py), the reliability suite starts its own per test, restricted to its
namespaces (tests/reliability/conftest.py).

The binaries come from ``ftrollout-dev cluster build`` (``make tools``). When they are missing the
tests using them FAIL with that instruction, unless ``FTR_SKIP_E2E=1`` is set, which skips every
test marked ``e2e``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from ftrollout_dev.localcluster import (
    Binaries,
    LocalCluster,
    PodMetricsExporter,
    PrometheusHandle,
    PrometheusWithExporter,
    find_prometheus,
    start_prometheus,
)

SKIP_E2E = os.environ.get("FTR_SKIP_E2E") == "1"


class HasLog(Protocol):
    log_path: Path

    def log_tail(self, lines: int = 60) -> str: ...


# Operators a test started itself (tests/reliability's `operators` fixture puts them here).
STARTED_OPERATORS = pytest.StashKey[Sequence[HasLog]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    report = yield
    if report.when == "call" and report.failed:
        ops: list[HasLog] = list(item.stash.get(STARTED_OPERATORS, []))
        module_op = getattr(item, "funcargs", {}).get("operator")
        if hasattr(module_op, "log_tail"):
            ops.insert(0, module_op)
        for op in ops:
            report.sections.append(
                (f"operator log {op.log_path.name} (last 80 lines)", op.log_tail(80))
            )
    return report


BUILD_HINT = "run `make tools` (or `.venv/bin/ftrollout cluster build`), or set FTR_SKIP_E2E=1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not SKIP_E2E:
        return
    skip = pytest.mark.skip(reason="FTR_SKIP_E2E=1")
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


def _require_cluster_binaries() -> None:
    missing = Binaries.locate().missing_for_cluster()
    if missing:
        pytest.fail(f"e2e: control-plane binaries not built ({', '.join(missing)}): {BUILD_HINT}")


def _require_prometheus() -> None:
    if find_prometheus() is None:
        pytest.fail(f"e2e: prometheus is not installed: {BUILD_HINT}")


# ------------------------------------------------------------------------------------------
# The cluster
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    _require_cluster_binaries()
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), nodes=3, die_with_parent=True)
    try:
        c.up()
    except Exception as exc:
        pytest.fail(f"e2e: local cluster did not start: {exc}")
    try:
        yield c
    finally:
        c.down()


def new_namespace(cluster: LocalCluster, base: str) -> str:
    """Create a namespace named after `base` (made unique) and wait for its default account."""
    name = f"{base[:40].strip('-')}-{int(time.monotonic() * 1000) % 100000}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    return name


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = new_namespace(cluster, request.node.name.lower().replace("_", "-"))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# ------------------------------------------------------------------------------------------
# A test-controlled exporter
# ------------------------------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[PodMetricsExporter]:
    e = PodMetricsExporter()
    try:
        yield e
    finally:
        e.close()


# ------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------


PrometheusFactory = Callable[..., PrometheusHandle]


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Start real Prometheus servers scraping the given host:port targets (stopped afterwards)."""
    _require_prometheus()
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


@pytest.fixture
def prometheus_with_exporter(
    exporter: PodMetricsExporter, prometheus_factory: PrometheusFactory
) -> PrometheusWithExporter:
    return PrometheusWithExporter(prometheus_factory([exporter.target]), exporter)
