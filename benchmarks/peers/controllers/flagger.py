"""Flagger v1.36.1 (kubernetes provider: blue/green only): its controller out of cluster, the
confirm-promotion gate this process serves (always 403), its Canaries of N ready Deployments
held at WaitingPromotion after a new pod template. No latency figures (FLAGGER_NO_LATENCY)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from processes import QuietHandler, serve
from scale import Watcher, create_deployments, deploy_summary, wait

from ..common import NAMESPACE, TO_FT_IMAGE
from .base import Controller, Peer, PeerProcess, Run, install_crds

FLAGGER_GROUP, FLAGGER_VERSION, FLAGGER_PLURAL = "flagger.app", "v1beta1", "canaries"
# Flagger's per-canary scheduler ticks every analysis.interval (the docs' examples use 1m, the
# default is 60s); 30 s is ftrollout's analysis interval and Argo's AnalysisTemplate interval.
FLAGGER_INTERVAL = "30s"
# Blue/green iterations before the promotion gate: 2, not 1, so that the gate's "not ready"
# (which takes status.iterations back by one, scheduler_hooks.go runConfirmPromotionHooks)
# never brings it to 0, where a tick runs the pre-rollout hooks instead of the metric checks.
FLAGGER_ITERATIONS = 2
FLAGGER_NO_LATENCY = (
    "Flagger acts on a canary only at its analysis tick (every analysis.interval, 30 s here; "
    "pkg/controller/scheduler.go: one ticker per canary, no watch on the canary's objects "
    "drives it), so a promote (gate opened) or rollback (rollback webhook) latency measures "
    "where in the 30 s the request fell, not the controller"
)


class PromotionGate:
    """Flagger's `confirm-promotion` webhook target, served from this process: every call is
    answered 403 "not ready", so each canary stays at its analysis with canary and primary
    both running. Counts the calls: one per canary every other analysis tick once it waits (the
    tick between puts status.iterations back up, see README.md)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        gate = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with gate.lock:
                    gate.calls += 1
                self.reply(403, b"not ready\n")

        self.server = serve(Handler, "gate")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/gate/halt"

    def count(self) -> int:
        with self.lock:
            return self.calls

    def close(self) -> None:
        self.server.shutdown()


class FlaggerController(PeerProcess):
    """Flagger's controller out of cluster: the kubernetes provider (no mesh), Prometheus at
    the run's server, the same client limits (-kubeconfig-qps/-kubeconfig-burst), no leader
    election. Flagger exports no count of its own API requests (no client-go metrics)."""

    name = "flagger"

    def __init__(
        self, cluster: Any, work: Path, exe: Path, prom_url: str, args: argparse.Namespace
    ) -> None:
        from ftrollout_dev.localcluster import free_port

        self.port = free_port()
        self.log_path = work / "flagger.log"
        self.gate = PromotionGate()
        cmd = [
            str(exe),
            f"-kubeconfig={cluster.kubeconfig}",
            f"-kubeconfig-qps={int(args.qps)}",
            f"-kubeconfig-burst={args.burst}",
            "-mesh-provider=kubernetes",
            f"-metrics-server={prom_url}",
            f"-port={self.port}",
            "-enable-leader-election=false",
            "-log-level=warn",
        ]
        try:
            self._launch(
                cmd,
                cluster,
                f"http://127.0.0.1:{self.port}/healthz",
                "flagger's /healthz did not come up",
            )
        except RuntimeError:
            self.gate.close()
            raise

    def own_writes(self) -> float | None:
        return None

    def gate_calls(self) -> int:
        return self.gate.count()

    def stop(self) -> None:
        super().stop()
        self.gate.close()


# ftrollout's error-ratio over the canary's pods, as Flagger's MetricTemplate: {{ target }} is
# the Deployment Flagger runs as the canary; its pods are <target>-<hash>-<id>, and the anchored
# pattern leaves out the primary's <target>-primary-<hash>-<id>.
_FLAGGER_PODS = 'namespace="{{ namespace }}", pod=~"{{ target }}-[0-9a-z]+-[0-9a-z]+"'
FLAGGER_ERROR_RATIO = (
    "sum(rate(http_errors_total{" + _FLAGGER_PODS + "}[30s])) / "
    "sum(rate(http_requests_total{" + _FLAGGER_PODS + "}[30s]))"
)


def flagger_metric_template(prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{FLAGGER_GROUP}/{FLAGGER_VERSION}",
        "kind": "MetricTemplate",
        "metadata": {"name": "error-ratio"},
        "spec": {
            "provider": {"type": "prometheus", "address": prometheus},
            "query": FLAGGER_ERROR_RATIO,
        },
    }


def flagger_canary(name: str, gate_url: str, analysing: bool = False) -> dict[str, Any]:
    """A Canary of the Deployment `name` with the kubernetes provider (blue/green: the only
    strategy it has), held before promotion by a confirm-promotion gate that never opens."""
    analysis: dict[str, Any] = {
        "interval": FLAGGER_INTERVAL,
        "iterations": FLAGGER_ITERATIONS,
        "threshold": 5,
        "webhooks": [
            {
                "name": "promotion-gate",
                "type": "confirm-promotion",
                "url": gate_url,
                "timeout": "5s",
                "muteAlert": True,
            }
        ],
    }
    if analysing:
        analysis["metrics"] = [
            {
                "name": "error-ratio",
                "templateRef": {"name": "error-ratio"},
                "thresholdRange": {"max": 0.01},
                "interval": "30s",
            }
        ]
    return {
        "apiVersion": f"{FLAGGER_GROUP}/{FLAGGER_VERSION}",
        "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 3600,
            "service": {"port": 80, "targetPort": 8080},
            "analysis": analysis,
        },
    }


def flagger_summary(o: dict[str, Any]) -> dict[str, Any]:
    st = o.get("status") or {}
    return {"phase": st.get("phase"), "iterations": st.get("iterations") or 0}


class Flagger(Peer):
    name = "flagger"
    no_latency = FLAGGER_NO_LATENCY
    ready_log = "{n} Canaries Initialized (primary Ready) in {s} s; new revision of every target"

    def install(self, cluster: Any, res: dict[str, Any]) -> None:
        from ftrollout_dev.peers import FLAGGER

        _, crds = FLAGGER.require()
        res["flagger_version"] = FLAGGER.version
        install_crds(cluster, crds, ["crd/canaries.flagger.app", "crd/metrictemplates.flagger.app"])

    def watchers(self, apps: Any, custom: Any) -> tuple[Watcher, Watcher | None]:
        objs = Watcher(
            "canaries",
            custom.list_namespaced_custom_object,
            (FLAGGER_GROUP, FLAGGER_VERSION, NAMESPACE, FLAGGER_PLURAL),
            flagger_summary,
        )
        deps = Watcher("deployments", apps.list_namespaced_deployment, (NAMESPACE,), deploy_summary)
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
        from ftrollout_dev.peers import FLAGGER

        exe, _ = FLAGGER.require()
        if analysing:
            custom.create_namespaced_custom_object(
                FLAGGER_GROUP,
                FLAGGER_VERSION,
                NAMESPACE,
                "metrictemplates",
                flagger_metric_template(prom_url),
            )
        return FlaggerController(cluster, work, exe, prom_url, args)

    def create(self, run: Run) -> None:
        assert run.deps is not None
        deps: Watcher = run.deps  # for the closures below
        assert isinstance(run.ctl, FlaggerController)
        gate_url = run.ctl.gate.url
        custom, targets, args, objs = run.custom, run.targets, run.args, run.objs
        create_deployments(run.pool, run.apps, deps, targets, args.replicas, 1800)
        list(
            run.pool.map(
                lambda t: custom.create_namespaced_custom_object(
                    FLAGGER_GROUP,
                    FLAGGER_VERSION,
                    NAMESPACE,
                    FLAGGER_PLURAL,
                    flagger_canary(t, gate_url, run.analysing),
                    _preload_content=False,
                ),
                targets,
            )
        )

        def initialized() -> int:
            snap, dsnap = objs.snapshot(), deps.snapshot()
            return sum(
                1
                for t in targets
                if (c := snap.get(t))
                and c["phase"] == "Initialized"
                and (p := dsnap.get(f"{t}-primary"))
                and p["ready"] == args.replicas
            )

        # Flagger takes a new Canary on its next sync (-control-loop-interval, 10 s), then
        # initialises it over a few analysis ticks (primary created, Ready, target to 0).
        n = run.n
        wait(
            "Canaries Initialized",
            lambda: initialized() == n,
            1800,
            progress=lambda: f"{initialized()}/{n}",
        )

    def change(self, run: Run) -> None:
        apps = run.apps
        list(
            run.pool.map(
                lambda t: apps.patch_namespaced_deployment(
                    t, NAMESPACE, TO_FT_IMAGE, _preload_content=False
                ),
                run.targets,
            )
        )

    def at_step(self, run: Run) -> int:
        assert run.deps is not None
        snap, dsnap = run.objs.snapshot(), run.deps.snapshot()
        return sum(
            1
            for t in run.targets
            if (c := snap.get(t))
            and c["phase"] == "WaitingPromotion"
            and (d := dsnap.get(t))
            and d["ready"] >= 1
        )
