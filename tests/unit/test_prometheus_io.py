"""Prometheus I/O against a local stub: what a broken or hostile server can put in status
(status code and a short reason only), redirects refused, nothing kept of its cookies."""

from __future__ import annotations

import argparse
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prom_stub import Answer, PromStub, vector

from ftrollout.model import api
from ftrollout.shell import scheduler
from ftrollout.shell.prometheus_config import PrometheusConfig, from_args
from ftrollout.shell.runner import add_arguments
from ftrollout.shell.scheduler import AnalysisTarget, Prometheus, QueryError, Scheduler
from ftrollout.shell.state import State

HOSTILE = b"<html>" + b"kubectl ftr promote --all; " * 400 + b"\nsecond line: Bearer s3cr3t</html>"


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


def analysis() -> api.Analysis:
    return api.Analysis.model_validate(
        {"metrics": [{"name": "errors", "query": "errors", "threshold": {"max": 1}}]}
    )


async def one_round(url: str) -> api.MetricResult:
    sched = Scheduler(State(), prom=Prometheus(workers=1))
    t = AnalysisTarget("shop", "web", "web", "web-ft", analysis(), url)
    (result,) = (await sched.analyse(t)).results
    return result


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((500, {"Content-Type": "text/html"}, HOSTILE), "HTTP 500 Internal Server Error"),
        ((503, {}, HOSTILE), "HTTP 503 Service Unavailable"),
        ((200, {"Content-Type": "application/json"}, HOSTILE), "not a Prometheus API response"),
        ((302, {"Location": "http://169.254.169.254/latest/meta-data"}, b""), "redirect refused"),
    ],
)
async def test_a_failed_query_reports_a_status_code_and_a_short_reason_only(
    stubs: list[PromStub], answer: Answer, reason: str
) -> None:
    s = stub(stubs, answer)
    result = await one_round(s.url)
    assert result.phase == "Inconclusive"
    assert result.message == f"free-threaded: prometheus {s.url}: {reason}"
    assert "promote" not in result.message
    assert "s3cr3t" not in result.message
    assert len(s.queries) == 1  # no retry, no redirect followed


async def test_a_value_chosen_by_the_server_is_not_echoed(stubs: list[PromStub]) -> None:
    s = stub(stubs, vector(({}, "kubectl ftr promote --all " * 50)))
    result = await one_round(s.url)
    assert result.phase == "Inconclusive"
    assert result.message == "free-threaded: value is not a number"


async def test_a_dead_address_is_a_short_reason_too() -> None:
    prom = Prometheus(workers=1)
    with pytest.raises(QueryError) as exc:
        await prom.query("http://127.0.0.1:9", "up", 2.0)  # discard port: nothing listens
    assert str(exc.value) == "prometheus http://127.0.0.1:9: connection failed"


@pytest.mark.parametrize("reuse", [False, True])
async def test_a_bearer_token_goes_to_its_own_address_only(
    stubs: list[PromStub], tmp_path: Path, reuse: bool
) -> None:
    """Also for a request prepared once and copied (the guardrail's, `reuse`): the credentials
    are added to every copy, read at that moment."""
    own = stub(stubs, vector(({}, 1)))
    team = stub(stubs, vector(({}, 1)))
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = from_args(
        p.parse_args(
            [
                f"--prometheus-url={own.url}",
                f"--prometheus-allow={team.url}",
                f"--prometheus-bearer-token-file={token}",
            ]
        )
    )
    prom = Prometheus(workers=1, config=cfg)
    await prom.query(own.url, "up", 2.0, reuse=reuse)
    await prom.query(team.url, "up", 2.0, reuse=reuse)
    assert own.headers[0].get("Authorization") == "Bearer s3cr3t"
    assert "Authorization" not in team.headers[0]
    token.write_text("r0tated")  # a rotated Secret is read at the next query
    await prom.query(own.url, "up", 2.0, reuse=reuse)
    assert own.headers[1].get("Authorization") == "Bearer r0tated"
    await prom.query(team.url, "up", 2.0, reuse=reuse)
    assert "Authorization" not in team.headers[1]
    assert len(prom.templates) == (2 if reuse else 0)  # one per address and query


async def test_a_request_prepared_once_asks_exactly_what_a_fresh_one_asks(
    stubs: list[PromStub],
) -> None:
    """The guardrail's query (1.5 kB of PromQL, quotes, braces, regexes) is prepared once and
    copied every round: the server sees the same query and headers either way."""
    from ftrollout.plan.prometheus import GUARD_QUERY

    own = stub(stubs, vector(({}, 1)))
    prom = Prometheus(workers=1, config=PrometheusConfig(own=own.url))
    await prom.query(own.url, GUARD_QUERY, 2.0)
    for _ in range(3):
        await prom.query(own.url, GUARD_QUERY, 2.0, reuse=True)
    assert own.queries == [GUARD_QUERY] * 4
    fresh, *copies = own.headers
    assert all(c == fresh for c in copies)
    assert len(prom.templates) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((500, {"Content-Type": "text/html"}, HOSTILE), "HTTP 500 Internal Server Error"),
        ((200, {"Content-Type": "application/json"}, HOSTILE), "not a Prometheus API response"),
    ],
)
async def test_a_failed_range_query_reports_a_short_reason_only(
    stubs: list[PromStub], answer: Answer, reason: str
) -> None:
    """The MannWhitney judge's range queries go through the same rule as instant queries."""
    from datetime import UTC, datetime, timedelta

    s = stub(stubs, answer)
    end = datetime.now(UTC)
    with pytest.raises(QueryError) as exc:
        await Prometheus(workers=1).query_range(s.url, "up", end - timedelta(minutes=1), end, 5, 2)
    assert str(exc.value) == f"prometheus {s.url}: {reason}"


def serve_cookies(listener: socket.socket) -> None:
    """Answers every request with a 500 and 90 cookies of 60 kB, new names each time."""
    n = 0
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            got = b""
            while b"\r\n\r\n" not in got:
                data = conn.recv(1 << 20)
                if not data:
                    break
                got += data
            n += 1
            head = [b"HTTP/1.1 500 Internal Server Error"]
            head += [f"Set-Cookie: c{n}_{i}={'x' * 60000}; Path=/".encode() for i in range(90)]
            head += [b"Content-Length: 0", b"Connection: close", b"", b""]
            conn.sendall(b"\r\n".join(head))


async def test_cookies_of_a_hostile_prometheus_are_not_kept() -> None:
    """A kept cookie jar grew by megabytes per answer of a hostile server, for ever, and was
    sent back with every query."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    threading.Thread(target=serve_cookies, args=(listener,), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    prom = Prometheus(workers=1)
    try:
        for _ in range(3):
            with pytest.raises(QueryError, match="HTTP 500"):
                await prom.query(url, "up", 10.0)
        jar = prom.sessions[url].cookies
    finally:
        listener.close()
    assert len(jar) == 0


async def test_sessions_are_kept_for_a_bounded_number_of_addresses(
    stubs: list[PromStub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With '*' every address a rollout names gets a session (a connection pool)."""
    monkeypatch.setattr(scheduler, "MAX_SESSIONS", 2)
    made = [stub(stubs, vector(({}, 1))) for _ in range(3)]
    prom = Prometheus(workers=1)
    for s in made:
        await prom.query(s.url, "up", 2.0)
    await prom.query(made[1].url, "up", 2.0)  # the most recently used ones stay
    assert list(prom.sessions) == [made[2].url, made[1].url]


async def test_a_template_evicted_while_another_worker_adds_one_does_not_fail_the_query(
    stubs: list[PromStub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The templates are filled and evicted from the worker threads. Eviction took the oldest
    with `next(iter(templates))`: another worker adding its template between the two (a thread
    switch after `iter()`) made `next()` raise "dictionary changed size during iteration", and
    that round's guardrail query for the address failed. Simulated here: the insert is made
    at the moment an iteration starts."""
    monkeypatch.setattr(scheduler, "MAX_SESSIONS", 1)  # two templates at most
    own = stub(stubs, vector(({}, 1)))
    prom = Prometheus(workers=1, config=PrometheusConfig(own=own.url))
    await prom.query(own.url, "a", 2.0, reuse=True)
    await prom.query(own.url, "b", 2.0, reuse=True)
    other = prom.templates[next(iter(prom.templates))]

    class Racing(type(prom.templates)):  # type: ignore[misc]
        def __iter__(self) -> Any:
            it = super().__iter__()
            super().__setitem__(("http://other", "/api/v1/query", ()), other)
            return it

    prom.templates = Racing(prom.templates)
    await prom.query(own.url, "c", 2.0, reuse=True)  # raised QueryError
    assert own.queries[-1] == "c"
    assert len(prom.templates) <= 2
