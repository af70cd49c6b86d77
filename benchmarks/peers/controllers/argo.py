"""Argo Rollouts v1.10.2: its controller process, its Rollouts (2 replicas, canary steps
`setWeight: 50`, `pause: {}`) brought to Paused by a new pod template, and its promote / abort
(what `kubectl argo rollouts` writes)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from scale import Watcher, wait

from ..common import NAMESPACE, STANDARD_IMAGE, TO_FT_IMAGE, WRITE_VERBS
from .base import Controller, Peer, PeerProcess, Run, install_crds, scrape

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "rollouts"
# Argo Rollouts v1.10.2, pkg/kubectl-argo-rollouts/cmd/promote/promote.go (getPatches, default
# case): a canary paused at a `pause: {}` step (pause conditions set, spec.paused false) is
# promoted by this merge patch of the status subresource; cmd/abort/abort.go: abortPatch.
ARGO_PROMOTE = {"status": {"pauseConditions": None}}
ARGO_ABORT = {"status": {"abort": True}}
ARGO_NO_CRASH_ROW = (
    "Argo Rollouts does not act on a crashed canary pod by itself: its rollout controller "
    "watches ReplicaSets, not pods (rollout/controller.go ControllerConfig), and aborts only "
    "on a failed AnalysisRun, Experiment or step plugin (rollout/analysis.go, experiment.go, "
    "stepplugin.go) or, with spec.progressDeadlineAbort, a progress deadline, which an "
    "indefinite `pause: {}` step never runs into (rollout/sync.go isIndefiniteStep, "
    "evaluateProgressDeadlineAbort)"
)


class ArgoRolloutsController(PeerProcess):
    name = "argo-rollouts"
    WRITES = re.compile(r'^controller_clientset_k8s_request_total\{[^}]*verb="(\w+)"[^}]*\} (\S+)')

    def __init__(self, cluster: Any, work: Path, exe: Path, args: argparse.Namespace) -> None:
        from ftrollout_dev.localcluster import free_port

        self.port = free_port()
        self.log_path = work / "argo-rollouts.log"
        cmd = [
            str(exe),
            f"--kubeconfig={cluster.kubeconfig}",
            f"--metricsPort={self.port}",
            f"--healthzPort={free_port()}",
            f"--qps={args.qps}",
            f"--burst={args.burst}",
            "--leader-elect=false",
            "--loglevel=warn",
            "--logformat=json",
        ]
        self._launch(
            cmd,
            cluster,
            f"http://127.0.0.1:{self.port}/metrics",
            "argo-rollouts metrics endpoint did not come up",
        )

    def own_writes(self) -> float:
        total = 0.0
        for line in scrape(f"http://127.0.0.1:{self.port}/metrics").splitlines():
            m = self.WRITES.match(line)
            if m and m.group(1).upper() in {"CREATE", "UPDATE", "PATCH", "DELETE", *WRITE_VERBS}:
                total += float(m.group(2))
        return total


# The query of ftrollout's `error-ratio` metric (benchmarks/scale.py), over the rollout's pods.
_PODS = 'namespace="' + NAMESPACE + '", pod=~"{{args.name}}-.*"'
ARGO_ERROR_RATIO = (
    "sum(rate(http_errors_total{" + _PODS + "}[30s])) / "
    "sum(rate(http_requests_total{" + _PODS + "}[30s]))"
)


def argo_analysis_template(prometheus: str) -> dict[str, Any]:
    """One metric every 30 s for as long as the canary runs (no count), like ftrollout's
    analysis interval: a background analysis of the canary strategy."""
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "error-ratio"},
        "spec": {
            "args": [{"name": "name"}],
            "metrics": [
                {
                    "name": "error-ratio",
                    "interval": "30s",
                    "successCondition": "result[0] <= 0.01",
                    "failureLimit": 1,
                    "provider": {"prometheus": {"address": prometheus, "query": ARGO_ERROR_RATIO}},
                }
            ],
        },
    }


def argo_rollout(name: str, replicas: int, analysing: bool = False) -> dict[str, Any]:
    labels = {"app": name}
    canary: dict[str, Any] = {"steps": [{"setWeight": 50}, {"pause": {}}]}
    if analysing:
        canary["analysis"] = {
            "templates": [{"templateName": "error-ratio"}],
            "args": [{"name": "name", "value": name}],
        }
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": STANDARD_IMAGE}],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
            "progressDeadlineSeconds": 3600,
            "strategy": {"canary": canary},
        },
    }


def argo_summary(o: dict[str, Any]) -> dict[str, Any]:
    st = o.get("status") or {}
    return {
        "phase": st.get("phase"),
        "step": st.get("currentStepIndex"),
        "available": st.get("availableReplicas") or 0,
        "updated": st.get("updatedReplicas") or 0,
        "paused": bool(st.get("pauseConditions")),
        "generation_seen": str(st.get("observedGeneration") or ""),
        "generation": (o.get("metadata") or {}).get("generation"),
    }


def rs_summary(o: dict[str, Any]) -> dict[str, Any]:
    """An Argo ReplicaSet: its Rollout, image (canary or stable) and desired replicas."""
    owners = o["metadata"].get("ownerReferences") or []
    containers = ((o.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers")
    return {
        "owner": next((r["name"] for r in owners if r.get("kind") == "Rollout"), None),
        "image": (containers or [{}])[0].get("image"),
        "replicas": (o.get("spec") or {}).get("replicas", 0),
    }


class Argo(Peer):
    name = "argo-rollouts"
    workload = "ReplicaSet"
    cli = "kubectl argo rollouts"
    abort_verb = "abort"
    promote_request = "status.pauseConditions cleared (status subresource)"
    promote_end = "canary ReplicaSet's spec.replicas raised"
    abort_request = "status.abort: true (status subresource)"
    no_crash = ARGO_NO_CRASH_ROW
    ready_log = "{n} Rollouts Healthy in {s} s; starting the canaries"

    def install(self, cluster: Any, res: dict[str, Any]) -> None:
        from ftrollout_dev.peers import ARGO_ROLLOUTS

        _, crds = ARGO_ROLLOUTS.require()
        res["argo_version"] = ARGO_ROLLOUTS.version
        install_crds(cluster, crds, ["crd/rollouts.argoproj.io"])

    def watchers(self, apps: Any, custom: Any) -> tuple[Watcher, Watcher | None]:
        objs = Watcher(
            "rollouts",
            custom.list_namespaced_custom_object,
            (ARGO_GROUP, ARGO_VERSION, NAMESPACE, ARGO_PLURAL),
            argo_summary,
        )
        return objs, None

    def start(
        self,
        cluster: Any,
        work: Path,
        custom: Any,
        prom_url: str,
        args: argparse.Namespace,
        analysing: bool,
    ) -> Controller:
        from ftrollout_dev.peers import ARGO_ROLLOUTS

        exe, _ = ARGO_ROLLOUTS.require()
        if analysing:
            custom.create_namespaced_custom_object(
                ARGO_GROUP,
                ARGO_VERSION,
                NAMESPACE,
                "analysistemplates",
                argo_analysis_template(prom_url),
            )
        return ArgoRolloutsController(cluster, work, exe, args)

    def create(self, run: Run) -> None:
        custom, targets, args, objs = run.custom, run.targets, run.args, run.objs
        list(
            run.pool.map(
                lambda t: custom.create_namespaced_custom_object(
                    ARGO_GROUP,
                    ARGO_VERSION,
                    NAMESPACE,
                    ARGO_PLURAL,
                    argo_rollout(t, args.replicas, run.analysing),
                    _preload_content=False,
                ),
                targets,
            )
        )

        def healthy() -> int:
            snap = objs.snapshot()
            return sum(
                1
                for t in targets
                if (s := snap.get(t))
                and s["phase"] == "Healthy"
                and s["available"] == args.replicas
            )

        n = run.n
        wait(
            "Rollouts Healthy",
            lambda: healthy() == n,
            1800,
            progress=lambda: f"{healthy()}/{n}",
        )

    def change(self, run: Run) -> None:
        custom = run.custom
        list(
            run.pool.map(
                lambda t: custom.patch_namespaced_custom_object(
                    ARGO_GROUP,
                    ARGO_VERSION,
                    NAMESPACE,
                    ARGO_PLURAL,
                    t,
                    TO_FT_IMAGE,
                    _preload_content=False,
                ),
                run.targets,
            )
        )

    def at_step(self, run: Run) -> int:
        snap = run.objs.snapshot()
        return sum(
            1
            for t in run.targets
            if (s := snap.get(t))
            and s["phase"] == "Paused"
            and s["paused"]
            and s["updated"] >= 1
            and s["available"] >= run.args.replicas
        )

    def _patch_status(self, custom: Any, name: str, body: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object_status(
            ARGO_GROUP, ARGO_VERSION, NAMESPACE, ARGO_PLURAL, name, body, _preload_content=False
        )

    def promote(self, custom: Any, name: str) -> None:
        self._patch_status(custom, name, ARGO_PROMOTE)

    def abort(self, custom: Any, name: str) -> None:
        self._patch_status(custom, name, ARGO_ABORT)
