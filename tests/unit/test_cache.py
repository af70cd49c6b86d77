"""The watch cache against the operator's own writes: a write's response that comes back after
the watch already brought a newer version must not hide it (a twin stuck 'not Ready' until the
next event, seen in CI), and the operator's own scale is read until the watch shows it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ftrollout.plan import FIELD_MANAGER
from ftrollout.plan.observe import summarize_deployment
from ftrollout.shell.cache import Cache

NS = "shop"


def deployment(rv: int | None, replicas: int, ready: int, uid: str = "u1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-ft", "namespace": NS, "uid": uid}
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    return {
        "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"readyReplicas": ready},
    }


def test_a_create_response_after_the_watch_showed_the_twin_ready_keeps_it_ready() -> None:
    cache = Cache()
    cache.put_deployment(deployment(7, 1, 1))  # watch: created (rv 5) then Ready (rv 7)
    cache.wrote_deployment(summarize_deployment(deployment(5, 1, 0)))  # create's response
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert (d.replicas, d.ready) == (1, 1)


def test_without_resource_versions_readiness_still_comes_from_the_watch() -> None:
    cache = Cache()
    cache.put_deployment(deployment(None, 1, 1))
    cache.wrote_deployment(summarize_deployment(deployment(None, 1, 0)))
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert d.ready == 1


def test_a_created_twin_is_known_before_its_first_watch_event() -> None:
    cache = Cache()
    cache.wrote_deployment(summarize_deployment(deployment(5, 1, 0)))
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert (d.replicas, d.ready) == (1, 0)
    cache.put_deployment(deployment(6, 1, 1))
    assert cache.written == {}
    assert cache.deployment(NS, "web-ft") == cache.deployments[(NS, "web-ft")]


def test_own_scale_is_read_until_the_watch_shows_it_while_readiness_keeps_coming() -> None:
    cache = Cache()
    cache.put_deployment(deployment(10, 5, 5))
    seen = cache.deployment(NS, "web-ft")
    assert seen is not None
    cache.wrote_deployment(
        replace(seen, replicas=4, replicas_manager=FIELD_MANAGER, resource_version=12)
    )
    cache.put_deployment(deployment(11, 5, 4))  # older than our scale: a pod went un-Ready
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert (d.replicas, d.ready, d.replicas_manager) == (4, 4, FIELD_MANAGER)
    cache.put_deployment(deployment(12, 4, 4))  # the watch shows our scale: the overlay goes
    assert cache.written == {}
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert (d.replicas, d.ready) == (4, 4)


def test_a_get_older_than_the_watch_does_not_replace_it() -> None:
    cache = Cache()
    cache.put_deployment(deployment(9, 2, 2))
    kept = cache.put_deployment(deployment(8, 2, 1))
    assert kept.ready == 2
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert d.ready == 2


def test_a_deleted_deployment_is_gone_with_what_the_operator_wrote() -> None:
    cache = Cache()
    cache.wrote_deployment(summarize_deployment(deployment(5, 1, 0)))
    cache.drop_deployment(NS, "web-ft")
    assert cache.deployment(NS, "web-ft") is None


def test_a_re_created_deployment_is_not_mixed_with_the_old_one() -> None:
    cache = Cache()
    cache.put_deployment(deployment(5, 3, 3, uid="old"))
    cache.wrote_deployment(summarize_deployment(deployment(9, 1, 0, uid="new")))
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert (d.uid, d.replicas, d.ready) == ("new", 1, 0)


def test_a_scale_response_after_the_watch_showed_the_deletion_does_not_bring_it_back() -> None:
    cache = Cache()
    cache.put_deployment(deployment(10, 5, 5))
    seen = cache.deployment(NS, "web-ft")
    assert seen is not None
    cache.drop_deployment(NS, "web-ft", "u1")  # DELETED came while the scale was in flight
    cache.wrote_deployment(replace(seen, replicas=4, resource_version=11))
    assert cache.deployment(NS, "web-ft") is None
    cache.wrote_deployment(summarize_deployment(deployment(20, 1, 0, uid="u2")))  # re-created
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert d.uid == "u2"


def test_own_write_is_kept_when_the_watch_version_is_unknown() -> None:
    cache = Cache()
    cache.put_deployment(deployment(None, 5, 5))
    seen = cache.deployment(NS, "web-ft")
    assert seen is not None
    cache.wrote_deployment(replace(seen, replicas=4, resource_version=12))
    d = cache.deployment(NS, "web-ft")
    assert d is not None
    assert d.replicas == 4


def test_a_crash_without_finished_at_is_kept_once_with_the_time_first_seen() -> None:
    """finishedAt is optional in the API: the crash still counts (stamped when first seen)
    and the same termination seen again is not a second one."""
    from ftrollout.plan.types import parse_time

    pod = {
        "metadata": {
            "name": "web-ft-abc-1",
            "namespace": NS,
            "labels": {"pod-template-hash": "abc"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-ft-abc", "controller": True}],
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "app", "lastState": {"terminated": {"exitCode": 139}}}],
        },
    }
    cache = Cache()
    cache.put_pod(pod)
    cache.put_pod(pod)
    (seen,) = cache.terminations_of(NS, "web-ft")
    assert seen[0] == "web-ft-abc-1"
    parse_time(seen[1].finished_at)  # a real time the planner can place in the window
