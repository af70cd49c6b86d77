"""A burst (1000 rollouts taken over at once) must not leave the process at its high water
(issue 22): reconciles run a bounded number at a time, and freed memory goes back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ftrollout.shell import handlers, memory
from ftrollout.shell import state as state_mod
from ftrollout.shell.state import State


class Stopped:
    def __init__(self) -> None:
        self.flag = False

    def __bool__(self) -> bool:
        return self.flag


async def test_reconciles_of_many_rollouts_run_a_bounded_number_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_mod, "RECONCILES_AT_ONCE", 3)
    monkeypatch.setattr(handlers, "STATE", State())
    running = peak = done = 0
    all_done = asyncio.Event()

    async def reconcile(state: State, body: Any, logger: Any) -> float | None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        done += 1
        if done == 20:
            all_done.set()
        return 3600.0

    monkeypatch.setattr(handlers, "reconcile", reconcile)

    stopped = Stopped()
    fn = getattr(handlers.rollout_daemon, "__wrapped__", handlers.rollout_daemon)
    daemons = [
        asyncio.create_task(
            fn(body={}, name=f"r{i}", namespace="ns", stopped=stopped, logger=handlers.log)
        )
        for i in range(20)
    ]
    try:
        await asyncio.wait_for(all_done.wait(), 10)
    finally:
        stopped.flag = True
        for i in range(20):
            handlers.STATE.poke("ns", f"r{i}")
        await asyncio.wait_for(asyncio.gather(*daemons), 10)
    assert peak == 3  # all 20 reconciled, never more than three at once


def test_freed_memory_is_returned_where_the_allocator_can() -> None:
    calls: list[int] = []

    def fake_trim(pad: int) -> int:
        calls.append(pad)
        return 1

    assert memory.trim(fake_trim) is not None
    assert calls == [0]
    # On this machine (glibc) the real one runs and says how much it gave back.
    if memory._malloc_trim() is not None:
        freed = memory.trim()
        assert freed is not None
        assert freed >= 0


def daemon(name: str, stopped: Stopped) -> asyncio.Task[None]:
    fn = getattr(handlers.rollout_daemon, "__wrapped__", handlers.rollout_daemon)
    body = {"metadata": {"namespace": "ns", "name": name}, "spec": {}}
    return asyncio.create_task(
        fn(body=body, name=name, namespace="ns", stopped=stopped, logger=handlers.log)
    )


async def test_a_daemon_stopped_while_queued_for_a_slot_does_not_reconcile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf pauses (peering) or stops (deletion) a daemon by setting `stopped`: one that was
    only waiting for a slot must not start a reconcile (writes) after that."""
    monkeypatch.setattr(state_mod, "RECONCILES_AT_ONCE", 1, raising=False)
    monkeypatch.setattr(handlers, "STATE", State())
    release = asyncio.Event()
    ran: list[str] = []

    async def reconcile(state: State, body: Any, logger: Any) -> float | None:
        name = body["metadata"]["name"]
        if stops[name]:
            ran.append(name)  # a reconcile begun after kopf said stop
        if name == "a":
            await release.wait()
        return 3600.0

    monkeypatch.setattr(handlers, "reconcile", reconcile)
    sa, sb = Stopped(), Stopped()
    stops = {"a": sa, "b": sb}
    a = daemon("a", sa)
    await asyncio.sleep(0.01)
    b = daemon("b", sb)  # queued behind a
    await asyncio.sleep(0.01)
    sa.flag = sb.flag = True  # the operator is paused: both daemons are asked to stop
    release.set()
    await asyncio.sleep(0.01)
    for t in (a, b):
        t.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    assert ran == []  # b used to reconcile (and write) after it was told to stop
