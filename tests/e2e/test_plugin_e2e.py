"""`kubectl ftr` against live rollouts run by the real operator.

The plugin is invoked the way users do, `kubectl ftr ...`: kubectl finds the `kubectl-ftr`
console script on PATH (the venv's bin directory, first on the cluster's PATH).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from e2e_operator import (
    OperatorProcess,
    apply,
    ftr_status,
    get,
    ready_deployment,
    replicas,
    rollout,
    wait_for,
)

from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
N = 4


def ftr(
    cluster: LocalCluster, *args: str, kubeconfig: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    assert cluster.binaries.kubectl is not None
    env = cluster.env()
    env["COLUMNS"] = "200"
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(cluster.binaries.kubectl), "ftr", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def phase(cluster: LocalCluster, ns: str, name: str = "web") -> tuple[str | None, int | None]:
    st = ftr_status(cluster, ns, name)
    return st.get("phase"), st.get("stepIndex")


@pytest.fixture
def web(cluster: LocalCluster, namespace: str) -> str:
    ready_deployment(cluster, namespace, N)
    return namespace


def test_get_status_promote_and_report(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [{"weight": 25, "pause": {}}, {"weight": 50, "pause": {}}, {"weight": 100, "pause": {}}]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(lambda: phase(cluster, ns) == ("Paused", 0), 60, "paused at step 1")

    out = ok(ftr(cluster, "get", "-n", ns))
    header, row = out.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "TARGET", "PHASE", "STEP", "WEIGHT"]
    assert row.split()[:7] == ["web", "web", "Paused", "1/3", "25%", "3/3", "1/1"]
    out = ok(ftr(cluster, "get", "-A"))
    assert any(line.split()[:3] == [ns, "web", "web"] for line in out.splitlines())

    out = ok(ftr(cluster, "status", "web", "-n", ns))
    assert f"FreeThreadedRollout {ns}/web" in out
    assert "Paused" in out
    assert "waiting for `kubectl ftr promote`" in out
    steps_part = out.split("Steps", 1)[1]
    assert "▶  1     25%     until promote  ← current" in steps_part
    assert "N=4   standard 3/3 Ready   free-threaded 1/1 Ready" in out
    assert "RolloutStarted" in out.split("Events", 1)[1]

    # promote: one step on.
    out = ok(ftr(cluster, "promote", "web", "-n", ns))
    # The request carries its own id, so the operator applies it exactly once.
    assert re.fullmatch(
        rf"freethreadedrollout {ns}/web: promotion to the next step requested "
        r"\(freethreaded\.dev/action=promote@[0-9TZ]+-[0-9a-f]+\)\n",
        out,
    ), out
    wait_for(lambda: phase(cluster, ns) == ("Paused", 1), 60, "paused at step 2")
    wait_for(lambda: replicas(cluster, ns, "web-ft") == (2, 2), 60, "2 free-threaded Ready")

    # promote --full: everything, now.
    ok(ftr(cluster, "promote", "--full", "web", "-n", ns))
    wait_for(lambda: phase(cluster, ns)[0] == "Promoted", 60, "Promoted")
    wait_for(lambda: replicas(cluster, ns, "web-ft") == (N, N), 60, "all free-threaded")
    obj = get(cluster, ns, "ftr", "web")
    assert obj is not None
    assert "freethreaded.dev/action" not in (obj["metadata"].get("annotations") or {})

    # report: every KPI is either a value or "n/a (why)".
    out = ok(ftr(cluster, "report", "web", "-n", ns))
    assert f"Adoption KPIs {ns}/web" in out
    assert "phase Promoted, weight 100%" in out
    flat = " ".join(out.split())
    for title in (
        "Throughput per core delta",
        "p99 latency delta",
        "RSS delta",
        "Traffic share with the GIL off",
        "Free-threaded incident rate",
        "Gated dependencies verified",
    ):
        assert title in out
    assert "n/a (no Prometheus: pass --prometheus-url" in flat
    assert "n/a (no guardrails.dependencyGate in the spec)" in flat
    assert "per pod-hour" in out  # status-based: 0 incidents over 4 free-threaded pods
    kpis = {
        k["key"]: k for k in json.loads(ok(ftr(cluster, "report", "web", "-n", ns, "-o", "json")))
    }
    assert kpis["incident_rate"]["value"] == 0
    assert kpis["throughput"]["value"] is None


def test_pause_resume_rollback_retry(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(lambda: phase(cluster, ns) == ("Progressing", 0), 60, "progressing at step 1")
    wait_for(lambda: replicas(cluster, ns, "web-ft") == (2, 2), 60, "2 free-threaded Ready")

    assert "pause requested" in ok(ftr(cluster, "pause", "web", "-n", ns))
    wait_for(lambda: phase(cluster, ns) == ("Paused", 0), 30, "Paused")
    assert (get(cluster, ns, "ftr", "web") or {})["spec"]["paused"] is True

    assert "resume requested" in ok(ftr(cluster, "resume", "web", "-n", ns))
    wait_for(lambda: phase(cluster, ns) == ("Progressing", 0), 30, "Progressing again")
    assert (get(cluster, ns, "ftr", "web") or {})["spec"]["paused"] is False

    assert "rollback requested" in ok(ftr(cluster, "rollback", "web", "-n", ns))
    wait_for(lambda: phase(cluster, ns)[0] == "RolledBack", 30, "RolledBack")
    wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 60, "standard back at 4")
    out = ok(ftr(cluster, "status", "web", "-n", ns))
    assert "RolledBack" in out
    assert "Manual: rollback requested by the user" in out
    row = ok(ftr(cluster, "get", "-n", ns)).splitlines()[1].split()
    assert row[2] == "RolledBack"

    assert "retry requested" in ok(ftr(cluster, "retry", "web", "-n", ns))
    wait_for(lambda: phase(cluster, ns) == ("Progressing", 0), 90, "retried from step 1")
    wait_for(lambda: replicas(cluster, ns, "web-ft") == (2, 2), 60, "2 free-threaded again")


def test_status_watch_follows_the_rollout_to_the_end(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [
        {"weight": 50, "pause": {"duration": "2s"}},
        {"weight": 100, "pause": {"duration": "1s"}},
    ]
    apply(cluster, ns, rollout("web", "web", steps))
    started = time.monotonic()
    proc = ftr(cluster, "status", "web", "-n", ns, "--watch", "--timeout", "90s", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 90, "the watch should end when the rollout is Promoted"
    views = proc.stdout.split("\n--- ")
    assert len(views) >= 2, "the view is printed again when the rollout changes"
    assert "Promoted" in views[-1]


def test_errors_are_one_line_with_exit_code_1(
    operator: OperatorProcess, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    def one_line_error(proc: subprocess.CompletedProcess[str], starts: str) -> None:
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert proc.stderr.startswith("error: " + starts), proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr

    # No such rollout (for every command that takes a name).
    for cmd in (["status"], ["promote"], ["rollback"], ["report"]):
        proc = ftr(cluster, *cmd, "nope", "-n", namespace)
        one_line_error(proc, f'freethreadedrollout "nope" not found in namespace "{namespace}"')

    # No permission: a ServiceAccount with no role at all.
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "nobody", "user": {"token": token}}],
        "contexts": [
            {"name": "c", "context": {"cluster": "c", "user": "nobody", "namespace": namespace}}
        ],
        "current-context": "c",
    }
    nobody = tmp_path / "nobody.kubeconfig"
    nobody.write_text(yaml.safe_dump(cfg))
    proc = ftr(cluster, "get", kubeconfig=nobody)
    one_line_error(proc, "forbidden: ")
    assert "system:serviceaccount:" in proc.stderr

    # No cluster: nothing listens at the server; no kubeconfig at all.
    cfg["clusters"][0]["cluster"] = {
        "server": "https://127.0.0.1:9",
        "insecure-skip-tls-verify": True,
    }
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(yaml.safe_dump(cfg))
    one_line_error(
        ftr(cluster, "get", kubeconfig=dead),
        "cannot reach the Kubernetes API at https://127.0.0.1:9",
    )
    one_line_error(
        ftr(cluster, "get", "--kubeconfig", str(tmp_path / "missing")),
        f"no usable Kubernetes configuration in {tmp_path / 'missing'}",
    )
    one_line_error(ftr(cluster, "get", "--context", "nope"), "no usable Kubernetes configuration")
