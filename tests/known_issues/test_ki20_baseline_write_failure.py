"""A failed create of the baseline (quota on count/deployments.apps, an admission policy, RBAC)
raises out of reconcile before _register_analysis / state.active / run_preflight: the analysis
of the step is never registered, so the rollout is stuck at step 1 with no rounds, although
README says "a failed write of it never holds the tracks back"."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from test_handlers_kmock import DEPLOYMENTS, FTR, NS, Shell, rollout_body, target_deployment

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.kmock(cls=__import__("test_handlers_kmock").Emulator),
]


async def test_a_failed_baseline_create_does_not_stop_analysis_registration(kmock: Any) -> None:
    from ftrollout.shell.scheduler import Scheduler

    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        analysis={
            "baseline": {},
            "metrics": [{"name": "errors", "query": "up", "threshold": {"max": 1}}],
        }
    )
    shell = Shell(kmock)
    shell.state.default_prometheus = "http://prometheus.monitoring:9090"
    shell.state.scheduler = Scheduler(shell.state)
    real = shell.state.kube.create_deployment

    async def create(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["metadata"]["name"] == "web-baseline":
            raise ApiException(
                status=403, reason="Forbidden: exceeded quota count/deployments.apps"
            )
        return await real(manifest)

    shell.state.kube.create_deployment = create
    for _ in range(3):
        with contextlib.suppress(ApiException):
            await shell.reconcile()
    assert shell.body()["status"]["phase"] in ("Progressing", "Paused")
    # The step's analysis must run whatever happened to the (extra-capacity) baseline.
    assert ("ns" if False else NS, "web") in shell.state.scheduler.targets
    assert (NS, "web") in shell.state.active
