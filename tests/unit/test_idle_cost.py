"""What an idle operator does between events (issue 22): nothing that grows with the number
of rollouts, unless something changed. Each test failed before its change."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any

import pytest
from prom_stub import PromStub, probe_answer
from test_guardrail_isolation import pod

from ftrollout.shell import scheduler as scheduler_mod
from ftrollout.shell.scheduler import Prometheus, Scheduler
from ftrollout.shell.state import GilReading, State


async def test_a_relisting_that_finds_the_same_reporting_pods_reads_nothing(
    monkeypatch: Any,
) -> None:
    """The reporting pods are listed again every DENSE_SECONDS as a safety net. At 1000
    paused rollouts, reading every pod's GIL state again after each listing that found the
    same pods was the largest share of the idle operator's Python time (py-spy)."""
    monkeypatch.setattr(scheduler_mod, "DENSE_SECONDS", 0.0)  # every round lists again
    state = State()
    names = [("team-a", f"web-ft-5d9f7-{i:05d}") for i in range(20)]
    for ns, name in names:
        state.cache.put_pod(pod(ns, name))
    gil = [({"namespace": ns, "pod": name}, 0) for ns, name in names]
    stub = PromStub(lambda q: probe_answer(q, gil=gil))
    reads = 0
    try:
        sched = Scheduler(state, prom=Prometheus(workers=2), default_url=stub.url)
        original = sched._read

        def counting() -> set[tuple[str, str]]:
            nonlocal reads
            reads += 1
            return original()

        monkeypatch.setattr(sched, "_read", counting)
        await sched.guard_round()
        assert reads == 1
        assert state.gil[names[0]] == GilReading(enabled=False)
        for _ in range(3):
            await sched.guard_round()
        assert reads == 1, f"{reads - 1} re-reads of unchanged readings"
        # A pod falling back to the GIL is still news.
        gil[-1] = (gil[-1][0], 1)
        await sched.guard_round()
        assert reads == 2
        assert state.gil[names[-1]] == GilReading(enabled=True)
    finally:
        stub.close()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf"])
def test_a_bad_idle_resync_setting_neither_stops_the_operator_nor_spins_it(value: str) -> None:
    """FTR_IDLE_RESYNC_SECONDS is read when the handlers are imported: a typo stopped the
    operator from starting (a crash loop), and 0 or a negative value made every idle rollout's
    daemon look again at once, for ever (and every look a skip: a busy loop)."""
    env = {**os.environ, "FTR_IDLE_RESYNC_SECONDS": value}
    out = subprocess.run(
        [sys.executable, "-c", "from ftrollout.shell import handlers as h; "
         "print(h.IDLE_RESYNC_SECONDS)"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) == 3600.0
    assert "FTR_IDLE_RESYNC_SECONDS" in out.stderr  # said, not silently ignored


def test_a_valid_idle_resync_setting_is_used() -> None:
    env = {**os.environ, "FTR_IDLE_RESYNC_SECONDS": "300"}
    out = subprocess.run(
        [sys.executable, "-c", "from ftrollout.shell import handlers as h; "
         "print(h.IDLE_RESYNC_SECONDS)"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert float(out.stdout.split()[-1]) == 300.0


def test_a_relisted_spec_replaces_the_one_its_parse_was_kept_for() -> None:
    """kopf's re-list brings every rollout again in new dicts: the parse is kept (the spec is
    the same), the dict it was made from is not."""
    import copy
    import gc
    import weakref

    from ftrollout.shell.spec_cache import parsed_spec

    class Tracked(dict):  # type: ignore[type-arg]
        pass

    raw = Tracked(
        targetRef={"name": "web"},
        freeThreaded={"image": "example/app:3.14t"},
        steps=[{"weight": 50}, {"weight": 100}],
    )
    state = State()
    first = parsed_spec(state, ("ns", "web"), raw)
    assert first.error is None
    gone = weakref.ref(raw)
    again = parsed_spec(state, ("ns", "web"), copy.deepcopy(dict(raw)))
    assert again is first  # not parsed again
    del raw
    gc.collect()
    assert gone() is None, "the replaced spec dict is still held"


def test_the_metrics_server_sleeps_until_a_scrape_comes(monkeypatch: Any) -> None:
    """prometheus-client's start_http_server polls for a shutdown twice a second: at 1000 idle
    rollouts those wake-ups were a fifteenth of the operator's CPU (py-spy, 1 kHz). The
    endpoint still answers a scrape at once."""
    import socket
    import time
    import urllib.request

    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.exposition import ThreadingWSGIServer

    from ftrollout.shell import metrics

    loops = 0
    original = ThreadingWSGIServer.service_actions

    def counting(self: ThreadingWSGIServer) -> None:  # once per pass of serve_forever
        nonlocal loops
        loops += 1
        original(self)

    monkeypatch.setattr(ThreadingWSGIServer, "service_actions", counting)
    registry = CollectorRegistry()
    Counter("ftrollout_test_scrapes", "a metric to serve", registry=registry).inc()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = metrics.listen(port, addr="127.0.0.1", registry=registry)
    try:
        time.sleep(1.6)
        assert loops == 0, f"the metrics thread woke {loops} times with nothing to serve"
        start = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert time.monotonic() - start < 1.0
        assert "ftrollout_test_scrapes_total 1.0" in body
    finally:
        # shutdown() waits for the thread's next pass: a connection wakes it.
        import threading

        stopping = threading.Thread(target=httpd.shutdown)
        stopping.start()
        while stopping.is_alive():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                pass
            stopping.join(0.1)
        httpd.server_close()
