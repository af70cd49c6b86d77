"""Startup failures of the free-threaded image end to end: a step whose twin pods never become
Ready rolls back once spec.progressDeadline has passed, quoting what the kubelet reported.

kwok marks every pod on its nodes Ready at once, so the twin's pods are kept off the nodes: the
target's template carries a pod anti-affinity against the free-threaded track (topology: every
kwok node), which the standard pods satisfy and the twin's pods, a copy of that template, do not.
The test then plays the kubelet of those pods and writes the status a real one would write for
a dependency without a free-threaded wheel (CrashLoopBackOff, exit code 1, the ImportError as
termination message) or a wrong tag (ImagePullBackOff).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from e2e_operator import (
    OperatorProcess,
    apply,
    deployment,
    events,
    ftr_status,
    replicas,
    rollout,
    wait_for,
)

from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e
N = 2
TRACK = "freethreaded.dev/track=free-threaded"


def kept_off_the_nodes(name: str, n: int) -> dict[str, Any]:
    doc = deployment(name, n)
    doc["spec"]["template"]["spec"]["affinity"] = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"freethreaded.dev/track": "free-threaded"}},
                    "topologyKey": "type",  # every kwok node has type=kwok
                }
            ]
        }
    }
    return doc


def crash_loop(image: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "name": "app",
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 3,
        "started": False,
        "state": {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container=app",
            }
        },
        "lastState": {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "message": 'Traceback (most recent call last):\n  File "/app/main.py", line 3, '
                "in <module>\n    import _foo\nModuleNotFoundError: No module named '_foo'\n",
                "startedAt": now,
                "finishedAt": now,
            }
        },
    }


def image_pull_back_off(image: str) -> dict[str, Any]:
    return {
        "name": "app",
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}"',
            }
        },
    }


def ft_pods(cluster: LocalCluster, ns: str) -> list[str]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", TRACK, "-o", "name").stdout
    return sorted(line.split("/", 1)[1] for line in out.split())


def play_kubelet(cluster: LocalCluster, ns: str, container_status: dict[str, Any]) -> None:
    """Write `container_status` on every free-threaded pod, once each."""
    done: set[str] = set()

    def all_patched() -> bool:
        pods = ft_pods(cluster, ns)
        for pod in pods:
            if pod not in done:
                patch = {"status": {"containerStatuses": [container_status]}}
                cluster.kubectl(
                    "patch", "pod", pod, "-n", ns, "--subresource=status", "--type=strategic",
                    "-p", json.dumps(patch),
                )  # fmt: skip
                done.add(pod)
        return len(pods) == N // 2 and set(pods) <= done

    wait_for(all_patched, 60, "the free-threaded pods reported failing")


@pytest.mark.parametrize(
    ("image", "container_status", "quoted"),
    [
        (
            "example/app:3.14t",
            crash_loop("example/app:3.14t"),
            [
                "CrashLoopBackOff",
                "Error (exit code 1)",
                "ModuleNotFoundError: No module named '_foo'",
            ],
        ),
        (
            "example/app:3.14t-typo",
            image_pull_back_off("example/app:3.14t-typo"),
            ["ImagePullBackOff", 'Back-off pulling image "example/app:3.14t-typo"'],
        ),
    ],
    ids=["crash-loop", "image-pull"],
)
def test_twin_pods_never_ready_roll_back_at_the_progress_deadline(
    operator: OperatorProcess,
    cluster: LocalCluster,
    namespace: str,
    image: str,
    container_status: dict[str, Any],
    quoted: list[str],
) -> None:
    apply(cluster, namespace, kept_off_the_nodes("web", N))
    wait_for(lambda: replicas(cluster, namespace, "web") == (N, N), 90, "standard pods Ready")
    doc = rollout(
        "web", "web", [{"weight": 50, "pause": {}}, {"weight": 100}], progressDeadline="20s"
    )
    doc["spec"]["freeThreaded"]["image"] = image
    started = time.monotonic()
    apply(cluster, namespace, doc)
    play_kubelet(cluster, namespace, container_status)
    assert ftr_status(cluster, namespace, "web").get("phase") == "Progressing"

    wait_for(
        lambda: ftr_status(cluster, namespace, "web").get("phase") == "RolledBack",
        90,
        "RolledBack at the progress deadline",
    )
    assert time.monotonic() - started >= 20  # not before the deadline
    st = ftr_status(cluster, namespace, "web")
    assert st["rollback"]["reason"] == "ProgressDeadline"
    message = st["rollback"]["message"]
    assert "0/1 free-threaded pods Ready" in message
    for words in quoted:
        assert words in message, message
    rolled = [
        e["message"] for e in events(cluster, namespace, "web") if e["reason"] == "RolledBack"
    ]
    assert len(rolled) == 1
    assert rolled[0].startswith("ProgressDeadline: ")
    # Capacity never left the standard track; the twin is scaled away.
    assert replicas(cluster, namespace, "web") == (N, N)
    wait_for(lambda: replicas(cluster, namespace, "web-ft")[0] == 0, 30, "twin scaled to 0")
