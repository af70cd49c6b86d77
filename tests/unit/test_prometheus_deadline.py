"""A Prometheus that answers slowly cannot hold the operator's query threads past a query's
deadline (#17 review): requests' timeout bounds each read, not the request, so a server
trickling one byte every 0.2 s kept a pool thread busy for as long as it liked, and a few
guardrail rounds starved every other address. The deadline now covers the whole request and
ends it at the socket; one address never holds more than a quarter of the shared threads, the
operator's own Prometheus has threads of its own, and the deadline covers connecting too."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prom_stub import PromStub, vector

from ftrollout.shell.prometheus_config import PrometheusConfig
from ftrollout.shell.scheduler import ADDRESS_SHARE, Prometheus, QueryError

BODY_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
HEADER_HEAD = b"HTTP/1.1 200 OK\r\nX-Slow: "


class Trickler:
    """Answers every request with `head`, then one byte every 0.2 s, forever."""

    def __init__(self, head: bytes = BODY_HEAD) -> None:
        self.head = head
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(self.head)
            while not self.stop.is_set():
                conn.sendall(b"a")
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("head", [BODY_HEAD, HEADER_HEAD], ids=["body", "headers"])
async def test_a_trickling_prometheus_does_not_starve_other_addresses(head: bytes) -> None:
    slow, good = Trickler(head), PromStub(lambda _q: vector(({}, 1)))
    prom = Prometheus(workers=8)
    try:
        # Three guardrail rounds' worth of queries against the trickler (4 per round, as in
        # guard_round), each given up by the operator after 0.5 s.
        for _ in range(3):
            results = await asyncio.gather(
                *(prom.query(slow.url, f"q{i}", 0.5) for i in range(4)), return_exceptions=True
            )
            assert [str(r) for r in results] == [f"prometheus {slow.url}: timed out"] * 4
        # Now an honest Prometheus of another team: must answer promptly.
        started = time.monotonic()
        try:
            out = await prom.query(good.url, "up", 2.0)
        except QueryError as exc:
            pytest.fail(f"honest Prometheus starved: {exc} after {time.monotonic() - started:.1f}s")
        assert out
    finally:
        slow.close()
        good.close()
        prom.pool.shutdown(wait=False, cancel_futures=True)


async def test_a_query_given_up_frees_its_thread() -> None:
    """One worker: the trickler's query must give the thread back at its deadline."""
    slow, good = Trickler(), PromStub(lambda _q: vector(({}, 1)))
    prom = Prometheus(workers=1)
    try:
        with pytest.raises(QueryError, match="timed out"):
            await prom.query(slow.url, "up", 0.5)
        assert await prom.query(good.url, "up", 2.0)
    finally:
        slow.close()
        good.close()
        prom.pool.shutdown(wait=False, cancel_futures=True)


async def test_one_address_never_holds_more_than_its_share_of_threads() -> None:
    """Whatever holds a thread past the deadline (a call the socket deadline cannot end), one
    address's calls occupy at most its share of the workers: the others stay free."""
    release = threading.Event()
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    def stuck(*_: Any) -> Any:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        release.wait(30)
        with lock:
            running["now"] -= 1
        return []

    prom = Prometheus(workers=8)
    assert prom.per_address == 8 // ADDRESS_SHARE
    try:
        for _ in range(3):
            results = await asyncio.gather(
                *(prom._run("http://stuck:9090", 0.2, stuck) for _ in range(4)),
                return_exceptions=True,
            )
            assert all(isinstance(r, QueryError) for r in results)
        assert await prom._run("http://other:9090", 2.0, lambda *_: ["ok"]) == ["ok"]
        assert running["max"] <= prom.per_address
    finally:
        release.set()
        prom.pool.shutdown(wait=False, cancel_futures=True)


async def test_two_hostile_addresses_do_not_starve_a_third() -> None:
    """Two trickling addresses (two teams, or one server under two ports with '*') asking for
    every worker they can: a third address still gets one."""
    a, b = Trickler(), Trickler()
    good = PromStub(lambda _q: vector(({}, 1)))
    prom = Prometheus(workers=8)
    hostile = [
        asyncio.ensure_future(prom.query(u, f"q{i}", 3.0)) for u in (a.url, b.url) for i in range(4)
    ]
    try:
        await asyncio.sleep(0.3)
        try:
            assert await prom.query(good.url, "up", 2.0)
        except QueryError as exc:
            pytest.fail(f"honest Prometheus starved: {exc}")
    finally:
        await asyncio.gather(*hostile, return_exceptions=True)
        a.close()
        b.close()
        good.close()
        prom.pool.shutdown(wait=False, cancel_futures=True)


def stuck_calls() -> tuple[threading.Event, Any]:
    release = threading.Event()

    def stuck(*_: Any) -> Any:
        release.wait(30)
        return []

    return release, stuck


async def test_the_operators_own_prometheus_has_workers_of_its_own() -> None:
    """Every shared worker held (as many addresses as it takes): the platform's Prometheus, the
    default of every namespace and the guardrails' main source, is still queried."""
    own = "http://prometheus.monitoring:9090"
    prom = Prometheus(workers=8, config=PrometheusConfig(own=own))
    release, stuck = stuck_calls()
    held = [
        asyncio.ensure_future(prom._run(f"http://team-{n}:9090", 5.0, stuck))
        for n in range(ADDRESS_SHARE)
        for _ in range(8 // ADDRESS_SHARE)
    ]
    try:
        await asyncio.sleep(0.3)
        assert await prom._run(own, 2.0, lambda *_: ["ok"]) == ["ok"]
    finally:
        release.set()
        await asyncio.gather(*held, return_exceptions=True)
        prom.pool.shutdown(wait=False, cancel_futures=True)


async def test_a_query_given_up_while_waiting_for_a_worker_never_takes_one() -> None:
    """Queries of an honest address that expired while every worker was held must not hold
    its share of workers, nor run once workers are free again."""
    prom = Prometheus(workers=8)
    release, stuck = stuck_calls()
    held = [
        asyncio.ensure_future(prom._run(f"http://team-{n}:9090", 5.0, stuck))
        for n in range(ADDRESS_SHARE)
        for _ in range(8 // ADDRESS_SHARE)
    ]
    ran: list[int] = []
    try:
        await asyncio.sleep(0.3)
        results = await asyncio.gather(
            *(prom._run("http://honest:9090", 0.2, lambda *_: ran.append(1)) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, QueryError) for r in results)
    finally:
        release.set()
        await asyncio.gather(*held, return_exceptions=True)
    await asyncio.sleep(0.5)  # workers free: anything still queued would run now
    try:
        assert ran == []
        assert await prom._run("http://honest:9090", 2.0, lambda *_: ["ok"]) == ["ok"]
    finally:
        prom.pool.shutdown(wait=False, cancel_futures=True)


class Counted(list[Any]):
    """getaddrinfo's answer, counting the addresses a connect loop takes."""

    taken = 0

    def __iter__(self) -> Iterator[Any]:
        for item in list.__iter__(self):
            self.taken += 1
            yield item


async def test_the_deadline_also_ends_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name resolving to many unreachable addresses (a selector-less Service whose endpoints
    a tenant controls, external DNS): urllib3 gives each address the whole timeout, so a 0.5 s
    query held its worker 8 x 0.5 s. The deadline is shared by the attempts: one here."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # the accept queue full: further SYNs are dropped, connect() hangs
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    addresses = Counted([(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] * 8)
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return addresses if host == "prom.team-a.test" else real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    prom = Prometheus(workers=1)
    try:
        with pytest.raises(QueryError, match="timed out"):
            await prom.query(f"http://prom.team-a.test:{port}", "up", 0.5)
    finally:
        listener.close()
        for c in fillers:
            c.close()
        prom.pool.shutdown(wait=False, cancel_futures=True)
    assert addresses.taken <= 2, f"{addresses.taken} addresses tried by a 0.5 s query"
