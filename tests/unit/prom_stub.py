"""A small Prometheus query API on 127.0.0.1 for tests: answers from a function of the PromQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (status, headers, body) for one query
Answer = tuple[int, dict[str, str], bytes]


def vector(*series: tuple[dict[str, str], float | str]) -> Answer:
    result = [{"metric": labels, "value": [0, str(v)]} for labels, v in series]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


class PromStub:
    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.answer = answer
        self.queries: list[str] = []
        self.headers: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                promql = (parse_qs(parts.query).get("query") or [""])[0]
                stub.queries.append(promql)
                stub.headers.append(dict(self.headers.items()))
                status, headers, body = stub.answer(promql)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


Series = tuple[dict[str, str], float | str]


def probe_answer(
    promql: str,
    *,
    gil: Sequence[Series] = (),
    build: Sequence[Series] = (),
    fallback: Sequence[Series] = (),
    incidents: Sequence[Series] = (),
) -> Answer:
    """What a Prometheus holding these probe series (already aggregated per pod) answers to the
    operator's guardrail queries (plan.prometheus.GUARD_QUERY and REPORTING_QUERY), with the
    queries' filters applied as PromQL applies them (NaN != 0 holds there too)."""
    from ftrollout.plan.prometheus import GUARD_LABEL, GUARD_PARTS, GUARD_QUERY, REPORTING_QUERY

    if promql == REPORTING_QUERY:
        return vector(*((labels, 1) for labels, _ in gil))
    asked = {k for k, q in GUARD_PARTS.items() if q == promql}
    if promql == GUARD_QUERY:
        asked = set(GUARD_PARTS)
    if not asked:
        return vector()

    def part(kind: str, series: Sequence[Series], keep: Callable[[float], bool]) -> list[Series]:
        return [({**labels, GUARD_LABEL: kind}, v) for labels, v in series if keep(float(v))]

    out = [
        *part("gil", gil, lambda v: v != 0),
        *part("build", build, lambda v: v != 1),
        *part("fallback", fallback, lambda v: v > 0),
        *part("incidents", incidents, lambda v: v > 0),
    ]
    if gil:
        out.append(({GUARD_LABEL: "reporting"}, len(gil)))
    return vector(*(s for s in out if s[0][GUARD_LABEL] in asked))
