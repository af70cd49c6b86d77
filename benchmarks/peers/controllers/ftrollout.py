"""ftrollout: the operator as a process (scale.Operator), its FreeThreadedRollouts of N ready
Deployments (steps 50 % / 100 %, each waiting for a promote) paused at their first step, and
its promote / rollback / crashed twin pod (what `kubectl ftr` writes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import scale
from scale import Watcher, create_deployments, twin_pod

from ..common import DEADLINE, FT_IMAGE, NAMESPACE
from .base import Controller, Peer, Run, established


class Ftrollout(Controller):
    name = "ftrollout"

    def __init__(
        self,
        cluster: Any,
        work: Path,
        prom_url: str,
        args: argparse.Namespace,
        pythonpath: str | None = None,
    ) -> None:
        self.op = scale.Operator(
            cluster,
            work,
            ["--qps", str(args.qps), "--burst", str(args.burst), "--prometheus-url", prom_url],
            extra_env=None if pythonpath is None else {"PYTHONPATH": pythonpath},
        )
        self.pid = self.op.pid

    def own_writes(self) -> float:
        return self.op.metrics().get("ftrollout_api_writes_total", 0.0)

    def reconciles(self) -> float:
        return self.op.metrics().get("ftrollout_reconcile_duration_seconds_count", 0.0)

    def stop(self) -> None:
        self.op.stop()


def ftr_rollout(name: str, prometheus: str, analysing: bool = False) -> dict[str, Any]:
    """scale.rollout: analysis every 30 s, or (idle mode) none."""
    body = scale.rollout(name, name, prometheus, "30s")
    # On a loaded machine 1000 twins can take longer than the default 10 minutes to be Ready.
    body["spec"]["progressDeadline"] = DEADLINE
    if not analysing:
        del body["spec"]["analysis"]
    return body


class FtrolloutPeer(Peer):
    name = "ftrollout"
    workload = "Deployment"
    cli = "kubectl ftr"
    abort_verb = "rollback"
    promote_end = "twin's spec.replicas raised"
    ready_log = "{n} Deployments Ready in {s} s; creating the rollouts"

    @property
    def promote_request(self) -> str:  # type: ignore[override]
        from ftrollout.cli.plugin import ANNOTATION_ACTION

        return f"{ANNOTATION_ACTION}=promote@<id>"

    @property
    def abort_request(self) -> str:  # type: ignore[override]
        from ftrollout.cli.plugin import ANNOTATION_ACTION

        return f"{ANNOTATION_ACTION}=rollback@<id>"

    def install(self, cluster: Any, res: dict[str, Any]) -> None:
        cluster.kubectl("apply", "--server-side", "-f", str(scale.CRD))
        established(cluster, "crd/freethreadedrollouts.freethreaded.dev")

    def watchers(self, apps: Any, custom: Any) -> tuple[Watcher, Watcher | None]:
        objs = Watcher(
            "ftrs",
            custom.list_namespaced_custom_object,
            (scale.GROUP, scale.VERSION, NAMESPACE, scale.PLURAL),
            scale.ftr_summary,
        )
        deps = Watcher(
            "deployments",
            apps.list_namespaced_deployment,
            (NAMESPACE,),
            scale.deploy_summary,
        )
        return objs, deps

    def start(
        self,
        cluster: Any,
        work: Path,
        custom: Any,
        prom_url: str,
        args: argparse.Namespace,
        analysing: bool,
    ) -> Controller:
        return Ftrollout(cluster, work, prom_url, args)

    def create(self, run: Run) -> None:
        assert run.deps is not None
        create_deployments(run.pool, run.apps, run.deps, run.targets, run.args.replicas, 1800)

    def change(self, run: Run) -> None:
        custom = run.custom
        list(
            run.pool.map(
                lambda t: custom.create_namespaced_custom_object(
                    scale.GROUP,
                    scale.VERSION,
                    NAMESPACE,
                    scale.PLURAL,
                    ftr_rollout(t, run.prom_url, run.analysing),
                    _preload_content=False,
                ),
                run.targets,
            )
        )

    def at_step(self, run: Run) -> int:
        assert run.deps is not None
        snap, dsnap = run.objs.snapshot(), run.deps.snapshot()
        count = 0
        for t in run.targets:
            f, twin = snap.get(t), dsnap.get(f"{t}-ft")
            if f and f["phase"] == "Paused" and f["step"] == 0 and twin and twin["ready"] >= 1:
                count += 1
        return count

    def _action(self, custom: Any, name: str, action: str) -> None:
        from ftrollout.cli.plugin import ANNOTATION_ACTION, request_id

        custom.patch_namespaced_custom_object(
            scale.GROUP,
            scale.VERSION,
            NAMESPACE,
            scale.PLURAL,
            name,
            {"metadata": {"annotations": {ANNOTATION_ACTION: f"{action}@{request_id()}"}}},
            _preload_content=False,
        )

    def promote(self, custom: Any, name: str) -> None:
        self._action(custom, name, "promote")

    def abort(self, custom: Any, name: str) -> None:
        self._action(custom, name, "rollback")

    def crash(self, core: Any, pods: dict[str, dict[str, Any]], name: str) -> None:
        """One twin pod's status: its container terminated with exit 139 (SIGSEGV)."""
        from ftrollout_dev.simulator import crash_status_patch

        pod = twin_pod(pods, name)
        if pod is None:
            raise RuntimeError(f"no twin pod for {name}")
        core.patch_namespaced_pod_status(
            pod, NAMESPACE, crash_status_patch("app", FT_IMAGE), _preload_content=False
        )
