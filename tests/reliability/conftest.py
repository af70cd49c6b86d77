"""Fixtures for the reliability suite: operators the tests kill and restart.

The cluster, `namespace` and Prometheus fixtures are shared with tests/e2e and come from
tests/cluster_fixtures.py (registered by the root tests/conftest.py): one cluster per session. The
operator process, the `crd` fixture and the helpers come from tests/e2e/e2e_operator.py, put on
sys.path here. The e2e suite's cluster-wide `operator` is not visible here (and is module scoped,
so it is stopped before these tests run).

Every test starts its own operators (`operators`), restricted to its own namespaces with `-n`, so
a killed or restarted operator never sees another test's rollouts, and the API write counter of
each process belongs to that test alone.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

import e2e_operator  # noqa: E402
from e2e_operator import OperatorProcess  # noqa: E402
from rel_support import RESULTS, OperatorFactory  # noqa: E402

# new_namespace: test_rel_prometheus.py imports it from here (`from conftest import ...`).
from cluster_fixtures import STARTED_OPERATORS, new_namespace  # noqa: E402, F401
from ftrollout_dev.localcluster import LocalCluster  # noqa: E402

crd = e2e_operator.crd  # the installed CRD (module scope), the same fixture as in tests/e2e


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("reliability measurements")
    for row in RESULTS:
        terminalreporter.write_line(json.dumps(row))


@pytest.fixture
def api(cluster: LocalCluster) -> kubernetes.client.ApiClient:
    """An in-process client: cheap enough to sample the cluster every 50 ms."""
    return kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def operators(
    crd: LocalCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorFactory]:
    """start(*namespaces, extra flags...) -> a running `ftrollout run -n ns...` (stopped at the end)."""
    started: list[OperatorProcess] = []
    request.node.stash[STARTED_OPERATORS] = started  # a failed test's report shows their logs

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
