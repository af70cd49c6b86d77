"""Running the real operator (`ftrollout run`) against the local cluster, and reading its work.

Test modules import the fixtures they need from here (`from e2e_operator import ...`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from ftrollout_dev.localcluster import LocalCluster, free_port
from ftrollout_dev.simulator import app_deployment as deployment  # re-exported to the tests

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "freethreaded.dev_freethreadedrollouts.yaml"
CRD_NAME = "freethreadedrollouts.freethreaded.dev"
T = TypeVar("T")


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class OperatorProcess:
    """`ftrollout run` as a subprocess with the cluster's kubeconfig (or `kubeconfig`, e.g. the
    Helm chart's ServiceAccount token)."""

    def __init__(
        self, cluster: LocalCluster, log_path: Path, *extra: str, kubeconfig: Path | None = None
    ) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.extra = list(extra)
        self.kubeconfig = kubeconfig
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = self.cluster.env()
        env["PYTHONUNBUFFERED"] = "1"
        # The tests' Prometheus servers listen on random local ports: the harness opts in to any
        # address (the allow-list itself is proven by tests/unit and tests/integration).
        env.setdefault("FTR_PROMETHEUS_ALLOW", "*")
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        cmd = [
            sys.executable,
            "-m",
            "ftrollout.main",
            "run",
            "--log-format=plain",
            "--health-port=0",
            f"--metrics-port={self.metrics_port}",
            *self.extra,
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(self._serving, 60, "the operator's metrics endpoint")

    def _serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
        ) as r:
            return str(r.read().decode())

    def metric(self, name: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name} not exported")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> LocalCluster:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    wait_for(
        lambda: cluster.kubectl("get", "ftr", "-A", check=False).returncode == 0,
        60,
        "discovery of ftr",
    )
    return cluster


@pytest.fixture(scope="module")
def operator(
    crd: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess(crd, log)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        if os.environ.get("FTR_E2E_SHOW_LOGS"):
            print(op.log_tail(200))


# ----------------------------------------------------------------------- helpers


def rollout(name: str, target: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "freethreaded.dev/v1alpha1",
        "kind": "FreeThreadedRollout",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": target},
            "freeThreaded": {"image": "example/app:3.14t"},
            "steps": steps,
            **spec,
        },
    }


def apply(cluster: LocalCluster, namespace: str, doc: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))


def get(cluster: LocalCluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def replicas(cluster: LocalCluster, namespace: str, name: str) -> tuple[int, int]:
    """(spec.replicas, status.readyReplicas) of a Deployment; (-1, -1) when it does not exist."""
    d = get(cluster, namespace, "deployment", name)
    if d is None:
        return -1, -1
    return int(d["spec"].get("replicas", 0)), int(d.get("status", {}).get("readyReplicas") or 0)


def ftr_status(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    obj = get(cluster, namespace, "ftr", name) or {}
    status: dict[str, Any] = obj.get("status") or {}
    return status


def events(cluster: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    proc = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=FreeThreadedRollout",
        "-o",
        "json",
    )
    items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return items


def ready_deployment(cluster: LocalCluster, namespace: str, n: int, name: str = "web") -> None:
    """Create a Deployment of n kwok pods and wait until all are Ready."""
    apply(cluster, namespace, deployment(name, n))
    wait_for(lambda: replicas(cluster, namespace, name) == (n, n), 90, f"{name}: {n} Ready pods")


def split_is(cluster: LocalCluster, namespace: str, std: int, ft: int, target: str = "web") -> bool:
    """Both tracks at exactly these replicas, all Ready."""
    return replicas(cluster, namespace, target) == (std, std) and replicas(
        cluster, namespace, f"{target}-ft"
    ) == (ft, ft)


def phase_is(
    cluster: LocalCluster, namespace: str, phase: str, step: int | None = None, name: str = "web"
) -> bool:
    st = ftr_status(cluster, namespace, name)
    return st.get("phase") == phase and (step is None or st.get("stepIndex") == step)


def annotate(cluster: LocalCluster, namespace: str, action: str, name: str = "web") -> None:
    """The one-shot action annotation, as `kubectl ftr <action>` writes it."""
    cluster.kubectl(
        "annotate", "ftr", name, "-n", namespace, f"freethreaded.dev/action={action}",
        "--overwrite",
    )  # fmt: skip
