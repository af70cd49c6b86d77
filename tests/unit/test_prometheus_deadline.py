"""A Prometheus that answers slowly cannot hold the operator's query threads past a query's
deadline (#17 review): requests' timeout bounds each read, not the request, so a server
trickling one byte every 0.2 s kept a pool thread busy for as long as it liked, and a few
guardrail rounds starved every other address. The deadline now covers the whole request and
ends it at the socket; and one address never holds more than PER_URL_CONCURRENCY threads."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
from prom_stub import PromStub, vector

from ftrollout.shell.scheduler import PER_URL_CONCURRENCY, Prometheus, QueryError

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
    address's calls occupy at most PER_URL_CONCURRENCY workers: the others stay free."""
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

    prom = Prometheus(workers=PER_URL_CONCURRENCY + 2)
    try:
        for _ in range(3):
            results = await asyncio.gather(
                *(prom._run("http://stuck:9090", 0.2, stuck) for _ in range(4)),
                return_exceptions=True,
            )
            assert all(isinstance(r, QueryError) for r in results)
        assert await prom._run("http://other:9090", 2.0, lambda *_: ["ok"]) == ["ok"]
        assert running["max"] <= PER_URL_CONCURRENCY
    finally:
        release.set()
        prom.pool.shutdown(wait=False, cancel_futures=True)
