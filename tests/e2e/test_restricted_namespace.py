"""A namespace enforcing the "restricted" Pod Security Standard (the PodSecurity admission
plugin is on by default in kube-apiserver): the preflight Job's pod and the free-threaded pods,
probe injected, are admitted, and the rollout goes through its dependency gate to its first step.

kwok runs no containers: the test plays the preflight container as tests/e2e/test_gate_e2e.py
does. Admission is what is real here: a pod the profile rejects is never created, so the Job
would wait for a pod that never comes and the twin would stay at 0 Ready.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_operator import (
    OperatorProcess,
    apply,
    deployment,
    ftr_status,
    replicas,
    rollout,
    wait_for,
)
from test_gate_e2e import finish_preflight, report

from ftrollout.plan.twin import PROBE_VOLUME
from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
N = 4
RESTRICTED = "pod-security.kubernetes.io/enforce"


def restricted_deployment(name: str, n: int) -> dict[str, Any]:
    """The demo service, written the way a restricted namespace demands."""
    doc = deployment(name, n)
    pod = doc["spec"]["template"]["spec"]
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return doc


@pytest.fixture
def restricted(cluster: LocalCluster, namespace: str) -> str:
    cluster.kubectl(
        "label", "namespace", namespace, f"{RESTRICTED}=restricted", f"{RESTRICTED}-version=latest"
    )
    # The profile is enforced: a plain pod is refused.
    plain = cluster.kubectl(
        "run", "plain", "-n", namespace, "--image=example/app:3.13", "--dry-run=server",
        check=False,
    )  # fmt: skip
    assert plain.returncode != 0
    assert "violates PodSecurity" in plain.stderr, plain.stderr
    return namespace


def test_gate_job_and_probed_twin_are_admitted_in_a_restricted_namespace(
    operator: OperatorProcess, cluster: LocalCluster, restricted: str
) -> None:
    ns = restricted
    apply(cluster, ns, restricted_deployment("web", N))
    wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 90, "web: restricted pods Ready")
    apply(
        cluster,
        ns,
        rollout(
            "web",
            "web",
            [{"weight": 50, "pause": {}}, {"weight": 100}],
            freeThreaded={"image": "example/app:3.14t", "probe": {"enabled": True}},
            guardrails={"dependencyGate": {"modules": ["json"], "action": "Block"}},
        ),
    )
    # The Job's pod exists only if admission let it through.
    try:
        finish_preflight(cluster, ns, report("json"))
    except AssertionError as exc:
        jobs = cluster.kubectl("describe", "jobs", "-n", ns, check=False).stdout
        raise AssertionError(f"{exc}\n{jobs[-2000:]}") from None
    try:
        wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Paused", 90, "step 1")
        wait_for(lambda: replicas(cluster, ns, "web-ft") == (2, 2), 90, "twin: 2 Ready pods")
    except AssertionError as exc:
        st = ftr_status(cluster, ns, "web")
        rs = cluster.kubectl("describe", "replicasets", "-n", ns, check=False).stdout
        raise AssertionError(f"{exc}\nstatus: {json.dumps(st)}\n{rs[-2000:]}") from None
    assert ftr_status(cluster, ns, "web")["preflight"]["phase"] == "Passed"
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", ns, "-l", "freethreaded.dev/track=free-threaded", "-o", "json"
        ).stdout
    )["items"]
    assert len(pods) == 2
    for pod in pods:  # the probe is there: its ConfigMap volume and env
        assert PROBE_VOLUME in {v["name"] for v in pod["spec"]["volumes"]}
        env = {e["name"] for e in pod["spec"]["containers"][0].get("env") or []}
        assert {"PYTHONPATH", "FTR_PROBE_PORT"} <= env


def test_the_apiserver_refuses_preflight_requests_over_limits(
    crd: LocalCluster, namespace: str
) -> None:
    """The CEL rule (Kubernetes' quantity library) says what the operator's validator says."""
    doc = rollout(
        "web",
        "web",
        [{"weight": 100}],
        guardrails={
            "dependencyGate": {
                "modules": ["json"],
                "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
            }
        },
    )
    proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)
    assert proc.returncode != 0
    assert "memory: a request must not be greater than its limit" in proc.stderr, proc.stderr
    doc["spec"]["guardrails"]["dependencyGate"]["resources"]["limits"]["memory"] = "2048Mi"
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
