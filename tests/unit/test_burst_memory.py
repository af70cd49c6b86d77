"""A burst (1000 rollouts taken over at once) must not leave the process at its high water
(issue 22): reconciles run a bounded number at a time, and freed memory goes back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ftrollout.shell import handlers, memory
from ftrollout.shell import state as state_mod
from ftrollout.shell.state import State


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

    class Stopped:
        flag = False

        def __bool__(self) -> bool:
            return self.flag

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
