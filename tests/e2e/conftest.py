"""Fixtures of the end-to-end tests against a real local control plane and a real Prometheus.

The cluster, `namespace`, exporter and Prometheus fixtures are shared with tests/reliability and
come from tests/cluster_fixtures.py (registered by the root tests/conftest.py): both suites run
against the same session cluster.

Here: the operator under test (`operator`, cluster-wide, one per module so it is stopped before the
next module; tests/e2e/test_helm.py and tests/reliability run their own operators and two
operators must never handle the same rollouts) and the installed CRD (`crd`, module scope).
"""

from e2e_operator import crd, operator  # noqa: F401
