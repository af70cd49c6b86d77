"""Fixtures of the end-to-end tests against a real local control plane and a real Prometheus.

The cluster, `namespace`, exporter and Prometheus fixtures are shared with tests/reliability and
come from tests/cluster_fixtures.py (registered by the root tests/conftest.py): both suites run
against the same session cluster.

Here: the operator under test (`operator`, cluster-wide, one per module so it is stopped before the
next module; tests/e2e/test_helm.py and tests/reliability run their own operators and two
operators must never handle the same rollouts) and the installed CRD (`crd`, module scope).
"""

from collections.abc import Generator
from typing import Any

import pytest
from e2e_operator import OperatorProcess, crd, operator  # noqa: F401


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    """A failed test shows what the operator under test logged (CI keeps no other trace)."""
    report = yield
    op = getattr(item, "funcargs", {}).get("operator")
    if report.when == "call" and report.failed and isinstance(op, OperatorProcess):
        report.sections.append(("operator log (last 80 lines)", op.log_tail(80)))
    return report
