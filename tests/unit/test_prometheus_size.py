"""A Prometheus answer is read with a hard cap on its decoded size (#17 review): a gzip answer of
a few hundred kB used to inflate to hundreds of MB inside the operator. Over the cap, the query
fails with "answer larger than N bytes" (never the body) and reading stops there. Error and
redirect answers are not read at all, and answers are parsed within a process-wide budget."""

from __future__ import annotations

import asyncio
import json
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from prom_stub import Answer, PromStub

from ftrollout.shell.prometheus_config import DEFAULT_MAX_RESPONSE_BYTES, PrometheusConfig
from ftrollout.shell.scheduler import PARSE_BUDGET_ANSWERS, Prometheus, QueryError

MiB = 1 << 20
CHART_MEMORY_LIMIT = 512 * MiB  # charts/ftrollout/values.yaml resources.limits.memory
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


async def test_the_default_cap_is_2_mib(stubs: list[PromStub]) -> None:
    assert 2 * MiB == DEFAULT_MAX_RESPONSE_BYTES
    bomb = gzip_bomb(4 * MiB)
    s = stub(stubs, (200, {"Content-Encoding": "gzip"}, bomb))
    with pytest.raises(QueryError, match=f"answer larger than {2 * MiB} bytes$"):
        await Prometheus(workers=1).query(s.url, "up", 10.0)


def test_the_default_cap_fits_a_large_clusters_guardrail_answer() -> None:
    """The largest answer the operator asks for: one series per free-threaded pod of every
    rollout on the operator's own Prometheus. 1000 rollouts with 5 such pods each, with long
    names, fit with room to spare (about 17,000 pods would)."""
    series = [
        {
            "metric": {
                "namespace": f"team-{r % 50:02d}-staging",
                "pod": f"checkout-api-{r:04d}-ft-7d9f8b6c5d-{p:05d}",
            },
            "value": [1733100000.123, "1"],
        }
        for r in range(1000)
        for p in range(5)
    ]
    answer = {"status": "success", "data": {"resultType": "vector", "result": series}}
    assert len(json.dumps(answer)) * 3 < DEFAULT_MAX_RESPONSE_BYTES


async def test_an_answer_within_the_default_cap_cannot_take_the_operators_memory(
    stubs: list[PromStub],
) -> None:
    """The cap bounds bytes, not the objects they parse into: `[{},{},...]` is about 25 times
    its bytes in Python objects. At the old default (10 MiB) one such answer took ~260 MiB, and
    every worker could parse one at once; the chart's memory limit is 512 MiB. Now: 2 MiB, and
    at most PARSE_BUDGET_ANSWERS capped answers parsed at once (see the next test)."""
    n = (DEFAULT_MAX_RESPONSE_BYTES - 40) // 3
    body = b'{"data":{"result":[' + b"{}," * (n - 1) + b"{}]}}"
    packed = zlib.compress(body, 9, wbits=31)
    s = stub(stubs, (200, {"Content-Encoding": "gzip"}, packed))
    tracemalloc.start()
    try:
        series = await Prometheus(workers=1).query(s.url, "up", 30.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(series) == n
    assert peak * PARSE_BUDGET_ANSWERS < CHART_MEMORY_LIMIT / 4, f"peak {peak / MiB:.0f} MiB"


async def test_answers_are_parsed_within_a_process_wide_budget(stubs: list[PromStub]) -> None:
    """Six answers at the cap, from three addresses (two workers each): at most
    PARSE_BUDGET_ANSWERS of them are parsed (and shaped) at once, whatever the workers."""
    cap = 64 * 1024
    body = HEAD + b" " * (cap - len(HEAD))
    addresses = [stub(stubs, (200, {}, body)) for _ in range(3)]
    prom = Prometheus(workers=8, config=PrometheusConfig(max_response_bytes=cap))
    lock = threading.Lock()
    inside = {"now": 0, "max": 0}
    go_on = threading.Event()

    def shape(series: list[dict[str, object]]) -> int:
        with lock:
            inside["now"] += 1
            inside["max"] = max(inside["max"], inside["now"])
        go_on.wait(10)
        with lock:
            inside["now"] -= 1
        return len(series)

    queries = [
        asyncio.ensure_future(prom.query(a.url, f"q{i}", 20.0, shape))
        for a in addresses
        for i in range(2)
    ]
    for _ in range(100):  # until the budget is taken (at most 10 s)
        await asyncio.sleep(0.1)
        if inside["now"] >= PARSE_BUDGET_ANSWERS:
            break
    await asyncio.sleep(0.5)  # time for any other answer to get in, were it let in
    go_on.set()
    assert await asyncio.gather(*queries) == [0] * 6
    assert inside["max"] == PARSE_BUDGET_ANSWERS


async def test_a_redirect_answer_is_not_read_at_all(stubs: list[PromStub]) -> None:
    """requests' Session.send reads (and inflates, without bound) a 3xx body even with
    allow_redirects=False, before its caller sees the status: the operator does not use it."""
    bomb = gzip_bomb(64 * MiB)
    headers = {"Location": "http://elsewhere.invalid/", "Content-Encoding": "gzip"}
    s = stub(stubs, (302, headers, bomb))
    prom = Prometheus(workers=1, config=PrometheusConfig(max_response_bytes=MiB))
    tracemalloc.start()
    try:
        with pytest.raises(QueryError) as exc:
            await prom.query(s.url, "up", 10.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(exc.value) == f"prometheus {s.url}: redirect refused"
    assert peak < 8 * MiB, f"peak {peak / MiB:.0f} MiB while refusing a redirect"


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
