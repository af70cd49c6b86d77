"""Someone else touches what the operator manages: the twin's replicas, the twin itself, the
target, the target's selector; and a second writer keeps changing the rollout object while it
progresses (conflicting resourceVersions). Each has a defined, documented outcome.

(`kubectl scale` of the *target* mid-rollout is covered by tests/e2e/test_engine.py:
test_kubectl_scale_of_the_target_mid_step_sets_the_new_total.)"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import kubernetes
import pytest
from e2e_operator import (
    apply,
    deployment,
    events,
    ftr_status,
    get,
    ready_deployment,
    replicas,
    rollout,
    split_is,
    wait_for,
)
from rel_support import N, OperatorFactory, Sampler, record

from ftrollout_dev.localcluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
STEPS = [{"weight": 50, "pause": {}}, {"weight": 100}]


def at_half(cluster: LocalCluster, ns: str) -> bool:
    st = ftr_status(cluster, ns, "web")
    return split_is(cluster, ns, 5, 5) and (st.get("phase"), st.get("stepIndex")) == ("Paused", 0)


def started(cluster: LocalCluster, ns: str, operators: OperatorFactory) -> None:
    ready_deployment(cluster, ns, N)
    operators(ns)
    apply(cluster, ns, rollout("web", "web", STEPS))
    wait_for(lambda: at_half(cluster, ns), 90, "5 + 5, paused at step 1")


def test_scaling_the_twin_by_hand_is_undone(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    started(cluster, ns, operators)
    with Sampler(api, ns) as s:
        t0 = time.monotonic()
        cluster.kubectl("scale", "deployment", "web-ft", "-n", ns, "--replicas=8")
        wait_for(lambda: replicas(cluster, ns, "web-ft")[0] == 5, 60, "twin back at 5")
        restored = time.monotonic() - t0
        wait_for(lambda: at_half(cluster, ns), 60, "5 + 5 again")
        cluster.kubectl("scale", "deployment", "web-ft", "-n", ns, "--replicas=1")
        wait_for(lambda: at_half(cluster, ns), 60, "5 + 5 after a scale-down by hand")
        restored_down = time.monotonic() - t0 - restored
    # A scale-down of the twin by hand removes Ready pods before the operator can react:
    # capacity dips by what was removed, then comes back. The operator itself never removed any.
    assert s.min_ready >= N - 4
    assert ftr_status(cluster, ns, "web")["stepIndex"] == 0
    record("twin-replicas-edited", restore_up_s=round(restored, 2),
           restore_down_s=round(restored_down, 2), min_ready=s.min_ready)  # fmt: skip


def test_deleting_the_twin_recreates_it(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    started(cluster, ns, operators)
    uid = (get(cluster, ns, "deployment", "web-ft") or {})["metadata"]["uid"]
    with Sampler(api, ns) as s:
        t0 = time.monotonic()
        cluster.kubectl("delete", "deployment", "web-ft", "-n", ns, "--wait=false")
        wait_for(
            lambda: (
                (get(cluster, ns, "deployment", "web-ft") or {}).get("metadata", {}).get("uid")
                not in (None, uid)
            ),
            60,
            "a new twin",
        )
        wait_for(lambda: at_half(cluster, ns), 90, "5 + 5 again")
        recovered = time.monotonic() - t0
    st = ftr_status(cluster, ns, "web")
    assert st["stepIndex"] == 0
    assert st["replicas"]["target"] == N
    # Deleting the twin deletes its Ready pods at once (nothing can keep those); the standard
    # track was never scaled down further, so the dip is at most the twin's share.
    assert s.min_ready >= N - 5
    assert s.max_std <= N
    assert s.max_ft <= N
    record("twin-deleted", recover_s=round(recovered, 2), min_ready=s.min_ready)


def test_deleting_the_target_fails_the_rollout_and_keeps_the_twin(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory
) -> None:
    ns = namespace
    started(cluster, ns, operators)
    t0 = time.monotonic()
    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Failed", 60, "Failed")
    detected = time.monotonic() - t0
    st = ftr_status(cluster, ns, "web")
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Progressing"]["reason"] == "TargetNotFound"
    assert "web" in st["message"]
    time.sleep(3)
    assert replicas(cluster, ns, "web-ft") == (5, 5), "the twin (serving traffic) was touched"
    assert [e["reason"] for e in events(cluster, ns, "web")].count("TargetNotFound") == 1
    # The target comes back: the rollout picks it up again (from step 0 of a new revision).
    apply(cluster, ns, deployment("web", N))
    wait_for(
        lambda: ftr_status(cluster, ns, "web").get("phase") in ("Progressing", "Paused"),
        90,
        "the rollout to resume once the target is back",
    )
    record("target-deleted", detect_s=round(detected, 2), twin_kept=True)


def test_changing_the_targets_selector(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory
) -> None:
    ns = namespace
    started(cluster, ns, operators)
    rev1 = ftr_status(cluster, ns, "web")["revision"]
    # apps/v1 selectors are immutable: the apiserver refuses the edit, nothing changes.
    proc = cluster.kubectl(
        "patch", "deployment", "web", "-n", ns, "--type=merge",
        "-p", '{"spec":{"selector":{"matchLabels":{"app":"web","tier":"x"}}}}',
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "immutable" in proc.stderr
    # The only way is delete + create with a new selector (and so a new template).
    t0 = time.monotonic()
    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    new = deployment("web", N)
    new["spec"]["selector"]["matchLabels"]["tier"] = "x"
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    apply(cluster, ns, new)

    def rebuilt() -> bool:
        twin = get(cluster, ns, "deployment", "web-ft") or {}
        sel = twin.get("spec", {}).get("selector", {}).get("matchLabels", {})
        st = ftr_status(cluster, ns, "web")
        return (
            sel.get("tier") == "x"
            and st.get("revision") not in (None, rev1)
            and at_half(cluster, ns)
        )

    try:
        wait_for(rebuilt, 60, "a new revision with a twin on the new selector at 5 + 5")
    except AssertionError as exc:
        twin = get(cluster, ns, "deployment", "web-ft") or {}
        raise AssertionError(
            f"{exc}\nstatus: {ftr_status(cluster, ns, 'web')}\ntwin: {twin.get('spec')}"
            f"\n{replicas(cluster, ns, 'web')} {replicas(cluster, ns, 'web-ft')}"
        ) from None
    recovered = time.monotonic() - t0
    reasons = [e["reason"] for e in events(cluster, ns, "web")]
    assert "NewRevision" in reasons or "RolloutStarted" in reasons
    record("target-selector-changed", recover_s=round(recovered, 2),
           behaviour="edit refused (immutable); delete+recreate = new revision, "
           "standard back to N, twin re-created on the new selector")  # fmt: skip


def test_a_second_writer_patching_the_rollout_all_along(
    cluster: LocalCluster, namespace: str, operators: OperatorFactory, api: Any
) -> None:
    ns = namespace
    ready_deployment(cluster, ns, N)
    op = operators(ns)
    stop = threading.Event()
    patches = 0

    custom = kubernetes.client.CustomObjectsApi(api)
    apps = kubernetes.client.AppsV1Api(api)

    def writer() -> None:
        nonlocal patches
        while not stop.is_set():
            meta = {"metadata": {"annotations": {"other.example/tick": str(patches)}}}
            with contextlib.suppress(kubernetes.client.exceptions.ApiException):
                custom.patch_namespaced_custom_object(
                    "freethreaded.dev", "v1alpha1", ns, "freethreadedrollouts", "web", meta
                )
                apps.patch_namespaced_deployment("web", ns, meta)
                patches += 1
            time.sleep(0.02)

    steps = [
        {"weight": 10, "pause": {"duration": "1s"}},
        {"weight": 50, "pause": {"duration": "1s"}},
        {"weight": 100, "pause": {"duration": "1s"}},
    ]
    t = threading.Thread(target=writer, daemon=True)
    t0 = time.monotonic()
    with Sampler(api, ns) as s:
        apply(cluster, ns, rollout("web", "web", steps))
        t.start()
        try:
            wait_for(lambda: ftr_status(cluster, ns, "web").get("phase") == "Promoted", 120,
                     "Promoted despite the other writer")  # fmt: skip
        finally:
            stop.set()
            t.join()
        elapsed = time.monotonic() - t0
    s.assert_capacity_and_no_double_scale()
    s.assert_progress_never_reset()
    assert patches > 20
    assert op.proc is not None
    assert op.proc.poll() is None
    assert "Traceback" not in op.log_path.read_text(errors="replace")
    record("second-writer", patches=patches, total_s=round(elapsed, 2), min_ready=s.min_ready)
