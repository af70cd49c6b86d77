"""Prometheus down, slow (timeouts), or answering garbage (invalid JSON, HTTP 500): analysis is
Inconclusive, the rollout holds (onInconclusive: Pause) and is never promoted, and the operator
keeps serving the other rollouts; when Prometheus comes back on the same address the held
rollout resumes by itself."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from e2e_operator import apply, ftr_status, ready_deployment, rollout, wait_for
from rel_support import N, OperatorFactory, record

from ftrollout_dev.localcluster import LocalCluster, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

STEPS = [{"weight": 50, "pause": {"duration": "1s"}}, {"weight": 100, "pause": {"duration": "1s"}}]


def analysed(address: str) -> dict[str, Any]:
    doc = rollout("web", "web", STEPS)
    doc["spec"]["analysis"] = {
        "prometheus": {"address": address, "timeout": "2s"},
        "interval": "1s",
        "onInconclusive": "Pause",
        # vector(): a value without any scrape target, so only reachability matters.
        "metrics": [{"name": "errors", "query": "vector(0.001)", "threshold": {"max": 0.01}}],
    }
    return doc


class BadPrometheus:
    """Answers /api/v1/query with `mode`: invalid-json | http-500 | slow (sleeps 30 s)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.hits += 1
                if outer.mode == "slow":
                    time.sleep(30)
                if outer.mode == "http-500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"internal error")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "success", "data": {"resultType": "vector", "res')

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the operator gave up on a slow answer: a broken pipe is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bad_servers() -> Iterator[dict[str, BadPrometheus]]:
    servers = {m: BadPrometheus(m) for m in ("invalid-json", "http-500", "slow")}
    try:
        yield servers
    finally:
        for s in servers.values():
            s.close()


def held(cluster: LocalCluster, ns: str) -> bool:
    st = ftr_status(cluster, ns, "web")
    conds = {c["type"]: c for c in st.get("conditions") or []}
    healthy = conds.get("AnalysisHealthy", {}).get("status")
    return st.get("phase") == "Paused" and st.get("stepIndex") == 0 and healthy != "True"


def extra_namespace(cluster: LocalCluster, base: str) -> str:
    from conftest import new_namespace  # the fixture module's helper, same directory

    return new_namespace(cluster, base)


def test_broken_prometheus_holds_its_rollout_while_others_progress(
    cluster: LocalCluster,
    namespace: str,
    operators: OperatorFactory,
    bad_servers: dict[str, BadPrometheus],
) -> None:
    spaces = {m: extra_namespace(cluster, f"prom-{m}") for m in bad_servers}
    healthy_ns = namespace
    try:
        for ns in [*spaces.values(), healthy_ns]:
            ready_deployment(cluster, ns, N)
        op = operators(*spaces.values(), healthy_ns)
        t0 = time.monotonic()
        for mode, ns in spaces.items():
            apply(cluster, ns, analysed(bad_servers[mode].url))
        apply(cluster, healthy_ns, rollout("web", "web", STEPS))
        wait_for(lambda: ftr_status(cluster, healthy_ns, "web").get("phase") == "Promoted", 90,
                 "the rollout without analysis to be Promoted")  # fmt: skip
        healthy_done = time.monotonic() - t0
        for mode, ns in spaces.items():
            wait_for(lambda ns=ns: held(cluster, ns), 60, f"{mode}: held at step 1")  # type: ignore[misc]
        time.sleep(8)  # several analysis intervals
        for mode, ns in spaces.items():
            st = ftr_status(cluster, ns, "web")
            assert held(cluster, ns), (mode, st.get("phase"), st.get("message"))
            assert st["analysis"]["inconclusiveRounds"] >= 1, (mode, st["analysis"])
            assert bad_servers[mode].hits >= 1, mode
        assert op.proc is not None
        assert op.proc.poll() is None
        assert "Traceback" not in op.log_path.read_text(errors="replace")
        record("prometheus-garbage-500-slow", healthy_promoted_s=round(healthy_done, 2),
               held={m: ftr_status(cluster, ns, "web").get("phase") for m, ns in spaces.items()},
               hits={m: s.hits for m, s in bad_servers.items()})  # fmt: skip
    finally:
        for ns in spaces.values():
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_prometheus_down_then_back_on_the_same_port_resumes(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, prometheus_factory: Any
) -> None:
    ns = namespace
    port = free_port()
    with socket.socket() as probe:  # nothing listens there: connection refused
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    ready_deployment(cluster, ns, N)
    operators(ns)
    apply(cluster, ns, analysed(f"http://127.0.0.1:{port}"))
    wait_for(lambda: held(cluster, ns), 60, "held at step 1 with Prometheus down")
    time.sleep(5)
    assert held(cluster, ns)
    during = ftr_status(cluster, ns, "web")
    assert during["analysis"]["inconclusiveRounds"] >= 1
    t0 = time.monotonic()
    prometheus_factory(["127.0.0.1:1"], port=port)
    wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Promoted", 120,
             "Promoted once Prometheus is back")  # fmt: skip
    resumed = time.monotonic() - t0
    record("prometheus-down-then-back", resume_after_return_s=round(resumed, 2),
           inconclusive_rounds_while_down=during["analysis"]["inconclusiveRounds"])  # fmt: skip
