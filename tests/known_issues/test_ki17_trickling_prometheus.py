"""#17 review, open finding: a Prometheus that trickles its answer (one byte every 0.2 s) keeps
pool threads busy after the operator gave up waiting (requests' timeout bounds each read, not the
request), so a few guardrail rounds starve every other address: their queries time out too."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from prom_stub import PromStub, vector

from ftrollout.shell.scheduler import Prometheus, QueryError


class Trickler:
    def __init__(self) -> None:
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
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            )
            while not self.stop.is_set():
                conn.sendall(b" ")
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


async def test_a_trickling_prometheus_does_not_starve_other_addresses() -> None:
    slow, good = Trickler(), PromStub(lambda _q: vector(({}, 1)))
    prom = Prometheus(workers=8)
    try:
        # Three guardrail rounds' worth of queries against the trickler (4 per round, as in
        # guard_round), each given up by the operator after 0.5 + 1 s.
        for _ in range(3):
            results = await asyncio.gather(
                *(prom.query(slow.url, f"q{i}", 0.5) for i in range(4)), return_exceptions=True
            )
            assert all(isinstance(r, QueryError) for r in results)
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
