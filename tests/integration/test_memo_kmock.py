"""A reconcile of an unchanged world skips the plan (shell/memo.py, issue 22), and never when
something it acts on changed, the clock made it due, or the last plan still has writes to try.
Against KMock: the shell's real requests are counted."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_handlers_kmock import (
    DEPLOYMENTS,
    NS,
    Emulator,
    Shell,
    at_first_step,
    event_reasons,
    round_of,
    status_writes_of,
    twin_pod,
    writes,
)

from ftrollout.shell import reconcile
from ftrollout.shell.state import GilReading

pytestmark = [pytest.mark.timeout(30), pytest.mark.kmock(cls=Emulator)]


class Clock(datetime):
    """The shell's clock, moved by the test."""

    current = datetime(2030, 1, 1, tzinfo=UTC)

    @classmethod
    def now(cls, tz: Any = None) -> Clock:
        return cls.current  # type: ignore[return-value]


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the shell called the planner."""
    calls = [0]
    real = reconcile.plan

    def counting(*args: Any) -> Any:
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(reconcile, "plan", counting)
    monkeypatch.setattr(reconcile, "datetime", Clock)
    Clock.current = datetime(2030, 1, 1, tzinfo=UTC)
    return calls


async def paused(kmock: Any, pause: str = "1h") -> tuple[Shell, str]:
    """At step 1, reached and converged, one Ready twin pod with the GIL off."""
    shell = await at_first_step(kmock, pause)
    twin = kmock.objects[DEPLOYMENTS, NS, "web-ft"].raw
    revision = twin["spec"]["template"]["metadata"]["annotations"]["freethreaded.dev/revision"]
    shell.state.cache.put_pod(twin_pod("web-ft-5d9f7-aaaaa", revision))
    shell.state.gil[NS, "web-ft-5d9f7-aaaaa"] = GilReading(enabled=False)
    # A successful round after the step started (at the clock's start): the pause alone holds.
    shell.state.analysis[NS, "web"] = round_of("2030-01-01T00:00:01Z", 0.001)
    await shell.reconcile()  # the reading and the round are news: written
    await shell.reconcile()  # converged: nothing to write, remembered
    shell.new_requests()
    return shell, revision


async def test_an_unchanged_world_is_answered_without_a_plan_or_a_request(
    kmock: Any, plans: list[int]
) -> None:
    shell, _ = await paused(kmock)
    before, skipped = plans[0], shell.state.skipped
    Clock.current += timedelta(minutes=10)
    delays = [await shell.reconcile() for _ in range(3)]
    assert plans[0] == before, "planned again with nothing changed"
    assert shell.state.skipped == skipped + 3
    assert shell.new_requests() == []
    # The timed pause's end is still asked for: 1 h from the step's start, 10 min gone.
    assert delays[0] is not None
    assert 49 * 60 < delays[0] <= 50 * 60


async def test_a_gil_fallback_reading_is_acted_on_at_once(kmock: Any, plans: list[int]) -> None:
    shell, _ = await paused(kmock)
    shell.state.gil[NS, "web-ft-5d9f7-aaaaa"] = GilReading(enabled=True, modules=("numpy",))
    await shell.reconcile()
    assert shell.body()["status"]["phase"] == "RolledBack"
    assert "RolledBack" in event_reasons(shell.new_requests())


async def test_a_crashed_twin_pod_is_acted_on_at_once(kmock: Any, plans: list[int]) -> None:
    shell, revision = await paused(kmock)
    pod = twin_pod("web-ft-5d9f7-aaaaa", revision)
    pod["status"]["containerStatuses"] = [
        {
            "name": "app",
            "restartCount": 1,
            "lastState": {"terminated": {"exitCode": 139, "finishedAt": "2030-01-01T00:00:05Z"}},
        }
    ]
    shell.state.cache.put_pod(pod)
    before = plans[0]
    await shell.reconcile()
    assert plans[0] == before + 1
    assert "RaceIncident" in event_reasons(shell.new_requests())


async def test_a_twin_moved_to_another_revision_by_someone_is_looked_at(
    kmock: Any, plans: list[int]
) -> None:
    """The twin's template is the shell's to keep (ensure_twin), not the planner's: a change of
    it alone, replica counts equal, still runs the reconcile in full."""
    shell, _ = await paused(kmock)
    twin = dict(kmock.objects[DEPLOYMENTS, NS, "web-ft"].raw)
    twin["metadata"] = {
        **twin["metadata"],
        "annotations": {
            **twin["metadata"]["annotations"],
            "freethreaded.dev/revision": "0ld0ld0ld0",
        },
        "resourceVersion": "9999",
    }
    twin["status"] = {"replicas": 1, "readyReplicas": 1}
    shell.state.cache.put_deployment(twin)
    before = plans[0]
    await shell.reconcile()
    assert plans[0] == before + 1


async def test_the_end_of_a_timed_pause_is_planned(kmock: Any, plans: list[int]) -> None:
    shell, _ = await paused(kmock, "1m")
    Clock.current += timedelta(seconds=30)
    before = plans[0]
    await shell.reconcile()
    assert writes(shell.new_requests()) == []
    assert plans[0] == before  # not due yet
    Clock.current += timedelta(seconds=31)
    await shell.reconcile()
    (advanced,) = status_writes_of(shell.new_requests())
    assert advanced["stepIndex"] == 1


async def test_a_plan_that_wrote_something_is_not_remembered(kmock: Any, plans: list[int]) -> None:
    """The promote is applied and cleared; the next look (the annotation's removal still on
    its way back through the watch) plans again rather than trusting a world it changed."""
    shell, _ = await paused(kmock)
    body = shell.body()
    body["metadata"]["annotations"] = {"freethreaded.dev/action": "promote"}
    await shell.reconcile(body)
    assert status_writes_of(shell.new_requests())
    before = plans[0]
    await shell.reconcile(body)
    assert plans[0] == before + 1


async def test_the_spec_is_validated_once_per_change(
    kmock: Any, plans: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every analysis round the rollout reconciles with the same spec: validating it
    again each time was a fifth of those reconciles. An edited spec is read afresh."""
    from ftrollout.model import api
    from ftrollout.shell import spec_cache
    from ftrollout.shell.scheduler import Prometheus, Scheduler

    shell, _ = await paused(kmock)
    shell.state.scheduler = Scheduler(shell.state, prom=Prometheus(workers=1))
    shell.state.memos.clear()  # as if the operator had started with it (it does)
    await shell.reconcile()  # registered for analysis: its parse is kept from now on
    parsed: list[Any] = []
    real = api.parse_spec
    monkeypatch.setattr(spec_cache.api, "parse_spec", lambda raw: parsed.append(raw) or real(raw))
    body = shell.body()
    for i in range(3):
        shell.state.analysis[NS, "web"] = round_of(f"2030-01-01T00:00:{10 + i}Z", 0.001)
        await shell.reconcile(body)
    assert parsed == []  # parsed when the rollout came to this step, not since
    edited = shell.body()
    edited["spec"]["paused"] = True
    await shell.reconcile(edited)
    assert len(parsed) == 1
    assert shell.body()["status"]["message"].startswith("paused by spec.paused")


class Tracked(dict):  # type: ignore[type-arg]
    """A dict a weak reference can follow: whether anything still holds it."""


async def test_a_relisted_rollout_does_not_keep_the_bodies_it_replaced(
    kmock: Any, plans: list[int]
) -> None:
    """kopf lists every object again after a 410 (an idle watch, every few minutes): the same
    resourceVersion in new dicts, the old ones dropped by kopf. The memo answered that look and
    held on to the spec and status of the body it was planned from: a second copy of every
    idle rollout's spec and status, for as long as nothing changed (issue 22: memory)."""
    shell, _ = await paused(kmock)
    first = shell.body()
    first["spec"] = Tracked(first["spec"])
    first["status"]["replicas"] = Tracked(first["status"]["replicas"])
    spec, replicas = weakref.ref(first["spec"]), weakref.ref(first["status"]["replicas"])
    shell.state.memos.clear()
    await shell.reconcile(first)  # planned from `first`, nothing to write: remembered
    assert (NS, "web") in shell.state.memos
    before = plans[0]
    relisted = shell.body()  # same resourceVersion, new dicts
    await shell.reconcile(relisted)
    assert plans[0] == before  # answered from the memo
    del first
    gc.collect()
    assert spec() is None, "the replaced body's spec is still held"
    assert replicas() is None, "the replaced body's status is still held"


async def test_a_rollout_that_is_not_analysed_keeps_no_parsed_spec(kmock: Any) -> None:
    """It reconciles when something happens or at its hourly look: keeping the models of every
    idle rollout's spec would cost more memory than parsing again costs time."""
    from ftrollout.shell.scheduler import Prometheus, Scheduler

    shell, _ = await paused(kmock)
    shell.state.scheduler = Scheduler(shell.state, prom=Prometheus(workers=1))
    shell.state.memos.clear()  # as if the operator had started with it (it does)
    await shell.reconcile()
    assert (NS, "web") in shell.state.specs  # analysed
    body = shell.body()
    del body["spec"]["analysis"]
    await shell.reconcile(body)
    assert (NS, "web") not in shell.state.scheduler.targets
    assert (NS, "web") not in shell.state.specs
    await shell.reconcile(body)  # a look answered from the memo keeps none either
    assert (NS, "web") not in shell.state.specs


async def test_a_deleted_rollout_leaves_nothing_behind(kmock: Any, plans: list[int]) -> None:
    """Everything the process keeps per rollout goes with its DELETED watch event: churn leaves
    no memory behind (issue 22: memory per rollout), and a rollout created again under the same
    name inherits no preflight verdict, consumed action or remembered plan of the old one.
    Checked over every per-rollout field of State, so a field added later is checked too."""
    import dataclasses

    from ftrollout.model import api
    from ftrollout.shell import handlers

    shell, _ = await paused(kmock)
    key = (NS, "web")
    state = shell.state
    state.consumed_action[key] = "12"  # an action acted on
    state.preflight[key] = api.PreflightStatus(phase="Passed")  # the gate's verdict
    state.target_writes[key] = [(0.0, 3)]
    state.baseline_errors[key] = "forbidden"

    def keeping() -> set[str]:
        return {
            f.name
            for f in dataclasses.fields(state)
            if f.name != "pokes"  # the daemon's own: it removes it when it stops
            and isinstance(getattr(state, f.name), dict | set)
            and key in getattr(state, f.name)
        }

    held = keeping()
    assert {"active", "containers", "memos", "analysis", "preflight"} <= held
    body = shell.body()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "STATE", state)
        await handlers.rollout_event(
            event={"type": "DELETED", "object": body}, name="web", namespace=NS, spec=body["spec"]
        )
    assert keeping() == set()
    assert key not in state.cache.rollout_targets
