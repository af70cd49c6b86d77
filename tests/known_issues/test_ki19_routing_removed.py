"""Removing `trafficRouting` mid-rollout returns to the replica split, which assumes a Service
that selects both tracks; the stable Service routing required selects the standard pods only."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_handlers_kmock import DEPLOYMENTS, FTR, NS
from test_routing_kmock import MAIN, STATIC, RouteEmulator, act, at_first_step, routed, rules

pytestmark = [pytest.mark.timeout(30), pytest.mark.kmock(cls=RouteEmulator)]


async def test_removing_routing_keeps_the_standard_track_while_it_serves_everything(
    kmock: Any,
) -> None:
    """At 50 % with routing the standard track is at N. Routing removed from the spec: the route
    is restored (all requests to the stable Service, which selects standard pods only), then the
    replica split lowers the standard track to N - 5: five pods serve what ten did, and the five
    free-threaded pods get nothing."""
    shell = routed(kmock)
    await at_first_step(shell)
    act(kmock, "promote")
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    for _ in range(2):
        await shell.reconcile()
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 10
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    del obj["spec"]["trafficRouting"]
    obj["metadata"]["generation"] = 2
    kmock.objects[FTR, NS, "web"] = obj
    for _ in range(4):
        await shell.reconcile()
    assert rules(kmock) == [MAIN, STATIC]
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 10
