"""GitOps (issue 18, item 2): a controller re-applying the target from Git with server-side apply
under its own field manager, as Argo CD and Flux do, during a full rollout.

The re-applier is `kubectl apply --server-side --field-manager=gitops --force-conflicts` every
2.5 s. The target's spec.replicas is audited through a watch (every value it takes, so a fight
that lasts a few milliseconds is still seen) and Ready capacity is sampled.

Write bound: in a rollout nobody else scales, the operator only ever lowers the target's
replicas (N -> the split of each step -> 0 at promotion, in as many writes as the capacity rule
needs: one per twin pod becoming Ready at most), so the target's spec.replicas takes at most N
distinct new values and never goes up. A fight shows as the value going up (the Git copy's N)
and down again (the operator's split) once per re-apply.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_operator import (
    OperatorProcess,
    deployment,
    events,
    ftr_status,
    phase_is,
    replicas,
    rollout,
    split_is,
    wait_for,
)
from test_engine import CapacityWatch

from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
N = 10
STEPS = [
    {"weight": 10, "pause": {"duration": "2s"}},
    {"weight": 50, "pause": {"duration": "2s"}},
    {"weight": 100},
]
INTERVAL = 2.5


def git_copy(namespace: str, with_replicas: int | None) -> dict[str, Any]:
    doc = deployment("web", N, namespace=namespace)
    if with_replicas is None:
        del doc["spec"]["replicas"]
    else:
        doc["spec"]["replicas"] = with_replicas
    return doc


class Reapplier:
    """`kubectl apply --server-side --field-manager=gitops --force-conflicts` every INTERVAL s of
    the manifest `render()` returns (read again each time: a tool may copy live values)."""

    def __init__(
        self, cluster: LocalCluster, path: Path, render: Callable[[], dict[str, Any]]
    ) -> None:
        self.cluster, self.path, self.render = cluster, path, render
        self.applied = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def apply_once(self) -> None:
        self.path.write_text(yaml.safe_dump(self.render()))
        out = self.cluster.kubectl(
            "apply", "--server-side", "--field-manager=gitops", "--force-conflicts",
            "-f", str(self.path), check=False,
        )  # fmt: skip
        if out.returncode == 0:
            self.applied += 1
        else:
            self.errors.append(out.stderr.strip())

    def _run(self) -> None:
        while not self.stop.wait(INTERVAL):
            self.apply_once()

    def __enter__(self) -> Reapplier:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


class ReplicasAudit:
    """Every value the target's spec.replicas takes, from a watch."""

    def __init__(self, cluster: LocalCluster, namespace: str, name: str) -> None:
        kubectl = cluster.binaries.kubectl
        assert kubectl is not None
        self.proc = subprocess.Popen(
            [
                str(kubectl), f"--kubeconfig={cluster.kubeconfig}", "get", "deployment", name,
                "-n", namespace, "--watch", "-o", r'jsonpath={.spec.replicas}{"\n"}',
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self.values: list[int] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            value = int(line.strip() or 0)
            if not self.values or self.values[-1] != value:
                self.values.append(value)

    def close(self) -> list[int]:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=10)
        return self.values


def rises(values: list[int]) -> int:
    return sum(1 for a, b in itertools.pairwise(values) if b > a)


def start(cluster: LocalCluster, ns: str, tmp_path: Path, first_sync: dict[str, Any]) -> Path:
    """The first sync from Git creates the service; its N Ready pods are the starting point."""
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(first_sync))
    cluster.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(path))
    return path


def run_rollout(cluster: LocalCluster, ns: str) -> None:
    cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(rollout("web", "web", STEPS))
    )
    wait_for(lambda: phase_is(cluster, ns, "Promoted"), 120, "Promoted")
    wait_for(lambda: split_is(cluster, ns, 0, N), 60, f"0 + {N} Ready")


def test_a_git_copy_without_replicas_never_fights_the_operator(
    operator: OperatorProcess, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """The recipe: the Git copy leaves spec.replicas out (Flux/kustomize), and the count is set
    by someone else (here `kubectl scale`, as a person or an HPA would)."""
    ns = namespace
    path = start(cluster, ns, tmp_path, git_copy(ns, None))
    cluster.kubectl("scale", "deployment", "web", "-n", ns, f"--replicas={N}")
    wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 90, f"{N} Ready")
    audit = ReplicasAudit(cluster, ns, "web")
    with (
        CapacityWatch(cluster, ns, "web") as cap,
        Reapplier(cluster, path, lambda: git_copy(ns, None)) as git,
    ):
        run_rollout(cluster, ns)
        # Promoted and quiet: the re-applies go on and the operator writes nothing at all. (At
        # least 5 re-applies in all, however few ticks a loaded machine gave the thread.)
        git.apply_once()
        while git.applied < 2:
            git.apply_once()
        time.sleep(1)
        writes = operator.metric("ftrollout_api_writes_total")
        for _ in range(3):
            git.apply_once()
        time.sleep(2)
        assert operator.metric("ftrollout_api_writes_total") == writes
        assert split_is(cluster, ns, 0, N)
    values = audit.close()
    assert not git.errors, git.errors
    assert git.applied >= 5
    assert cap.min_ready >= N, f"capacity dropped to {cap.min_ready}"
    assert values[0] == N, values
    assert values[-1] == 0, values
    assert rises(values) == 0, f"the target's replicas went back up: {values}"
    assert len(values) - 1 <= N, values
    assert ftr_status(cluster, ns, "web")["replicas"]["target"] == N
    reasons = [e["reason"] for e in events(cluster, ns, "web")]
    assert "TargetScaled" not in reasons
    assert "ReplicasReapplied" not in reasons


def test_a_re_apply_of_the_live_replicas_is_not_a_scale(
    operator: OperatorProcess, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """Argo CD with `ignoreDifferences` on /spec/replicas and `RespectIgnoreDifferences=true`
    applies the live value: the gitops manager then co-owns the value the operator wrote. Taken
    for a scale, N shrank at every re-apply (10 -> 9 -> 5 ...) and the service with it."""
    ns = namespace
    path = start(cluster, ns, tmp_path, git_copy(ns, N))
    wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 90, f"{N} Ready")
    audit = ReplicasAudit(cluster, ns, "web")

    def live_copy() -> dict[str, Any]:
        return git_copy(ns, replicas(cluster, ns, "web")[0])

    with CapacityWatch(cluster, ns, "web") as cap, Reapplier(cluster, path, live_copy) as git:
        run_rollout(cluster, ns)
        for _ in range(2):
            git.apply_once()
        while git.applied < 5:  # however few ticks a loaded machine gave the re-applier
            git.apply_once()
        # A stale copy: the value the operator wrote at the 50 % step, read before and applied
        # after its promotion (the re-applier above does this by chance when its read and its
        # apply straddle an operator write; here on purpose). Taken for a scale, N became 5.
        path.write_text(yaml.safe_dump(git_copy(ns, N // 2)))
        cluster.kubectl(
            "apply", "--server-side", "--field-manager=gitops", "--force-conflicts",
            "-f", str(path),
        )  # fmt: skip
        wait_for(lambda: split_is(cluster, ns, 0, N), 60, f"0 + {N} Ready after the stale copy")
        time.sleep(2)
        assert split_is(cluster, ns, 0, N)
    values = audit.close()
    assert not git.errors, git.errors
    assert git.applied >= 5
    assert cap.min_ready >= N, f"capacity dropped to {cap.min_ready}"
    assert ftr_status(cluster, ns, "web")["replicas"]["target"] == N
    # A copy is never a new value: whenever the target goes up, it is back to a value it held
    # before (a copy that was stale when applied), and the operator lowers it again.
    new_highs = [
        b
        for j, (a, b) in enumerate(itertools.pairwise(values))
        if b > a and b not in values[: j + 1]
    ]
    assert not new_highs, values
    assert rises(values) <= git.applied + 1, values
    assert values[-1] == 0, values
    reasons = [e["reason"] for e in events(cluster, ns, "web")]
    assert "TargetScaled" not in reasons


def test_a_git_copy_holding_replicas_fights_but_never_costs_capacity(
    operator: OperatorProcess, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """Without the recipe: every forced re-apply sets the target back to N. That is the total the
    operator already has, so it is no new N: the operator writes its split again (one write per
    re-apply), capacity never drops, the rollout completes, and each fight is a Warning naming
    the manager and the fix."""
    ns = namespace
    path = start(cluster, ns, tmp_path, git_copy(ns, N))
    wait_for(lambda: replicas(cluster, ns, "web") == (N, N), 90, f"{N} Ready")
    audit = ReplicasAudit(cluster, ns, "web")
    with (
        CapacityWatch(cluster, ns, "web") as cap,
        Reapplier(cluster, path, lambda: git_copy(ns, N)) as git,
    ):
        run_rollout(cluster, ns)
        git.apply_once()
        wait_for(lambda: split_is(cluster, ns, 0, N), 60, "the target back at 0")
    values = audit.close()
    assert not git.errors, git.errors
    assert cap.min_ready >= N, f"capacity dropped to {cap.min_ready}"
    assert ftr_status(cluster, ns, "web")["replicas"]["target"] == N
    # Each re-apply raises the target once and the operator lowers it once: no more.
    assert 1 <= rises(values) <= git.applied, (values, git.applied)
    assert len(values) - 1 <= N + 2 * git.applied, values
    warnings = [e for e in events(cluster, ns, "web") if e["reason"] == "ReplicasReapplied"]
    assert warnings
    assert "gitops" in warnings[0]["message"]
    assert "TargetScaled" not in [e["reason"] for e in events(cluster, ns, "web")]
