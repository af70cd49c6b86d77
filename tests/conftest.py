"""Root conftest: registers the fixtures shared by tests/e2e and tests/reliability.

`pytest_plugins` is only allowed here (in the root conftest), and fixtures of tests/e2e/conftest.py
would not be visible to tests/reliability: the shared ones (the session's single local cluster,
`namespace`, the exporter and Prometheus, FTR_SKIP_E2E) live in tests/cluster_fixtures.py, so
`pytest tests/e2e tests/reliability` starts one control plane, not two.
"""

pytest_plugins = ["cluster_fixtures"]
