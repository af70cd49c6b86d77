"""The rollout engine end to end: real apiserver, controller-manager, kwok pods, the operator."""

from __future__ import annotations

import json
import threading
import time

import pytest
from e2e_operator import (
    OperatorProcess,
    annotate,
    apply,
    events,
    ftr_status,
    get,
    phase_is,
    ready_deployment,
    replicas,
    rollout,
    split_is,
    wait_for,
)

from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
N = 10


class CapacityWatch:
    """Samples Ready replicas of both tracks in the background; remembers the minimum."""

    def __init__(self, cluster: LocalCluster, namespace: str, target: str) -> None:
        self.cluster, self.namespace, self.target = cluster, namespace, target
        self.min_ready = 10**9
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            # One LIST = one consistent snapshot of both tracks. Two GETs in a row are not: in a
            # rollback the standard track's old count and the twin's new one (already scaled
            # down after the standard pods became Ready) would add up to a dip that never was.
            out = self.cluster.kubectl(
                "get", "deployments", "-n", self.namespace, "-o", "json", check=False
            )
            if out.returncode == 0:
                ready = {
                    d["metadata"]["name"]: int((d.get("status") or {}).get("readyReplicas") or 0)
                    for d in json.loads(out.stdout).get("items", [])
                }
                both = ready.get(self.target, 0) + ready.get(f"{self.target}-ft", 0)
                self.min_ready = min(self.min_ready, both)
                self.samples += 1
            time.sleep(0.1)

    def __enter__(self) -> CapacityWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def web(cluster: LocalCluster, namespace: str) -> str:
    ready_deployment(cluster, namespace, N)
    return namespace


def test_steps_10_50_100_to_promoted_keeping_capacity(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [
        {"weight": 10, "pause": {"duration": "2s"}},
        {"weight": 50, "pause": {"duration": "2s"}},
        {"weight": 100, "pause": {}},
    ]
    seen: list[tuple[int, int]] = []
    with CapacityWatch(cluster, ns, "web") as cap:
        apply(cluster, ns, rollout("web", "web", steps))
        for std, ft in ((9, 1), (5, 5), (0, 10)):
            wait_for(lambda s=std, f=ft: split_is(cluster, ns, s, f), 60, f"split {std}+{ft}")  # type: ignore[misc]
            seen.append((std, ft))
        wait_for(lambda: phase_is(cluster, ns, "Paused", 2), 30, "Paused at the last step")
        st = ftr_status(cluster, ns, "web")
        assert "kubectl ftr promote" in st["message"]
        wait = cluster.kubectl(
            "wait", "--for=condition=Ready", "ftr/web", "-n", ns, "--timeout=1s", check=False
        )
        assert wait.returncode != 0, "Ready before the promote"
        annotate(cluster, ns, "promote")
        # What a pipeline or a Flux health check waits on: Ready once Promoted, all N Ready.
        cluster.kubectl(
            "wait", "--for=condition=Ready", "ftr/web", "-n", ns, "--timeout=60s", timeout=90
        )
        assert phase_is(cluster, ns, "Promoted")
    assert seen == [(9, 1), (5, 5), (0, 10)]
    assert cap.samples > 10
    assert cap.min_ready >= N, f"capacity dropped to {cap.min_ready}"

    st = ftr_status(cluster, ns, "web")
    assert st["weight"] == 100
    assert st["replicas"]["standard"] == 0
    assert st["replicas"]["freeThreaded"] == N
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "Promoted"
    # The action annotation was consumed.
    obj = get(cluster, ns, "ftr", "web")
    assert obj is not None
    assert "freethreaded.dev/action" not in (obj["metadata"].get("annotations") or {})
    reasons = [e["reason"] for e in events(cluster, ns, "web")]
    for r in ("RolloutStarted", "StepStarted", "StepReached", "Promoted"):
        assert r in reasons
    # The standard Deployment kept its template: only replicas changed.
    target = get(cluster, ns, "deployment", "web")
    assert target is not None
    assert target["spec"]["template"]["spec"]["containers"][0]["image"] == "example/app:3.13"
    twin = get(cluster, ns, "deployment", "web-ft")
    assert twin is not None
    assert twin["spec"]["template"]["spec"]["containers"][0]["image"] == "example/app:3.14t"
    assert twin["metadata"]["ownerReferences"][0]["kind"] == "FreeThreadedRollout"
    # kubectl get ftr shows the printer columns filled.
    out = cluster.kubectl("get", "ftr", "web", "-n", ns).stdout
    assert out.split("\n")[0].split() == [
        "NAME",
        "TARGET",
        "PHASE",
        "STEP",
        "WEIGHT",
        "AVAILABLE",
        "GIL",
        "RACES",
        "AGE",
    ]
    assert out.split("\n")[1].split()[:6] == ["web", "web", "Promoted", "3", "100", "10/10"]
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "Promoted")


def test_manual_rollback_from_step_2_restores_standard(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [
        {"weight": 10, "pause": {"duration": "1s"}},
        {"weight": 50, "pause": {}},
        {"weight": 100},
    ]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 1) and split_is(cluster, ns, 5, 5),
        60,
        "step 2 at 5+5",
    )
    with CapacityWatch(cluster, ns, "web") as cap:
        annotate(cluster, ns, "rollback")
        wait_for(lambda: phase_is(cluster, ns, "RolledBack"), 30, "RolledBack")
        wait_for(lambda: split_is(cluster, ns, N, 0), 60, "10 standard Ready, twin at 0")
    assert cap.min_ready >= N
    st = ftr_status(cluster, ns, "web")
    assert st["rollback"]["reason"] == "Manual"
    # Stays rolled back: nothing scales the twin up again.
    time.sleep(2)
    assert split_is(cluster, ns, N, 0)
    assert phase_is(cluster, ns, "RolledBack")


def test_template_change_mid_rollout_restarts_at_step_0(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [
        {"weight": 10, "pause": {"duration": "1s"}},
        {"weight": 50, "pause": {}},
        {"weight": 100},
    ]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 1) and split_is(cluster, ns, 5, 5),
        60,
        "step 2",
    )
    rev1 = ftr_status(cluster, ns, "web")["revision"]
    cluster.kubectl(
        "patch", "deployment", "web", "-n", ns, "--type=merge",
        "-p", '{"spec":{"template":{"metadata":{"annotations":{"build":"2"}}}}}',
    )  # fmt: skip
    wait_for(
        lambda: ftr_status(cluster, ns, "web").get("revision") not in (None, rev1),
        30,
        "new revision",
    )
    # Back to step 0, then paused indefinitely at step 2 again with the new template.
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 1) and split_is(cluster, ns, 5, 5),
        60,
        "step 2 again",
    )
    reasons = [e["reason"] for e in events(cluster, ns, "web")]
    assert "NewRevision" in reasons
    twin = get(cluster, ns, "deployment", "web-ft")
    assert twin is not None
    assert twin["spec"]["template"]["metadata"]["annotations"]["build"] == "2"


def test_deleting_the_rollout_restores_the_target_and_removes_the_twin(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [
        {"weight": 10, "pause": {"duration": "1s"}},
        {"weight": 50, "pause": {}},
        {"weight": 100},
    ]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(lambda: split_is(cluster, ns, 5, 5), 60, "step 2 at 5+5")
    with CapacityWatch(cluster, ns, "web") as cap:
        cluster.kubectl("delete", "ftr", "web", "-n", ns, "--wait=true", timeout=90)
        wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 30, "target back at 10")
        wait_for(lambda: get(cluster, ns, "deployment", "web-ft") is None, 30, "twin deleted")
    assert cap.min_ready >= N


def test_a_reconcile_that_changes_nothing_writes_nothing(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [{"weight": 50, "pause": {}}, {"weight": 100}]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 0) and split_is(cluster, ns, 5, 5),
        60,
        "paused at 50%",
    )
    # Earlier tests' namespaces are still being deleted (their finalizers write): wait until
    # this rollout is the only one, then let the last watch events settle.
    wait_for(
        lambda: cluster.kubectl("get", "ftr", "-A", "--no-headers").stdout.count("\n") == 1,
        120,  # 60 s was once too short on a loaded machine
        "other tests' rollouts to be gone",
    )
    time.sleep(2)
    before = operator.metric("ftrollout_api_writes_total")
    reconciles_before = operator.metric("ftrollout_reconcile_duration_seconds_count")
    # An unrelated change to the rollout triggers reconciles but changes nothing.
    cluster.kubectl("label", "ftr", "web", "-n", ns, "team=payments")
    cluster.kubectl("annotate", "deployment", "web", "-n", ns, "note=unrelated")
    wait_for(
        lambda: operator.metric("ftrollout_reconcile_duration_seconds_count") > reconciles_before,
        10,
        "a reconcile",
    )
    time.sleep(1)
    assert operator.metric("ftrollout_api_writes_total") == before


def test_invalid_container_fails_with_the_field_and_keeps_capacity(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    doc = rollout("web", "web", [{"weight": 100}])
    doc["spec"]["freeThreaded"]["container"] = "nope"
    apply(cluster, ns, doc)
    wait_for(lambda: phase_is(cluster, ns, "Failed"), 30, "Failed")
    st = ftr_status(cluster, ns, "web")
    assert "spec.freeThreaded.container" in st["message"]
    assert replicas(cluster, ns, "web") == (N, N)
    reasons = [e["reason"] for e in events(cluster, ns, "web")]
    assert "InvalidSpec" in reasons


def test_kubectl_scale_of_the_target_mid_step_sets_the_new_total(
    operator: OperatorProcess, cluster: LocalCluster, web: str
) -> None:
    ns = web
    steps = [{"weight": 50, "pause": {}}, {"weight": 100}]
    apply(cluster, ns, rollout("web", "web", steps))
    wait_for(
        lambda: phase_is(cluster, ns, "Paused", 0) and split_is(cluster, ns, 5, 5),
        60,
        "paused at 50%",
    )
    cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=20")
    wait_for(lambda: split_is(cluster, ns, 10, 10), 60, "50% of 20: 10 + 10")
    st = ftr_status(cluster, ns, "web")
    assert st["replicas"]["target"] == 20
    assert "TargetScaled" in [e["reason"] for e in events(cluster, ns, "web")]
