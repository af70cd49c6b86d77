"""A Prometheus answer is read with a hard cap on its decoded size (#17 review): a gzip answer of
a few hundred kB used to inflate to hundreds of MB inside the operator. Over the cap, the query
fails with "answer larger than N bytes" (never the body) and reading stops there."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from prom_stub import Answer, PromStub

from ftrollout.shell.prometheus_config import DEFAULT_MAX_RESPONSE_BYTES, PrometheusConfig
from ftrollout.shell.scheduler import Prometheus, QueryError

MiB = 1 << 20
# A valid Prometheus answer followed by whitespace: still valid JSON, so only the size refuses it.
HEAD = b'{"status":"success","data":{"resultType":"vector","result":[]}}'


def gzip_bomb(inflated: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(HEAD)]
    block = b" " * MiB
    for _ in range(inflated // MiB):
        parts.append(z.compress(block))
    parts.append(z.flush())
    return b"".join(parts)


@pytest.fixture
def stubs() -> Iterator[list[PromStub]]:
    made: list[PromStub] = []
    yield made
    for s in made:
        s.close()


def stub(stubs: list[PromStub], answer: Answer) -> PromStub:
    s = PromStub(lambda _q: answer)
    stubs.append(s)
    return s


async def test_a_gzip_bomb_is_refused_without_inflating_it(stubs: list[PromStub]) -> None:
    bomb = gzip_bomb(64 * MiB)
    assert len(bomb) < MiB // 4
    s = stub(stubs, (200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, bomb))
    prom = Prometheus(workers=1, config=PrometheusConfig(max_response_bytes=MiB))
    tracemalloc.start()
    try:
        with pytest.raises(QueryError) as exc:
            await prom.query(s.url, "up", 10.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(exc.value) == f"prometheus {s.url}: answer larger than {MiB} bytes"
    # What the operator held while reading: about the cap, not the 64 MiB the bomb inflates to.
    assert peak < 8 * MiB


async def test_the_default_cap_is_10_mib(stubs: list[PromStub]) -> None:
    assert 10 * MiB == DEFAULT_MAX_RESPONSE_BYTES
    bomb = gzip_bomb(16 * MiB)
    s = stub(stubs, (200, {"Content-Encoding": "gzip"}, bomb))
    with pytest.raises(QueryError, match=f"answer larger than {10 * MiB} bytes$"):
        await Prometheus(workers=1).query(s.url, "up", 10.0)


async def test_a_plain_answer_over_the_cap_is_refused(stubs: list[PromStub]) -> None:
    s = stub(stubs, (200, {"Content-Type": "application/json"}, HEAD + b" " * (2 * MiB)))
    prom = Prometheus(workers=1, config=PrometheusConfig(max_response_bytes=MiB))
    with pytest.raises(QueryError, match=f"answer larger than {MiB} bytes$"):
        await prom.query(s.url, "up", 10.0)


async def test_answers_up_to_the_cap_are_read_gzip_or_not(stubs: list[PromStub]) -> None:
    body = HEAD + b" " * (MiB - len(HEAD))
    plain = stub(stubs, (200, {}, body))
    packed = stub(stubs, (200, {"Content-Encoding": "gzip"}, gzip_bomb(0)))
    prom = Prometheus(workers=1, config=PrometheusConfig(max_response_bytes=MiB))
    assert await prom.query(plain.url, "up", 10.0) == []
    assert await prom.query(packed.url, "up", 10.0) == []


async def test_an_encoding_the_operator_did_not_ask_for_is_refused(stubs: list[PromStub]) -> None:
    s = stub(stubs, (200, {"Content-Encoding": "br"}, b"\x1b\x00\x00"))
    with pytest.raises(QueryError, match=r"not a Prometheus API response$"):
        await Prometheus(workers=1).query(s.url, "up", 10.0)


async def test_an_error_answer_is_not_read_at_all(stubs: list[PromStub]) -> None:
    """A 500 with a bomb as its body: the status code is all the operator needs."""
    s = stub(stubs, (500, {"Content-Encoding": "gzip"}, gzip_bomb(64 * MiB)))
    tracemalloc.start()
    try:
        with pytest.raises(QueryError) as exc:
            await Prometheus(workers=1).query(s.url, "up", 10.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(exc.value) == f"prometheus {s.url}: HTTP 500 Internal Server Error"
    assert peak < 8 * MiB
