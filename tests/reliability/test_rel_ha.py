"""High availability and control-plane faults: two operator replicas with kopf peering (only the
higher priority acts; SIGKILL it and the other takes over), and a kube-apiserver restart in the
middle of a rollout."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e_operator import (
    annotate,
    apply,
    events,
    ftr_status,
    phase_is,
    ready_deployment,
    rollout,
    split_is,
    wait_for,
)
from rel_support import N, OperatorFactory, Sampler, record

from ftrollout_dev.localcluster import LocalCluster, _Api, stop_process_group

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

# kopf's peering CRDs (kopf.dev/v1), as the chart ships them.
PEERING_CRDS = (
    Path(__file__).resolve().parents[2] / "charts" / "ftrollout" / "crds" / "kopf.dev_peerings.yaml"
).read_text()


def test_two_replicas_with_peering_one_acts_and_the_other_takes_over(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    cluster.kubectl("apply", "-f", "-", input=PEERING_CRDS)
    for crd in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    cluster.kubectl(
        "apply", "-n", ns, "-f", "-",
        input="apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {name: ftrollout}\n",
    )  # fmt: skip
    ready_deployment(cluster, ns, N)
    active = operators(ns, "--peering=ftrollout", "--priority=200", log_name="active.log")
    standby = operators(ns, "--peering=ftrollout", "--priority=100", log_name="standby.log")
    time.sleep(3)  # let both see each other's peering record
    standby_writes_before = standby.metric("ftrollout_api_writes_total")
    steps = [{"weight": 50, "pause": {}}, {"weight": 100, "pause": {}}]
    with Sampler(api, ns) as s:
        apply(cluster, ns, rollout("web", "web", steps))
        wait_for(lambda: split_is(cluster, ns, 5, 5) and phase_is(cluster, ns, "Paused", 0),
                 90, "5 + 5 by the active replica")  # fmt: skip
        assert active.metric("ftrollout_api_writes_total") > 0
        assert standby.metric("ftrollout_api_writes_total") == standby_writes_before, (
            "the standby replica wrote while the active one was alive"
        )
        # The active replica dies; the standby one must finish the rollout.
        active.stop(signal.SIGKILL)
        t0 = time.monotonic()
        annotate(cluster, ns, "promote")
        wait_for(lambda: split_is(cluster, ns, 0, N) and phase_is(cluster, ns, "Paused", 1),
                 150, "the standby replica to act: 0 + 10")  # fmt: skip
        takeover = time.monotonic() - t0
        annotate(cluster, ns, "promote")
        wait_for(lambda: phase_is(cluster, ns, "Promoted"), 90, "Promoted by the standby")
    s.assert_capacity_and_no_double_scale()
    s.assert_progress_never_reset()
    assert standby.metric("ftrollout_api_writes_total") > standby_writes_before
    r = Counter(e["reason"] for e in events(cluster, ns, "web"))
    assert r["RolloutStarted"] == 1, r
    assert r["Promoted"] == 1, r
    assert r["StepPromoted"] == 1, r
    record("peering-failover", takeover_s=round(takeover, 2), min_ready=s.min_ready,
           events=dict(r))  # fmt: skip


def restart_apiserver(cluster: LocalCluster, down_for: float) -> float:
    """Stop kube-apiserver only (etcd keeps the data), start it again with the same flags and
    certificates, wait for /readyz; returns the seconds it was unavailable."""
    state = cluster.read_state()
    assert state is not None
    proc = state["processes"]["kube-apiserver"]
    t0 = time.monotonic()
    stop_process_group(int(proc["pid"]), proc.get("exe"))
    time.sleep(down_for)
    cluster._start(state, "kube-apiserver", cluster._apiserver_cmd(state["ports"], state["server"]))
    api = _Api(state["server"], cluster.pki)
    wait_for(lambda: api.request("GET", "/readyz")[0] == 200, 90, "kube-apiserver /readyz")
    return time.monotonic() - t0


def test_apiserver_restart_mid_rollout(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    op = operators(ns)
    steps = [
        {"weight": 10, "pause": {"duration": "3s"}},
        {"weight": 50, "pause": {"duration": "8s"}},
        {"weight": 100, "pause": {"duration": "3s"}},
    ]
    apply(cluster, ns, rollout("web", "web", steps))

    def in_step_2() -> bool:
        st = ftr_status(cluster, ns, "web")
        return st.get("stepIndex") == 1 and st.get("phase") in ("Progressing", "Paused")

    try:
        wait_for(in_step_2, 90, "step 2 in progress")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {ftr_status(cluster, ns, 'web')}") from None
    with Sampler(api, ns) as s:
        s.pause.set()
        unavailable = restart_apiserver(cluster, down_for=5)
        s.pause.clear()
        t0 = time.monotonic()
        wait_for(lambda: phase_is(cluster, ns, "Promoted") and split_is(cluster, ns, 0, N),
                 180, "Promoted after the apiserver came back")  # fmt: skip
        finished = time.monotonic() - t0
    s.assert_capacity_and_no_double_scale()
    s.assert_progress_never_reset()
    assert op.proc is not None
    assert op.proc.poll() is None, "the operator exited when the apiserver went away"
    r = Counter(e["reason"] for e in events(cluster, ns, "web"))
    assert r["RolloutStarted"] == 1, r
    assert r["Promoted"] == 1, r
    record("apiserver-restart", unavailable_s=round(unavailable, 2),
           promoted_after_return_s=round(finished, 2), min_ready=s.min_ready)  # fmt: skip
