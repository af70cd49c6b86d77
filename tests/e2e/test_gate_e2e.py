"""The dependency gate on a real control plane.

kwok runs no containers, so the test plays the preflight container: when kwok has finished the
Job's pod, the test writes the termination message that the real preflight script produced (run
here on this interpreter, then marked as a free-threaded build where the case needs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_operator import (
    OperatorProcess,
    apply,
    events,
    ftr_status,
    get,
    ready_deployment,
    replicas,
    rollout,
    wait_for,
)

from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PREFLIGHT = ROOT / "operator/ftrollout/probe/preflight.py"
FIXTURES = ROOT / "tests/unit/probe_fixtures"
N = 4


def report(*modules: str, free_threaded: bool = True, gil_module: str | None = None) -> str:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"ftr-gate-e2e-{os.getpid()}.json"
    env = {**os.environ, "FTR_TERMINATION_LOG": str(out), "PYTHONPATH": str(FIXTURES)}
    subprocess.run(
        [sys.executable, str(PREFLIGHT), *modules], env=env, check=True, capture_output=True
    )
    doc: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    if free_threaded:
        doc["python"]["freeThreadingBuild"] = True
        doc["python"]["gilEnabledAtEnd"] = gil_module is not None
        for m in doc["modules"]:
            on = m["name"] == gil_module
            m.update(gilEnabled=on, gilReenabled=on, gilWarning=on)
    return json.dumps(doc, separators=(",", ":"))


def gated(modules: list[str]) -> dict[str, Any]:
    return rollout(
        "web",
        "web",
        [{"weight": 50, "pause": {}}, {"weight": 100}],
        guardrails={"dependencyGate": {"modules": modules, "action": "Block"}},
    )


def preflight_pod(cluster: LocalCluster, ns: str) -> str | None:
    out = cluster.kubectl(
        "get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=preflight", "-o", "json"
    ).stdout
    for p in json.loads(out)["items"]:
        if p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return str(p["metadata"]["name"])
    return None


def finish_preflight(cluster: LocalCluster, ns: str, message: str) -> None:
    pod = wait_for(lambda: preflight_pod(cluster, ns), 60, "the preflight Job's pod")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    patch = {
        "status": {
            "containerStatuses": [
                {
                    "name": "preflight",
                    "image": "example/app:3.14t",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "message": message,
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ]
        }
    }
    cluster.kubectl("patch", "pod", pod, "-n", ns, "--subresource=status", "-p", json.dumps(patch))


@pytest.fixture
def web(cluster: LocalCluster, namespace: str) -> str:
    ready_deployment(cluster, namespace, N)
    return namespace


def test_gate_passes_records_the_contract_and_cleans_up(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    apply(cluster, ns, gated(["json"]))
    wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Pending", 30, "Pending")
    # The same reconcile writes Pending first, then creates the probe ConfigMap and the Job.
    wait_for(lambda: get(cluster, ns, "configmap", "ftrollout-probe") is not None, 30, "ConfigMap")
    cm = get(cluster, ns, "configmap", "ftrollout-probe")
    assert cm is not None
    assert "ftrollout_preflight.py" in cm["data"]
    assert replicas(cluster, ns, "web") == (N, N)  # nothing moves before the verdict
    finish_preflight(cluster, ns, report("json"))
    try:
        wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Paused", 90, "step 1")
    except AssertionError as exc:
        st = ftr_status(cluster, ns, "web")
        pods = cluster.kubectl("get", "pods,jobs", "-n", ns, "-o", "wide").stdout
        raise AssertionError(f"{exc}\nstatus: {json.dumps(st, indent=1)}\n{pods}") from None
    st = ftr_status(cluster, ns, "web")
    assert st["preflight"]["phase"] == "Passed"
    assert st["preflight"]["freeThreadingBuild"] is True
    assert st["preflight"]["modules"][0]["name"] == "json"
    assert st["preflight"]["modules"][0]["version"]
    assert replicas(cluster, ns, "web-ft") == (2, 2)
    wait_for(
        lambda: "preflight" not in cluster.kubectl("get", "jobs", "-n", ns, "-o", "name").stdout,
        30,
        "the Job to be cleaned up",
    )


@pytest.mark.parametrize(
    ("modules", "message", "words"),
    [
        (["json", "gilwarn_mod"], lambda: report("json", "gilwarn_mod", gil_module="gilwarn_mod"), "gilwarn_mod re-enabled the GIL"),
        (["json", "nosuchmod"], lambda: report("json", "nosuchmod"), "nosuchmod failed to import"),
        (["json"], lambda: report("json", free_threaded=False), "not a free-threading build"),
        (["json"], lambda: "Segmentation fault (core dumped)", "not a report"),
    ],
    ids=["gil-regression", "import-error", "standard-image", "garbage"],
)  # fmt: skip
def test_gate_blocks_with_a_clear_reason_and_keeps_capacity(
    operator: OperatorProcess,
    cluster: LocalCluster,
    web: str,
    modules: list[str],
    message: Any,
    words: str,
) -> None:
    ns = web
    apply(cluster, ns, gated(modules))
    finish_preflight(cluster, ns, message())
    wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Failed", 60, "Failed")
    st = ftr_status(cluster, ns, "web")
    assert words in st["message"]
    assert st["preflight"]["phase"] == "Failed"
    cond = {c["type"]: c for c in st["conditions"]}["Progressing"]
    assert cond["status"] == "False"
    assert cond["reason"] == "DependencyGate"
    assert any(
        e["reason"] == "DependencyGate" and words in e["message"]
        for e in events(cluster, ns, "web")
    )
    assert replicas(cluster, ns, "web") == (N, N)
    twin = replicas(cluster, ns, "web-ft")
    assert twin[0] in (-1, 0)  # never scaled up
