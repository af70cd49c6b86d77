"""`kubectl ftr`: views from status dicts (pure), KPI maths, and every command against a fake API.

The fake API is a small HTTP server speaking just enough of the Kubernetes REST API (rollouts,
events, pods, Status errors) for the real kubernetes client, so argument handling, kubeconfig
loading, the action patch and the one-line errors are tested without a cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftrollout.cli import plugin, report
from ftrollout.model import api
from ftrollout.plan.metrics import TRACK_FREE_THREADED, TRACK_STANDARD, Samples, judge_samples

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
ACTION = plugin.ANNOTATION_ACTION
T0 = "2025-06-01T11:00:00Z"


def sample(**status_overrides: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "revision": "5d8f7c",
        "phase": "Paused",
        "stepIndex": 1,
        "weight": 50,
        "stepStartedAt": "2025-06-01T11:55:00Z",
        "replicas": {
            "target": 10,
            "standard": 5,
            "freeThreaded": 5,
            "ready": 10,
            "standardReady": 5,
            "freeThreadedReady": 5,
        },
        "gil": {
            "pods": 5,
            "disabled": 4,
            "enabled": 1,
            "unknown": 0,
            "fallbackModules": ["legacyext"],
            "summary": "ON(1)",
        },
        "races": {
            "incidents": 1,
            "budget": 3,
            "window": "1h",
            "summary": "1/3",
            "recent": [
                {
                    "pod": "web-ft-abc-1",
                    "exitCode": 139,
                    "source": "Termination",
                    "time": "2025-06-01T11:58:00Z",
                }
            ],
        },
        "analysis": {
            "failedRounds": 1,
            "inconclusiveRounds": 0,
            "lastRound": "2025-06-01T11:59:30Z",
            "metrics": [
                {
                    "name": "p99-latency",
                    "phase": "Successful",
                    "freeThreaded": 0.121,
                    "standard": 0.11,
                    "message": "+10.0% <= +12%",
                    "time": "2025-06-01T11:59:30Z",
                },
                {
                    "name": "throughput-per-core",
                    "phase": "Failed",
                    "freeThreaded": 150.0,
                    "standard": 120.0,
                    "message": "ok",
                    "time": "2025-06-01T11:59:30Z",
                },
            ],
        },
        "preflight": {
            "phase": "Passed",
            "image": "example/web:3.14t",
            "freeThreadingBuild": True,
            "pythonVersion": "3.14.0 free-threading build (main)",
            "modules": [
                {"name": "numpy", "imported": True, "version": "2.3.0", "gilEnabled": False},
                {"name": "orjson", "imported": True, "version": "3.10", "gilEnabled": True},
            ],
            "message": "1 of 2 modules keep the GIL off",
        },
        "conditions": [
            {
                "type": "ModeIntegrity",
                "status": "False",
                "reason": "GILFallback",
                "message": "1 free-threaded pod runs with the GIL on (legacyext)",
                "lastTransitionTime": "2025-06-01T11:58:30Z",
            },
            {
                "type": "Available",
                "status": "True",
                "reason": "CapacityMet",
                "message": "10/10 Ready",
                "lastTransitionTime": T0,
            },
        ],
        "message": "paused (GILFallback): 1 pod with the GIL on",
    }
    status.update(status_overrides)
    return {
        "apiVersion": "freethreaded.dev/v1alpha1",
        "kind": "FreeThreadedRollout",
        "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": T0},
        "spec": {
            "targetRef": {"name": "web"},
            "freeThreaded": {"image": "example/web:3.14t", "container": "app"},
            "steps": [
                {"weight": 10, "pause": {"duration": "1m"}},
                {"weight": 50, "pause": {}},
                {"weight": 100},
            ],
            "analysis": {
                "failureLimit": 2,
                "metrics": [
                    {
                        "name": "p99-latency",
                        "query": "q",
                        "compare": {"maxIncreasePercent": 12},
                    },
                    {
                        "name": "throughput-per-core",
                        "query": "q",
                        "compare": {"maxDecreasePercent": 5},
                    },
                    {"name": "error-ratio", "query": "q", "threshold": {"max": 0.01}},
                ],
            },
            "guardrails": {"dependencyGate": {"modules": ["numpy", "orjson", "lxml"]}},
        },
        "status": status,
    }


EVENTS = [
    {
        "type": "Normal",
        "reason": "StepReached",
        "message": "step 2/3 (50%): 5 free-threaded Ready",
        "lastTimestamp": "2025-06-01T11:55:00Z",
    },
    {
        "type": "Warning",
        "reason": "GILFallback",
        "message": "web-ft-abc-2 re-enabled the GIL (legacyext)",
        "lastTimestamp": "2025-06-01T11:58:30Z",
    },
    {
        "type": "Normal",
        "reason": "RolloutStarted",
        "message": "revision 5d8f7c",
        "lastTimestamp": T0,
    },
]


def text_of(renderable: Any) -> str:
    return plugin.render_text(renderable, width=160)


# ------------------------------------------------------------------------------ pure views


def test_age_is_kubectl_style() -> None:
    assert plugin.age("2025-06-01T11:59:18Z", NOW) == "42s"
    assert plugin.age("2025-06-01T11:55:00Z", NOW) == "5m"
    assert plugin.age("2025-06-01T09:00:00Z", NOW) == "3h"
    assert plugin.age("2025-05-28T12:00:00Z", NOW) == "4d"
    assert plugin.age(None, NOW) == "-"
    assert plugin.age("garbage", NOW) == "-"


def test_get_table_columns_and_row() -> None:
    out = text_of(plugin.rollouts_table([sample()], NOW, all_namespaces=False))
    header, row = out.splitlines()[:2]
    assert header.split() == plugin.GET_COLUMNS
    assert row.split() == [
        "web",
        "web",
        "Paused",
        "2/3",
        "50%",
        "5/5",
        "5/5",
        "ON(1)",
        "1/3",
        "60m",
    ]


def test_get_table_all_namespaces_and_fresh_rollout() -> None:
    fresh = {
        "metadata": {"name": "api", "namespace": "a", "creationTimestamp": T0},
        "spec": {"targetRef": {"name": "api"}, "freeThreaded": {"image": "x"}, "steps": []},
    }
    out = text_of(plugin.rollouts_table([sample(), fresh], NOW, all_namespaces=True))
    lines = out.splitlines()
    assert lines[0].split()[0] == "NAMESPACE"
    assert lines[1].split()[:4] == ["a", "api", "api", "Pending"]  # sorted by namespace
    assert lines[1].split()[4:9] == ["-", "-", "0/0", "0/0", "-"]
    assert lines[2].split()[:2] == ["shop", "web"]


def test_status_view_shows_everything_a_user_needs() -> None:
    out = text_of(plugin.status_view(sample(), EVENTS, NOW))
    assert "FreeThreadedRollout shop/web" in out
    assert "Paused  paused (GILFallback): 1 pod with the GIL on" in out
    assert "deployment/web (standard) → deployment/web-ft (free-threaded)" in out
    assert "example/web:3.14t (container app)" in out
    assert "2/3, weight 50%, revision 5d8f7c" in out
    assert "N=10   standard 5/5 Ready   free-threaded 5/5 Ready" in out
    assert "off in 4/5 free-threaded pods, ON in 1 (GIL fallback); re-enabled by: legacyext" in out
    assert "1/3 incidents in 1h" in out
    assert "web-ft-abc-1: exit 139 at 2025-06-01T11:58:00Z" in out
    # Steps: done, current (with marker), to come.
    steps = out.split("Steps", 1)[1].split("Analysis", 1)[0].splitlines()
    step_rows = [line.split() for line in steps if line.strip() and "STEP" not in line]
    assert step_rows[0][:4] == ["✓", "1", "10%", "1m"]
    assert step_rows[1][:5] == ["▶", "2", "50%", "until", "promote"]
    assert step_rows[1][5:] == ["←", "current,", "reached", "5m", "ago"]
    assert step_rows[2][:3] == ["3", "100%", "none"]
    # Analysis with values and the check from the spec; a metric with no round yet.
    assert "failed rounds 1, limit 2; values as of 30s ago" in out
    assert "p99-latency          Successful  0.121          0.11      ≤ +12% vs standard" in out
    assert "≥ -5% vs standard" in out
    assert "error-ratio" in out
    assert "max 0.01" in out
    assert "no round yet" in out
    # Preflight, conditions, events (oldest first, last N).
    assert "Passed — 3.14.0 free-threading build (main)" in out
    assert "numpy 2.3.0 ✓, orjson 3.10 ✗" in out
    assert "ModeIntegrity  False   GILFallback" in out
    events = out.split("Events", 1)[1]
    assert events.index("RolloutStarted") < events.index("StepReached") < events.index("GILFall")


def test_status_view_of_a_promoted_and_a_rolled_back_rollout() -> None:
    promoted = sample(phase="Promoted", stepIndex=2, weight=100, message="promoted", promotedAt=T0)
    out = text_of(plugin.status_view(promoted, [], NOW))
    assert f"Promoted   60m ago ({T0})" in out
    steps = out.split("Steps", 1)[1].split("Analysis", 1)[0]
    assert steps.count("✓") == 3
    assert "▶" not in steps
    assert "Events (last 8)\nnone" in out

    rolled = sample(
        phase="RolledBack",
        rollback={"reason": "RaceBudget", "message": "4 incidents > 3", "time": T0},
    )
    out = text_of(plugin.status_view(rolled, [], NOW))
    assert "RolledBack" in out
    assert f"RaceBudget: 4 incidents > 3 ({T0})" in out


def test_status_view_before_the_operator_wrote_status() -> None:
    obj = sample()
    obj.pop("status")
    out = text_of(plugin.status_view(obj, [], NOW))
    assert "Pending" in out
    assert "no free-threaded pods yet" in out
    assert "Races     -" in out


# ------------------------------------------------------------------------------------ KPIs


def spec_status(obj: dict[str, Any]) -> tuple[api.RolloutSpec, api.RolloutStatus]:
    return api.parse_spec(obj["spec"]), api.parse_status(obj["status"])


def test_kpis_from_status_and_analysis() -> None:
    spec, status = spec_status(sample())
    kpis = {k.key: k for k in report.compute(spec, status, None, "no Prometheus: why")}
    assert kpis["throughput"].value == pytest.approx(25.0)
    assert kpis["throughput"].text == "+25.0 %"
    assert "analysis metric throughput-per-core" in kpis["throughput"].detail
    assert kpis["p99"].value == pytest.approx(10.0)
    assert kpis["rss"].text == "n/a (no Prometheus: why)"
    # 4 GIL-off free-threaded pods, but at most the 5 Ready ones; of 10 Ready in total.
    assert kpis["gil_off_share"].value == pytest.approx(40.0)
    assert "1 with the GIL ON" in kpis["gil_off_share"].detail
    # 1 incident over 5 free-threaded pods in 1h.
    assert kpis["incident_rate"].value == pytest.approx(0.2)
    assert kpis["incident_rate"].text == "0.2 per pod-hour"
    # numpy verified; orjson re-enabled the GIL; lxml not reported.
    assert kpis["deps_verified"].value == pytest.approx(100 / 3)
    assert "not verified: orjson, lxml" in kpis["deps_verified"].detail


def test_kpis_from_prometheus_and_missing_values() -> None:
    obj = sample()
    obj["status"]["analysis"]["metrics"] = []
    spec, status = spec_status(obj)
    prom = {
        "throughput": report.TrackValues(90.0, 100.0, source="Prometheus"),
        "p99": report.TrackValues(None, None, problem="Prometheus: free-threaded: no series"),
        "rss": report.TrackValues(300 * 2**20, 200 * 2**20, source="Prometheus"),
    }
    kpis = {k.key: k for k in report.compute(spec, status, prom, "")}
    assert kpis["throughput"].text == "-10.0 %"
    assert kpis["p99"].text == "n/a (Prometheus: free-threaded: no series)"
    assert kpis["rss"].text == "+50.0 %"
    assert "free-threaded 300.0 MiB vs standard 200.0 MiB" in kpis["rss"].detail


def test_kpis_without_status_or_gate_say_why() -> None:
    obj = sample()
    obj.pop("status")
    del obj["spec"]["guardrails"]
    spec = api.parse_spec(obj["spec"])
    kpis = {k.key: k for k in report.compute(spec, api.RolloutStatus(), None, "no Prometheus")}
    assert all(not k.available for k in kpis.values())
    assert kpis["gil_off_share"].text == "n/a (the operator has not reported status yet)"
    assert kpis["deps_verified"].text == "n/a (no guardrails.dependencyGate in the spec)"
    assert kpis["incident_rate"].text.startswith("n/a (")


def test_kpi_edge_cases() -> None:
    assert report.relative_delta(1.0, 0.0) is None
    zero = report.delta_kpi("p99", report.TrackValues(1.0, 0.0), "x")
    assert zero.text == "n/a (the standard track's value is 0)"
    spec, status = spec_status(sample(preflight=None))
    assert report.deps_verified(spec, status).text == "n/a (preflight not run yet, 0 of 3)"
    promoted = sample(
        replicas={
            "target": 4,
            "standard": 0,
            "freeThreaded": 4,
            "ready": 4,
            "freeThreadedReady": 4,
        },
        gil={"pods": 4, "disabled": 4, "summary": "off"},
    )
    _, status = spec_status(promoted)
    assert report.gil_off_share(status).text == "100.0 %"
    no_pods = sample(replicas={"target": 4, "standard": 4, "ready": 4, "standardReady": 4})
    _, status = spec_status(no_pods)
    assert report.incident_rate(status).text == "1 in 1h"


def test_prometheus_values_query_both_tracks_with_the_pods() -> None:
    seen: list[str] = []

    def fake(url: str, q: str) -> Any:
        seen.append(q)
        value = "2" if "web-ft-1" in q else "4"
        if "container_memory_rss" in q:
            return []  # no cAdvisor: the fallback query is used
        return [{"metric": {}, "value": [0, value]}]

    pods = {TRACK_FREE_THREADED: ["web-ft-1"], TRACK_STANDARD: ["web-1", "web-2"]}
    values, why = plugin.prometheus_values(
        "http://prom", "shop", "web", pods, report.DEFAULT_QUERIES, query=fake
    )
    assert why == ""
    assert values is not None
    assert values["throughput"] == report.TrackValues(2.0, 4.0, source="Prometheus http://prom")
    assert values["rss"].free_threaded == 2.0
    assert any("process_resident_memory_bytes" in q for q in seen)
    assert any('pod=~"web-1|web-2"' in q for q in seen)

    values, why = plugin.prometheus_values(
        "http://prom", "shop", "web", {TRACK_STANDARD: ["a"]}, report.DEFAULT_QUERIES, query=fake
    )
    assert values is None
    assert why == "no running free-threaded pods to compare"

    def down(url: str, q: str) -> Any:
        raise OSError("connection refused")

    values, why = plugin.prometheus_values(
        "http://prom", "shop", "web", pods, report.DEFAULT_QUERIES, query=down
    )
    assert values is None
    assert why == "Prometheus at http://prom unreachable: connection refused"


# ------------------------------------------------------------------ commands on a fake API


class FakeApi:
    def __init__(self) -> None:
        self.rollouts: dict[tuple[str, str], dict[str, Any]] = {("shop", "web"): sample()}
        self.events: list[dict[str, Any]] = EVENTS
        self.pods: list[dict[str, Any]] = []
        self.deployments: list[dict[str, Any]] = []
        self.patches: list[tuple[str, str, Any]] = []
        self.forbidden_namespaces = {"secret-ns"}
        self.crd_installed = True
        # Successive states of shop/web, one per GET (the last one stays): a rollout moving on.
        self.states: list[dict[str, Any]] = []
        # Stands in for the operator: called with each PATCH body after it is recorded.
        self.on_patch: Callable[[dict[str, Any]], None] | None = None
        # A narrow RBAC role: may get and patch rollouts, not list events.
        self.events_forbidden = False


def _status_body(code: int, reason: str, message: str, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if name:
        body["details"] = {"name": name, "group": api.GROUP, "kind": api.PLURAL}
    return body


def make_handler(fake: FakeApi) -> type[BaseHTTPRequestHandler]:
    prefix = f"/apis/{api.GROUP}/{api.VERSION}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self) -> tuple[str | None, str | None, str]:
            path = self.path.split("?", 1)[0]
            parts = path.strip("/").split("/")
            ns = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
            return ns, parts[-1], path

        def do_GET(self) -> None:
            ns, last, path = self.route()
            if ns in fake.forbidden_namespaces:
                msg = f'{api.PLURAL}.{api.GROUP} is forbidden: User "dev" cannot get resource "{api.PLURAL}" in API group "{api.GROUP}" in the namespace "{ns}"'
                return self.send(403, _status_body(403, "Forbidden", msg))
            if path.startswith(prefix):
                if not fake.crd_installed:
                    return self.send(
                        404,
                        _status_body(
                            404, "NotFound", "the server could not find the requested resource"
                        ),
                    )
                if last == api.PLURAL:
                    items = [o for (n, _), o in fake.rollouts.items() if ns in (None, n)]
                    return self.send(200, {"kind": "List", "items": items, "metadata": {}})
                if (ns, last) == ("shop", "web") and fake.states:
                    fake.rollouts[("shop", "web")] = (
                        fake.states.pop(0) if len(fake.states) > 1 else fake.states[0]
                    )
                obj = fake.rollouts.get((ns or "", last))
                if obj is None:
                    return self.send(404, _status_body(404, "NotFound", "not found", last))
                return self.send(200, obj)
            if last == "events":
                if fake.events_forbidden:
                    msg = 'events is forbidden: User "dev" cannot list resource "events"'
                    return self.send(403, _status_body(403, "Forbidden", msg))
                return self.send(200, {"kind": "EventList", "items": fake.events, "metadata": {}})
            if last == "deployments":
                return self.send(
                    200, {"kind": "DeploymentList", "items": fake.deployments, "metadata": {}}
                )
            if last == "pods":
                return self.send(200, {"kind": "PodList", "items": fake.pods, "metadata": {}})
            return self.send(404, _status_body(404, "NotFound", "no route"))

        def do_PATCH(self) -> None:
            ns, last, _ = self.route()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.patches.append((f"{ns}/{last}", self.headers["Content-Type"], body))
            if fake.on_patch is not None:
                fake.on_patch(body)
            return self.send(200, fake.rollouts[(ns or "", last)])

    return Handler


@pytest.fixture
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    fake = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
        ],
        "users": [{"name": "dev", "user": {"token": "t"}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "dev", "namespace": "shop"}},
            {"name": "other", "context": {"cluster": "fake", "user": "dev", "namespace": "other"}},
        ],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("FTR_PROMETHEUS_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "160")
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = plugin.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_get_uses_the_contexts_namespace(fake_api: FakeApi, capsys: Any) -> None:
    code, out, err = run(capsys, "get")
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[:3] == ["web", "web", "Paused"]
    code, out, err = run(capsys, "get", "-A")
    assert out.splitlines()[0].split()[0] == "NAMESPACE"
    code, out, err = run(capsys, "--context", "other", "get")
    assert (code, out) == (0, "")
    assert err.strip() == "No FreeThreadedRollouts found in namespace other."


def test_status_prints_the_view(fake_api: FakeApi, capsys: Any) -> None:
    code, out, err = run(capsys, "status", "web")
    assert code == 0, err
    assert "FreeThreadedRollout shop/web" in out
    assert "GILFallback" in out
    code, out, _ = run(capsys, "status", "web", "--watch", "--timeout", "1s", "--interval", "100ms")
    assert code == 0
    assert out.count("FreeThreadedRollout shop/web") == 1  # unchanged view printed once


def test_status_watch_stops_when_the_rollout_is_done(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.rollouts[("shop", "web")] = sample(phase="Promoted")
    code, out, _ = run(capsys, "status", "web", "-w")  # would block forever otherwise
    assert code == 0
    assert "Promoted" in out


@pytest.mark.parametrize(
    ("argv", "action", "says"),
    [
        (["promote", "web"], "promote", "promotion to the next step requested"),
        (
            ["promote", "web", "--full"],
            "promote-full",
            "full promotion requested, skipping the remaining steps and pauses",
        ),
        (["pause", "web"], "pause", "pause requested"),
        (["resume", "web"], "resume", "resume requested"),
        (["rollback", "web"], "rollback", "rollback requested"),
        (["retry", "web", "-n", "shop"], "retry", "retry requested"),
    ],
)
def test_actions_set_the_annotation_and_print_one_line(
    fake_api: FakeApi,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    action: str,
    says: str,
) -> None:
    monkeypatch.setattr(plugin, "request_id", lambda: "20300101T000000Z-a1b2c3")
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    request = f"{action}@20300101T000000Z-a1b2c3"  # one request: applied exactly once
    assert out == f"freethreadedrollout shop/web: {says} (freethreaded.dev/action={request})\n"
    assert fake_api.patches == [
        (
            "shop/web",
            "application/merge-patch+json",
            {"metadata": {"annotations": {"freethreaded.dev/action": request}}},
        )
    ]


def test_each_action_request_has_its_own_id() -> None:
    assert plugin.request_id() != plugin.request_id()


def test_report_prints_kpis(fake_api: FakeApi, capsys: Any) -> None:
    code, out, err = run(capsys, "report", "web")
    assert code == 0, err
    assert "Adoption KPIs shop/web  (phase Paused, weight 50%)" in out
    for title in report.TITLES.values():
        assert title in out
    assert "+25.0 %" in out
    assert "n/a (no Prometheus: pass --prometheus-url" in " ".join(out.split())
    code, out, _ = run(capsys, "report", "web", "-o", "json")
    data = {k["key"]: k for k in json.loads(out)}
    assert data["throughput"]["value"] == pytest.approx(25.0)
    assert data["rss"]["value"] is None


def test_report_with_an_unreachable_prometheus(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.pods = [
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "labels": {"pod-template-hash": "h"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": f"{owner}-h"}],
            },
            "status": {"phase": "Running"},
        }
        for name, owner in (("web-h-1", "web"), ("web-ft-h-1", "web-ft"))
    ]
    code, out, err = run(capsys, "report", "web", "--prometheus-url", "http://127.0.0.1:9")
    assert code == 0, err
    assert "n/a (Prometheus at http://127.0.0.1:9 unreachable" in " ".join(out.split())


def promoted_sample() -> dict[str, Any]:
    """Promoted a while ago: the latest round compared free-threaded pods with the standard
    value kept from 50 %; the last round that measured both tracks is kept with its time."""
    kept_at = "2025-06-01T11:40:00Z"
    return sample(
        phase="Promoted",
        weight=100,
        promotedAt="2025-06-01T11:45:00Z",
        replicas={"target": 10, "freeThreaded": 10, "ready": 10, "freeThreadedReady": 10},
        analysis={
            "lastRound": "2025-06-01T11:44:00Z",
            "metrics": [
                {
                    "name": "p99-latency",
                    "phase": "Successful",
                    "freeThreaded": 0.2,
                    "standard": 0.1,
                    "message": "against the kept standard value",
                    "time": "2025-06-01T11:44:00Z",
                }
            ],
            "lastStandard": [{"name": "p99-latency", "value": 0.1}],
            "lastComparison": {
                "time": kept_at,
                "weight": 50,
                "metrics": [
                    {"name": "p99-latency", "freeThreaded": 0.121, "standard": 0.11},
                    {"name": "throughput-per-core", "freeThreaded": 150.0, "standard": 120.0},
                ],
            },
        },
    )


def test_report_on_a_promoted_rollout_shows_the_kept_comparison_with_its_time(
    fake_api: FakeApi, capsys: Any
) -> None:
    fake_api.rollouts[("shop", "web")] = promoted_sample()
    # Only free-threaded pods are left: Prometheus has nothing to compare now.
    fake_api.pods = [
        {
            "metadata": {
                "name": "web-ft-h-1",
                "namespace": "shop",
                "labels": {"pod-template-hash": "h"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-ft-h"}],
            },
            "status": {"phase": "Running"},
        }
    ]
    code, out, err = run(capsys, "report", "web", "--prometheus-url", "http://127.0.0.1:9")
    assert code == 0, err
    text = " ".join(out.split())
    assert "phase Promoted" in text
    assert "+10.0 %" in text  # p99 from the kept comparison, not +100 % against a kept value
    assert "+25.0 %" in text  # throughput
    assert "last measured on both tracks at 2025-06-01T11:40:00Z (at 50% free-threaded)" in text
    code, out, _ = run(capsys, "report", "web", "-o", "json", "--prometheus-url", "http://x:9")
    data = {k["key"]: k for k in json.loads(out)}
    assert data["p99"]["value"] == pytest.approx(10.0)
    assert "2025-06-01T11:40:00Z" in data["p99"]["detail"]
    assert data["rss"]["value"] is None
    assert "no running standard pods to compare" in data["rss"]["text"]
    assert "kept from 2025-06-01T11:40:00Z has no analysis metric" in data["rss"]["text"]


def test_a_comparison_kept_during_the_bake_says_so() -> None:
    obj = promoted_sample()
    obj["status"]["analysis"]["lastComparison"]["bake"] = True
    spec, status = spec_status(obj)
    kpis = {k.key: k for k in report.compute(spec, status, None, "no Prometheus")}
    assert "during the bake, against the standard replicas kept warm" in kpis["p99"].detail


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "nope"], 'error: freethreadedrollout "nope" not found in namespace "shop"'),
        (["promote", "nope"], 'error: freethreadedrollout "nope" not found in namespace "shop"'),
        (
            ["get", "-n", "secret-ns"],
            'error: forbidden: freethreadedrollouts.freethreaded.dev is forbidden: User "dev" cannot get',
        ),
        (["report", "web", "--query", "bogus=up"], "error: --query expects NAME=PROMQL"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    fake_api: FakeApi, capsys: Any, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert fake_api.patches == []


def test_missing_crd_is_explained(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.crd_installed = False
    code, _, err = run(capsys, "get")
    assert code == 1
    assert err.startswith("error: the FreeThreadedRollout CRD is not installed")


def test_no_cluster_and_no_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = run(capsys, "--kubeconfig", str(tmp_path / "missing"), "get")
    assert code == 1
    assert err.startswith(f"error: no usable Kubernetes configuration in {tmp_path / 'missing'}")
    assert err.count("\n") == 1

    dead = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    (tmp_path / "dead").write_text(yaml.safe_dump(dead))
    code, _out, err = run(capsys, "--kubeconfig", str(tmp_path / "dead"), "status", "web")
    assert code == 1
    assert err.startswith("error: cannot reach the Kubernetes API at http://127.0.0.1:9")
    assert err.count("\n") == 1


# ------------------------------------------------------------------------ --wait for pipelines


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        ({"phase": "Promoted"}, 0, "freethreadedrollout shop/web promoted"),
        (
            {
                "phase": "RolledBack",
                "rollback": {"reason": "RaceBudget", "message": "4 incidents > 3", "time": T0},
            },
            plugin.EXIT_ROLLED_BACK,
            "error: freethreadedrollout shop/web rolled back (RaceBudget): 4 incidents > 3",
        ),
        (
            {"phase": "Failed", "message": "invalid spec: spec.steps: at least one step"},
            plugin.EXIT_FAILED,
            "error: freethreadedrollout shop/web failed: invalid spec: spec.steps: at least",
        ),
    ],
)
def test_status_wait_exit_code_is_the_outcome(
    fake_api: FakeApi, capsys: Any, status: dict[str, Any], code: int, says: str
) -> None:
    progressing = sample(phase="Progressing", message="step 2/3 scaling")
    fake_api.states = [progressing, progressing, sample(**status)]
    got, out, err = run(capsys, "status", "web", "--wait", "--interval", "10ms")
    assert got == code, err
    lines = out.splitlines()
    # One progress line per change (the unchanged second poll prints nothing), no live view.
    assert "shop/web Progressing step 2/3 weight 50%" in lines[0]
    assert status["phase"] in lines[1]
    assert "FreeThreadedRollout shop/web" not in out
    assert (out + err).count(says) == 1
    assert len(set(plugin.EXIT_CODES)) == len(plugin.EXIT_CODES)


def test_status_wait_times_out_with_its_own_code(fake_api: FakeApi, capsys: Any) -> None:
    code, out, err = run(
        capsys, "status", "web", "--wait", "--timeout", "200ms", "--interval", "50ms"
    )
    assert code == plugin.EXIT_TIMEOUT
    assert out.count("shop/web Paused") == 1
    assert err.startswith("error: timed out after 0.2s: freethreadedrollout shop/web still Paused")


def test_status_wait_ignores_a_phase_of_an_older_generation(fake_api: FakeApi, capsys: Any) -> None:
    stale = sample(phase="Promoted", observedGeneration=1)
    stale["metadata"]["generation"] = 2  # e.g. right after `set image`
    fresh = sample(phase="RolledBack", observedGeneration=2)
    fresh["metadata"]["generation"] = 2
    fake_api.states = [stale, fresh]
    code, _, _ = run(capsys, "status", "web", "--wait", "--interval", "10ms")
    assert code == plugin.EXIT_ROLLED_BACK


def test_status_wait_with_json_keeps_stdout_for_the_object(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.states = [sample(phase="Promoted")]
    code, out, err = run(capsys, "status", "web", "--wait", "-o", "json")
    assert code == 0
    assert json.loads(out)["status"]["phase"] == "Promoted"
    assert "shop/web Promoted" in err


def _ready(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T0,
    }


def baking_sample(ready: dict[str, Any]) -> dict[str, Any]:
    return sample(
        phase="Promoted",
        weight=100,
        stepIndex=2,
        message="promoted: all 10 replicas free-threaded",
        bakeUntil="2025-06-01T13:00:00Z",
        conditions=[ready],
    )


BAKING = _ready(
    "Unknown",
    "Baking",
    "promoted; baking until 2025-06-01T13:00:00Z: a guardrail breach still rolls back",
)


def test_status_wait_succeeds_only_when_the_bake_is_over(fake_api: FakeApi, capsys: Any) -> None:
    """Promoted while baking is not the end: a guardrail can still roll back (review of #21)."""
    fake_api.states = [
        baking_sample(BAKING),
        baking_sample(BAKING),
        baking_sample(_ready("True", "Promoted", "promoted: all 10 replicas free-threaded")),
    ]
    code, out, err = run(capsys, "status", "web", "--wait", "--interval", "10ms")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith(
        "promoted: all 10 replicas free-threaded; not Ready yet (Baking): promoted; baking until "
        "2025-06-01T13:00:00Z: a guardrail breach still rolls back"
    )
    assert "not Ready" not in lines[1]
    assert lines[2] == "freethreadedrollout shop/web promoted"


def test_status_wait_times_out_during_the_bake_and_says_so(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.states = [baking_sample(BAKING)]
    code, _, err = run(
        capsys, "status", "web", "--wait", "--timeout", "100ms", "--interval", "20ms"
    )
    assert code == plugin.EXIT_TIMEOUT
    assert err == (
        "error: timed out after 0.1s: freethreadedrollout shop/web promoted but not Ready yet "
        "(Baking): promoted; baking until 2025-06-01T13:00:00Z: a guardrail breach still rolls "
        "back\n"
    )


def test_status_wait_and_watch_keep_going_while_free_threaded_pods_become_ready(
    fake_api: FakeApi, capsys: Any
) -> None:
    promoting = _ready("Unknown", "Promoting", "promoted; 7/10 free-threaded replicas Ready")
    fake_api.states = [baking_sample(promoting), baking_sample(promoting)]
    code, _, _ = run(capsys, "status", "web", "--wait", "--timeout", "100ms", "--interval", "20ms")
    assert code == plugin.EXIT_TIMEOUT
    fake_api.states = [baking_sample(promoting)]
    code, out, _ = run(capsys, "status", "web", "-w", "--timeout", "100ms", "--interval", "20ms")
    assert code == 0
    assert "Promoting" in out


OPERATOR_EVENT = {"source": {"component": "ftrollout"}, "reportingComponent": "ftrollout"}


def _answer(
    fake: FakeApi, request: str, outcome: str, message: str, events: list[dict[str, Any]] = ()
) -> None:
    """What the operator does with a request it read: status.recentActions, its Events (each
    naming the request), then the annotation's removal."""
    obj = fake.rollouts[("shop", "web")]
    recent = obj["status"].setdefault("recentActions", [])
    recent.append(
        {"value": request, "outcome": outcome, "message": message, "time": "2030-01-01T00:00:01Z"}
    )
    uid = obj["metadata"].get("uid")
    fake.events = [
        *fake.events,
        *(
            {
                **OPERATOR_EVENT,
                **ev,
                "involvedObject": {"kind": "FreeThreadedRollout", "name": "web", "uid": uid},
                "metadata": {
                    "name": f"web.{len(fake.events) + i}",
                    "annotations": {ACTION: request},
                },
            }
            for i, ev in enumerate(events)
        ),
    ]
    if (obj["metadata"].get("annotations") or {}).get(ACTION) == request:
        obj["metadata"].pop("annotations", None)


def _operator(
    fake: FakeApi, outcome: str, message: str, events: list[dict[str, Any]] = ()
) -> Callable[[dict[str, Any]], None]:
    def act(body: dict[str, Any]) -> None:
        request = ((body.get("metadata") or {}).get("annotations") or {}).get(ACTION)
        if request:
            _answer(fake, request, outcome, message, events)

    return act


def test_action_wait_reports_an_ignored_action_as_an_error(fake_api: FakeApi, capsys: Any) -> None:
    old = {
        **EVENTS[0],
        **OPERATOR_EVENT,
        "metadata": {"name": "web.old", "annotations": {ACTION: "promote@20250601T115900Z-0"}},
        "reason": "ActionIgnored",
    }
    fake_api.events = [old]  # an earlier ignored request does not count
    fake_api.rollouts[("shop", "web")] = sample(phase="Promoted")
    message = "promote: not possible in phase Promoted"
    ignored = {"type": "Normal", "reason": "ActionIgnored", "message": message}
    fake_api.on_patch = _operator(fake_api, "Ignored", message, [ignored])
    code, out, err = run(capsys, "promote", "web", "--wait", "--interval", "10ms")
    assert code == plugin.EXIT_ACTION_IGNORED
    assert "promotion to the next step requested" in out
    assert err == (
        "error: freethreadedrollout shop/web: promote ignored: "
        "promote: not possible in phase Promoted\n"
    )


def test_action_wait_prints_what_the_operator_did(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.events = []
    promoted = {"type": "Normal", "reason": "StepPromoted", "message": "promote: to step 3 (100%)"}
    fake_api.on_patch = _operator(fake_api, "Applied", "promote: to step 3 (100%)", [promoted])
    code, out, err = run(capsys, "promote", "web", "--wait", "--interval", "10ms")
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "Normal StepPromoted: promote: to step 3 (100%)"


def test_action_wait_without_an_operator_times_out(fake_api: FakeApi, capsys: Any) -> None:
    def keep(body: dict[str, Any]) -> None:  # the request stays: no operator removes it
        fake_api.rollouts[("shop", "web")]["metadata"]["annotations"] = dict(
            body["metadata"]["annotations"]
        )

    fake_api.on_patch = keep
    code, _, err = run(
        capsys, "rollback", "web", "--wait", "--timeout", "100ms", "--interval", "20ms"
    )
    assert code == plugin.EXIT_TIMEOUT
    assert "the operator did not act on 'rollback' within 0.1s" in err


def test_action_wait_decides_from_status_without_the_events(fake_api: FakeApi, capsys: Any) -> None:
    """A user who may patch the rollout but not list events (a common narrow role) is told
    the outcome all the same: it is in status.recentActions (it used to need the Events)."""
    fake_api.events_forbidden = True
    fake_api.rollouts[("shop", "web")] = sample(phase="Promoted")
    fake_api.on_patch = _operator(fake_api, "Ignored", "promote: not possible")
    code, _, err = run(capsys, "promote", "web", "--wait", "--interval", "10ms")
    assert code == plugin.EXIT_ACTION_IGNORED
    assert err.endswith("promote ignored: promote: not possible\n")
    fake_api.on_patch = _operator(fake_api, "Applied", "pause requested")
    code, out, err = run(capsys, "pause", "web", "--wait", "--interval", "10ms")
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "applied: pause requested"


def test_applied_action_whose_event_was_lost_is_a_success(
    fake_api: FakeApi, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are best effort, and status.lastAction is cleared as soon as the annotation is
    seen gone: --wait used to see neither and say 7 "not applied" for an applied rollback."""
    fake_api.events = []
    obj = fake_api.rollouts[("shop", "web")]

    def operator(body: dict[str, Any]) -> None:
        request = body["metadata"]["annotations"][ACTION]
        _answer(fake_api, request, "Applied", "manual: rollback requested by the user")
        obj["status"]["phase"] = "RolledBack"
        obj["status"]["lastAction"] = None  # cleared by the next reconcile

    fake_api.on_patch = operator
    code, out, err = run(capsys, "rollback", "web", "--wait", "--interval", "10ms")
    assert (code, err) == (0, "")
    assert "applied: manual: rollback requested by the user" in out


def test_an_action_taken_off_without_a_record_has_an_unknown_outcome(
    fake_api: FakeApi, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The annotation is gone and status has no answer: someone removed it, or an operator
    too old to record it applied it. Never 7 (the reviewer's case: applied, exit 7)."""
    monkeypatch.setattr(plugin, "SETTLE_SECONDS", 0.05)
    fake_api.events = []
    obj = fake_api.rollouts[("shop", "web")]

    def operator(body: dict[str, Any]) -> None:
        obj["status"]["phase"] = "RolledBack"
        obj["status"]["lastAction"] = None
        obj["metadata"].pop("annotations", None)

    fake_api.on_patch = operator
    code, _, err = run(capsys, "rollback", "web", "--wait", "--interval", "10ms")
    assert code == plugin.EXIT_ERROR
    assert "rollback was taken off the rollout, but its outcome is unknown" in err


THEIRS = "pause@20300101T000000Z-ffffff"


def test_action_replaced_by_another_request_answered_first_is_not_applied(
    fake_api: FakeApi, capsys: Any
) -> None:
    """Another user's request was written over ours, and the operator answered it without
    ever answering ours: certain that ours was never read (exit 7)."""
    fake_api.events = []
    obj = fake_api.rollouts[("shop", "web")]
    polls = {"n": 0}

    def other_user_overwrites(body: dict[str, Any]) -> None:
        obj["metadata"]["annotations"] = {ACTION: THEIRS}

    fake_api.on_patch = other_user_overwrites
    real_get = plugin.get_rollout

    def get_rollout(*args: Any) -> dict[str, Any]:
        got = real_get(*args)
        polls["n"] += 1
        if polls["n"] == 3:  # the plugin has seen theirs on the annotation by now
            _answer(fake_api, THEIRS, "Applied", "pause requested")
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugin, "get_rollout", get_rollout)
        code, out, err = run(capsys, "rollback", "web", "--wait", "--interval", "10ms")
    assert code == plugin.EXIT_ACTION_REPLACED, (code, out, err)
    assert err == (
        "error: freethreadedrollout shop/web: rollback was not applied: another request "
        f"replaced it ({THEIRS!r}) before the operator read it\n"
    )


def test_more_answers_than_recent_actions_keeps_make_the_outcome_unknown(
    fake_api: FakeApi, capsys: Any
) -> None:
    """Ours may have been answered and pushed out of the last 5: never a 7 by guess."""
    fake_api.events = []
    obj = fake_api.rollouts[("shop", "web")]

    def busy(body: dict[str, Any]) -> None:
        obj["metadata"]["annotations"] = {ACTION: THEIRS}

    fake_api.on_patch = busy
    real_get = plugin.get_rollout
    polls = {"n": 0}

    def get_rollout(*args: Any) -> dict[str, Any]:
        got = real_get(*args)
        polls["n"] += 1
        if polls["n"] == 3:
            for i in range(api.RECENT_ACTIONS):
                _answer(fake_api, THEIRS if i == 0 else f"pause@{i}", "Applied", "pause")
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plugin, "get_rollout", get_rollout)
        code, _, err = run(capsys, "rollback", "web", "--wait", "--interval", "10ms")
    assert code == plugin.EXIT_ERROR, err
    assert "outcome unknown" in err


def test_action_replaced_and_unanswered_is_unknown_not_replaced(
    fake_api: FakeApi, capsys: Any
) -> None:
    """Replaced, and the operator has answered neither request: it may be acting on ours
    right now, so --wait does not say 7 (it used to, at once)."""
    fake_api.events = []

    def other_user_overwrites(body: dict[str, Any]) -> None:
        fake_api.rollouts[("shop", "web")]["metadata"]["annotations"] = {ACTION: THEIRS}

    fake_api.on_patch = other_user_overwrites
    code, out, err = run(
        capsys, "rollback", "web", "--wait", "--timeout", "300ms", "--interval", "10ms"
    )
    assert code == plugin.EXIT_ERROR, (code, out, err)
    assert f"another request ({THEIRS!r}) replaced it, and the operator has answered" in err


def test_replaced_after_the_operator_read_ours_is_applied(
    fake_api: FakeApi, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator read our promote; while it acts on it another user's pause lands on the
    annotation. The operator answers ours, then theirs: ours was applied (exit 0), where the
    plugin used to exit 7 at its first sight of theirs."""
    monkeypatch.setattr(plugin, "request_id", lambda: "20300101T000000Z-a1b2c3")
    ours = "promote@20300101T000000Z-a1b2c3"
    fake_api.events = []
    obj = fake_api.rollouts[("shop", "web")]

    def operator_finishes_ours_then_theirs() -> None:
        _answer(fake_api, ours, "Applied", "promote: to step 2 (50%)")
        time.sleep(0.1)
        _answer(fake_api, THEIRS, "Applied", "pause requested")

    def patched(body: dict[str, Any]) -> None:
        obj["metadata"]["annotations"] = {ACTION: THEIRS}  # the operator has read ours
        threading.Timer(0.15, operator_finishes_ours_then_theirs).start()

    fake_api.on_patch = patched
    code, out, err = run(
        capsys, "promote", "web", "--wait", "--timeout", "5s", "--interval", "10ms"
    )
    assert (code, err) == (0, ""), out
    assert "applied: promote: to step 2 (50%)" in out


def test_a_forged_event_does_not_make_wait_succeed(
    fake_api: FakeApi, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any namespace user may create Events, and our request id is on the rollout for anyone
    who can read it: an Event never decides the outcome (it used to: exit 0 for a rollback
    that was replaced and never applied)."""
    monkeypatch.setattr(plugin, "request_id", lambda: "20300101T000000Z-a1b2c3")
    ours = "rollback@20300101T000000Z-a1b2c3"
    fake_api.events = []
    obj = fake_api.rollouts[("shop", "web")]
    obj["metadata"]["uid"] = "uid-web"

    def attacker(body: dict[str, Any]) -> None:
        obj["metadata"]["annotations"] = {ACTION: THEIRS}  # ours replaced: never applied
        fake_api.events = [
            {
                **OPERATOR_EVENT,  # even claiming to be the operator
                "metadata": {"name": "web.forged", "annotations": {ACTION: ours}},
                "involvedObject": {"kind": "FreeThreadedRollout", "name": "web", "uid": "uid-web"},
                "type": "Warning",
                "reason": "RolledBack",
                "message": "manual: rolled back",
            }
        ]

    fake_api.on_patch = attacker
    code, out, err = run(
        capsys, "rollback", "web", "--wait", "--timeout", "300ms", "--interval", "10ms"
    )
    assert code != 0, (code, out, err)
    assert "RolledBack" not in out


def test_only_the_operators_events_about_this_rollout_answer_a_request() -> None:
    ev = {
        **OPERATOR_EVENT,
        "metadata": {"annotations": {ACTION: "pause@x"}},
        "involvedObject": {"uid": "u1"},
    }
    assert plugin.answers(ev, "pause@x", "u1")
    assert not plugin.answers(ev, "pause@y", "u1")
    assert not plugin.answers(ev, "pause@x", "u2")  # another rollout of that name, deleted
    forged = {**ev, "source": {"component": "mallory"}, "reportingComponent": "mallory"}
    assert not plugin.answers(forged, "pause@x", "u1")


# ------------------------------------------------------------------------- lint: nulls (#21)

NULL_PAUSE = (
    "apiVersion: freethreaded.dev/v1alpha1\nkind: FreeThreadedRollout\nmetadata: {name: x}\n"
    "spec:\n  targetRef: {name: w}\n  freeThreaded: {image: x}\n  steps:\n"
    "  - weight: 50\n    pause:\n  - weight: 100\n"
)


def test_lint_flags_a_null_pause_that_silently_means_no_hold(tmp_path: Path, capsys: Any) -> None:
    """`pause:` (YAML null) reaches the operator as no `pause` field at all (the API server
    drops nulls): no hold, while a user who wrote it likely meant a manual gate. lint says
    valid, as the cluster would accept it, with a warning naming the step and the fix."""
    f = tmp_path / "r.yaml"
    f.write_text(NULL_PAUSE)
    code, out, err = run(capsys, "lint", "-f", str(f))
    assert code == 0
    assert out == f"{f}: x: valid (1 warning)\n"
    assert err == (
        f"warning: {f}: x: spec.steps[0].pause: null is read as no pause field (the API "
        "server drops nulls): step 1 does not hold; write `pause: {}` to wait for "
        "`kubectl ftr promote`\n"
    )


def test_lint_strict_fails_on_a_warning(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(NULL_PAUSE)
    code, out, err = run(capsys, "lint", "--strict", "-f", str(f))
    assert code == plugin.EXIT_ERROR
    assert out == ""
    assert err.startswith(f"warning: {f}: x: spec.steps[0].pause: null")
    assert err.endswith(f"error: {f}: x: 1 warning (--strict)\n")


def test_lint_names_a_null_duration_and_other_nulls(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(NULL_PAUSE.replace("    pause:\n", "    pause: {duration: }\n") + "  paused:\n")
    code, out, err = run(capsys, "lint", "-f", str(f))
    assert code == 0
    assert out == f"{f}: x: valid (2 warnings)\n"
    assert err.splitlines() == [
        f"warning: {f}: x: spec.steps[0].pause.duration: null is read as no duration: step 1 "
        "waits for `kubectl ftr promote`, as `pause: {}` does; give a duration to hold for it",
        f"warning: {f}: x: spec.paused: null is read as the field left out (the API server "
        "drops nulls before validation)",
    ]


def test_lint_of_a_null_spec_field_that_is_required_reports_it_missing(
    tmp_path: Path, capsys: Any
) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(NULL_PAUSE.replace("  freeThreaded: {image: x}\n", "  freeThreaded:\n"))
    code, _, err = run(capsys, "lint", "-f", str(f))
    assert code == plugin.EXIT_ERROR
    assert "invalid spec: spec.freeThreaded: Field required" in err


SELF_REFERENCING = """\
apiVersion: freethreaded.dev/v1alpha1
kind: FreeThreadedRollout
metadata: {name: x}
spec: &s
  targetRef: {name: w}
  freeThreaded: {image: x}
  steps:
  - weight: 100
    pause: *s
"""


def test_lint_of_a_self_referencing_anchor_is_an_error_line_not_a_traceback(
    tmp_path: Path, capsys: Any
) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(SELF_REFERENCING)
    code, _, err = run(capsys, "lint", "-f", str(f))
    assert code == plugin.EXIT_ERROR
    assert "error: " in err
    assert "invalid spec: spec.steps[0].pause: contains itself" in err


def test_an_anchor_used_twice_without_a_cycle_is_read_twice(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        NULL_PAUSE.split("spec:")[0]
        + "spec:\n  targetRef: {name: w}\n  freeThreaded: {image: x}\n"
        + "  steps:\n  - {weight: 10, pause: &p {duration: 1m}}\n"
        + "  - {weight: 50, pause: *p}\n  - {weight: 100}\n"
    )
    code, out, err = run(capsys, "lint", "-f", str(f))
    assert (code, err) == (0, ""), out


# ------------------------------------------------------------------------------- -o json|yaml


def test_get_and_status_print_the_objects_as_json_or_yaml(fake_api: FakeApi, capsys: Any) -> None:
    code, out, err = run(capsys, "get", "-o", "json")
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert listed["kind"] == "List"
    assert [o["metadata"]["name"] for o in listed["items"]] == ["web"]
    code, out, _ = run(capsys, "get", "-A", "-o", "yaml")
    assert yaml.safe_load(out)["items"][0]["status"]["phase"] == "Paused"
    code, out, _ = run(capsys, "status", "web", "-o", "json")
    assert json.loads(out) == sample()
    code, out, _ = run(capsys, "status", "web", "-o", "yaml")
    assert yaml.safe_load(out) == sample()


# ------------------------------------------------------------------------------------ version


def test_image_tag() -> None:
    assert plugin.image_tag("ghcr.io/x/ftrollout:0.2.0") == "0.2.0"
    assert plugin.image_tag("reg:5000/ftrollout:1.0@sha256:abc") == "1.0"
    assert plugin.image_tag("reg:5000/ftrollout") is None
    assert plugin.image_tag("ftrollout") is None


def test_version_of_the_plugin_and_the_operator(fake_api: FakeApi, capsys: Any) -> None:
    from ftrollout import __version__

    code, out, _ = run(capsys, "version", "--client")
    assert (code, out) == (0, f"plugin:   {__version__}\n")
    code, out, _ = run(capsys, "version")
    assert out.splitlines()[1].startswith("operator: unknown (no Deployment labelled")

    def deployment(labels: dict[str, str], image: str) -> dict[str, Any]:
        return {
            "metadata": {"name": "ftrollout", "namespace": "ops", "labels": labels},
            "spec": {"template": {"spec": {"containers": [{"name": "op", "image": image}]}}},
        }

    fake_api.deployments = [deployment({"app.kubernetes.io/version": "0.3.1"}, "r/ftr:latest")]
    code, out, _ = run(capsys, "version")
    assert out.splitlines()[1] == ("operator: 0.3.1 (deployment ops/ftrollout, image r/ftr:latest)")
    fake_api.deployments = [deployment({}, "reg:5000/ftr:0.4.0")]
    code, out, _ = run(capsys, "version")
    assert out.splitlines()[1].startswith("operator: 0.4.0 (")


# --------------------------------------------------------------------------------- completion


def complete_in_bash(script: str, *words: str) -> list[str]:
    """COMPREPLY of the script for `kubectl-ftr WORDS...` (the last word is being typed)."""
    line = " ".join(["kubectl-ftr", *words])
    prog = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _kubectl_ftr; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_of_commands_and_flags(capsys: Any) -> None:
    code, script, _ = run(capsys, "completion", "bash")
    assert code == 0
    assert complete_in_bash(script, "") == [
        *["-h", "--help", "--kubeconfig", "--context", "-n", "--namespace"],
        *[c for c in plugin.command_tree(plugin.build_parser())[""] if not c.startswith("-")],
    ]
    assert complete_in_bash(script, "sta") == ["status"]
    assert complete_in_bash(script, "-n", "shop", "status", "web", "--w") == ["--watch", "--wait"]
    assert complete_in_bash(script, "promote", "--") == [
        *["--help", "--kubeconfig", "--context", "--namespace", "--full", "--wait", "--timeout"]
    ]
    assert complete_in_bash(script, "completion", "") == ["-h", "--help", "bash", "zsh", "kubectl"]
    code, zsh, _ = run(capsys, "completion", "zsh")
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_kubectl_plugin_completion_executable(tmp_path: Path, capsys: Any) -> None:
    _, script, _ = run(capsys, "completion", "kubectl")
    exe = tmp_path / "kubectl_complete-ftr"
    exe.write_text(script)
    # What kubectl runs for `kubectl ftr -n shop sta<TAB>` and `kubectl ftr get <TAB>`.
    out = subprocess.run(["bash", str(exe), "-n", "shop", "sta"], capture_output=True, text=True)
    assert out.stdout.splitlines() == ["status", ":4"]
    out = subprocess.run(["bash", str(exe), "get", ""], capture_output=True, text=True)
    assert out.stdout.splitlines()[-3:] == ["-o", "--output", ":4"]


# ---------------------------------------------------------------------------------- set image


def test_set_image_patches_only_the_free_threaded_image(fake_api: FakeApi, capsys: Any) -> None:
    code, out, err = run(capsys, "set", "image", "web", "example/web:3.14t-2", "-n", "shop")
    assert (code, err) == (0, "")
    assert out == (
        "freethreadedrollout shop/web: free-threaded image example/web:3.14t-2 "
        "(was example/web:3.14t); a new revision starts\n"
    )
    assert fake_api.patches == [
        (
            "shop/web",
            "application/merge-patch+json",
            {"spec": {"freeThreaded": {"image": "example/web:3.14t-2"}}},
        )
    ]
    fake_api.patches.clear()
    code, out, _ = run(capsys, "set", "image", "web", "example/web:3.14t")
    assert code == 0
    assert "already example/web:3.14t (unchanged)" in out
    assert fake_api.patches == []
    code, _, err = run(capsys, "set", "image", "nope", "x:1")
    assert (code, err) == (1, 'error: freethreadedrollout "nope" not found in namespace "shop"\n')


# --------------------------------------------------------------------------------------- lint

GOOD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: freethreaded.dev/v1alpha1
kind: FreeThreadedRollout
metadata: {name: web, namespace: shop}
spec:
  targetRef: {name: web}
  freeThreaded: {image: example/web:3.14t}
  steps: [{weight: 10, pause: {duration: 5m}}, {weight: 100}]
"""


def test_lint_accepts_a_valid_rollout_and_skips_other_kinds(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    code, out, err = run(capsys, "lint", "-f", str(f))
    assert (code, out, err) == (0, f"{f}: shop/web: valid\n", "")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda d: d["spec"]["steps"].reverse(),
            f"invalid spec: spec: {api.MSG_STEPS_INCREASING}",
        ),
        (
            lambda d: d["spec"]["steps"].pop(),
            f"invalid spec: spec: {api.MSG_STEPS_LAST_100}",
        ),
        (
            lambda d: d["spec"]["steps"][0]["pause"].update(duration="5 minutes"),
            "invalid spec: spec.steps[0].pause.duration:",
        ),
        (
            lambda d: d["spec"].update(stpes=[]),
            "invalid spec: spec.stpes: Extra inputs are not permitted",
        ),
        (lambda d: d.update(apiVersion="freethreaded.dev/v1"), "apiVersion: 'freethreaded.dev/v1'"),
    ],
)
def test_lint_reports_what_the_operator_would(
    tmp_path: Path, capsys: Any, edit: Callable[[dict[str, Any]], None], problem: str
) -> None:
    doc = list(yaml.safe_load_all(GOOD))[1]
    edit(doc)
    # The operator's own message for the same spec, when it is a spec problem.
    if problem.startswith("invalid spec"):
        with pytest.raises(api.SpecError) as exc:
            api.parse_spec(doc["spec"])
        assert problem.startswith(f"invalid spec: {exc.value}"[: len(problem)])
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(doc))
    code, out, err = run(capsys, "lint", "-f", str(f), "-f", str(f))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 2
    assert err.startswith(f"error: {f}: shop/web: {problem}")


def test_lint_warns_of_min_samples_that_cannot_reach_the_confidence(
    tmp_path: Path, capsys: Any
) -> None:
    """Valid (the operator accepts it) but the judge could never fail a round: a warning on
    stderr, exit 0."""
    doc = list(yaml.safe_load_all(GOOD))[1]
    doc["spec"]["analysis"] = {
        "metrics": [
            {"name": "errors", "query": "q", "threshold": {"max": 1}},
            {
                "name": "p99",
                "query": "q",
                "compare": {"maxIncreasePercent": 2, "judge": "MannWhitney", "minSamples": 3},
            },
        ]
    }
    f = tmp_path / "weak.yaml"
    f.write_text(yaml.safe_dump(doc))
    code, out, err = run(capsys, "lint", "-f", str(f))
    assert (code, out) == (0, f"{f}: shop/web: valid (1 warning)\n")
    assert err.startswith(
        f"warning: {f}: shop/web: spec.analysis.metrics[1].compare.minSamples: minSamples 3 "
        "cannot reach 95% confidence"
    )
    assert err.rstrip().endswith("raise it to 4")
    assert err.count("\n") == 1


def test_lint_warns_of_min_samples_above_what_a_track_can_hold(tmp_path: Path, capsys: Any) -> None:
    """minSamples up to 1000 is valid, but a track holds at most 240 samples: the judge uses
    240 instead, and lint says so (review of h-b)."""
    doc = list(yaml.safe_load_all(GOOD))[1]
    doc["spec"]["analysis"] = {
        "metrics": [
            {
                "name": "p99",
                "query": "q",
                "compare": {"maxIncreasePercent": 2, "judge": "MannWhitney", "minSamples": 300},
            },
        ]
    }
    f = tmp_path / "many.yaml"
    f.write_text(yaml.safe_dump(doc))
    code, out, err = run(capsys, "lint", "-f", str(f))
    assert (code, out) == (0, f"{f}: shop/web: valid (1 warning)\n")
    assert err.startswith(
        f"warning: {f}: shop/web: spec.analysis.metrics[0].compare.minSamples: minSamples 300 "
        "is more than the 240"
    )
    assert err.count("\n") == 1


def test_lint_of_a_file_without_a_rollout_or_not_yaml(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("kind: ConfigMap\n")
    assert run(capsys, "lint", "-f", str(f)) == (
        1,
        "",
        f"error: {f}: no FreeThreadedRollout in it\n",
    )
    f.write_text("a: [\n")
    code, _, err = run(capsys, "lint", "-f", str(f))
    assert code == 1
    assert err.startswith(f"error: {f}: not YAML:")
    code, _, err = run(capsys, "lint", "-f", str(tmp_path / "missing.yaml"))
    assert (code, err) == (1, f"error: {tmp_path / 'missing.yaml'}: No such file or directory\n")


# -------------------------------------------------------------------------------- pod view


def pod(
    name: str, owner: str, *, ready: bool = True, restarts: int = 0, **state: Any
) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "app", "ready": ready, "restartCount": restarts}
    cs.update(state)
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"pod-template-hash": "h"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{owner}-h"}],
        },
        "status": {"phase": "Running", "containerStatuses": [cs]},
    }


PODS = [
    pod("web-h-1", "web"),
    pod("web-ft-h-2", "web-ft", restarts=1),
    pod("web-ft-abc-1", "web-ft", ready=False, restarts=3,
        state={"waiting": {"reason": "CrashLoopBackOff"}}),
    pod(
        "web-ft-h-3",
        "web-ft",
        lastState={"terminated": {"exitCode": 134, "finishedAt": "2025-06-01T11:50:00Z"}},
    ),
    pod("other-h-1", "other"),
]  # fmt: skip


def test_pod_rows_show_track_ready_restarts_gil_and_last_incident() -> None:
    gil = {
        "web-ft-h-2": plugin.PodGil(True, ("legacyext",)),
        "web-ft-abc-1": plugin.PodGil(False),
    }
    rows = plugin.pod_rows(sample(), PODS, gil, NOW)
    assert [(r.name, r.track, r.status, r.ready, r.restarts, r.gil, r.incident) for r in rows] == [
        ("web-ft-abc-1", TRACK_FREE_THREADED, "CrashLoopBackOff", "0/1", 3, "off", "exit 139, 2m ago"),
        ("web-ft-h-2", TRACK_FREE_THREADED, "Running", "1/1", 1, "ON (legacyext)", "-"),
        ("web-ft-h-3", TRACK_FREE_THREADED, "Running", "1/1", 0, "?", "exit 134, 10m ago"),
        ("web-h-1", TRACK_STANDARD, "Running", "1/1", 0, "-", "-"),
    ]  # fmt: skip
    out = text_of(plugin.status_view(sample(), [], NOW, rows, "a note"))
    section = out.split("\nPods\n", 1)[1].split("Conditions", 1)[0]
    assert section.splitlines()[0].split() == [
        "POD", "TRACK", "STATUS", "READY", "RESTARTS", "GIL", "LAST", "INCIDENT"
    ]  # fmt: skip
    assert "web-ft-h-2 free-threaded Running 1/1 1 ON (legacyext) -" in " ".join(section.split())
    assert "a note" in section


def test_pod_gil_reads_the_probe_metrics() -> None:
    seen: list[str] = []

    def fake(url: str, q: str) -> Any:
        seen.append(q)
        if "python_gil_enabled" in q:
            return [
                {"metric": {"pod": "a"}, "value": [0, "1"]},
                {"metric": {"pod": "b"}, "value": [0, "0"]},
            ]
        return [{"metric": {"pod": "a", "module": "legacyext"}, "value": [0, "2"]}]

    gil, why = plugin.pod_gil("http://prom", "shop", ["b", "a"], query=fake)
    assert why == ""
    assert gil == {"a": plugin.PodGil(True, ("legacyext",)), "b": plugin.PodGil(False)}
    assert 'python_gil_enabled{namespace="shop", pod=~"a|b"}' in seen[0]

    def down(url: str, q: str) -> Any:
        raise OSError("connection refused")

    gil, why = plugin.pod_gil("http://prom", "shop", ["a"], query=down)
    assert gil is None
    assert why == "GIL per pod: Prometheus at http://prom unusable: connection refused"


def test_status_lists_the_pods(fake_api: FakeApi, capsys: Any) -> None:
    fake_api.pods = PODS
    code, out, err = run(capsys, "status", "web")
    assert code == 0, err
    section = " ".join(out.split("\nPods\n", 1)[1].split("Conditions", 1)[0].split())
    assert "web-ft-abc-1 free-threaded CrashLoopBackOff 0/1 3 ? exit 139" in section
    assert "web-h-1 standard Running 1/1 0 - -" in section
    assert "other-h-1" not in section
    assert "GIL per pod needs the probe's metrics: pass --prometheus-url" in section
    code, out, _ = run(capsys, "status", "web", "--prometheus-url", "http://127.0.0.1:9")
    assert "GIL per pod: Prometheus at http://127.0.0.1:9 unusable" in " ".join(out.split())


def test_analysis_table_shows_the_mann_whitney_numbers() -> None:
    spec = api.RolloutSpec.model_validate(
        {
            "targetRef": {"name": "web"},
            "freeThreaded": {"image": "registry.example/web:2.0-py3.14t"},
            "steps": [{"weight": 100}],
            "analysis": {
                "metrics": [
                    {
                        "name": "p99",
                        "query": "q",
                        "compare": {"maxIncreasePercent": 2, "judge": "MannWhitney"},
                    }
                ]
            },
        }
    )
    metric = spec.analysis.metrics[0] if spec.analysis else None
    assert metric is not None
    ft = Samples(tuple(105.0 + i % 4 for i in range(12)))
    std = Samples(tuple(100.0 + i % 4 for i in range(10)))
    status = api.RolloutStatus(
        analysis=api.AnalysisStatus(metrics=[judge_samples(metric, ft, std, "t")])
    )
    out = text_of(plugin.analysis_table(spec, status))
    assert "106.5 (median of 12)" in out
    assert "101 (median of 10)" in out
    assert "≤ +2% vs standard (Mann-Whitney, 95%)" in out
    assert "free-threaded +5.0% vs standard (95% CI" in out
    assert "n=12/10" in out


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: List\nitems: 5\n", "items: not a list"),
        ("&a {kind: List, items: [*a]}\n", "a List that contains itself"),
    ],
)
def test_lint_reports_odd_lists_instead_of_crashing(
    tmp_path: Path, capsys: Any, text: str, problem: str
) -> None:
    f = tmp_path / "x.yaml"
    f.write_text(text)
    assert plugin.main(["lint", "-f", str(f)]) == plugin.EXIT_ERROR
    assert problem in capsys.readouterr().err
