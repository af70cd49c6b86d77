"""What a run asks of each controller: `Controller` (its process, as the sampler reads it) and
`Peer` (its CRDs, watches, objects, and its promote / abort requests)."""

from __future__ import annotations

import argparse
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processes import stop_process, wait_serving
from scale import Watcher


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def established(cluster: Any, crd: str) -> None:
    """`kubectl wait` fails at once while the new CRD has no conditions yet: ask again."""
    for attempt in range(10):
        proc = cluster.kubectl(
            "wait", "--for=condition=Established", crd, "--timeout=60s", check=attempt == 9
        )
        if proc.returncode == 0:
            return
        time.sleep(1)


class Controller:
    """A controller process the sampler reads: pid and its own count of API writes."""

    name = ""
    pid = 0

    def own_writes(self) -> float | None:
        """The controller's own count of its write requests; None where it exports none."""
        raise NotImplementedError

    def reconciles(self) -> float | None:
        """Its count of reconciles; None where it exports none."""
        return None

    def gate_calls(self) -> int | None:
        """Calls of the promotion gate this process serves it; None where there is none."""
        return None

    def stop(self) -> None:
        raise NotImplementedError


class PeerProcess(Controller):
    """A peer's controller binary run out of cluster against the run's cluster, its output in
    `log_path`; up once `probe_url` answers."""

    log_path: Path
    proc: subprocess.Popen[bytes]

    def _launch(self, cmd: list[str], cluster: Any, probe_url: str, not_up: str) -> None:
        self.proc = subprocess.Popen(
            cmd, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, env=cluster.env()
        )
        self.pid = self.proc.pid
        wait_serving(self.proc, lambda: scrape(probe_url), 60, self.name, not_up, self.log_path)

    def stop(self) -> None:
        stop_process(self.proc)


def install_crds(cluster: Any, crds: Path, names: list[str]) -> None:
    """A peer's CRDs (server-side apply of its folder), each Established."""
    cluster.kubectl("apply", "--server-side", "-f", str(crds))
    for name in names:
        established(cluster, name)


@dataclass
class Run:
    """One run's canaries as the controller's steps see them: the targets, the clients, the
    watches of its objects (`objs`) and Deployments (`deps`, None for Argo)."""

    n: int
    targets: list[str]
    args: argparse.Namespace
    analysing: bool
    pool: ThreadPoolExecutor
    apps: Any
    custom: Any
    objs: Watcher
    deps: Watcher | None
    ctl: Controller
    prom_url: str


class Peer:
    """One controller's side of a run and of the latency phase."""

    name = ""
    # The latency phase's wording: the workload watched, the CLI whose requests are sent, the
    # name of an abort, and what each request writes and ends with.
    workload = "Deployment"
    cli = ""
    abort_verb = "abort"
    promote_request = ""
    promote_end = ""
    abort_request = ""
    # Why a figure is not measured for this controller (None: it is).
    no_crash: str | None = None
    no_latency: str | None = None
    ready_log = ""  # "{n} ... in {s} s; ...": the objects before the canaries are ready

    def install(self, cluster: Any, res: dict[str, Any]) -> None:
        """Its CRDs, Established; its version into the run's results."""
        raise NotImplementedError

    def watchers(self, apps: Any, custom: Any) -> tuple[Watcher, Watcher | None]:
        """Watches of its objects and (but for Argo) of the Deployments."""
        raise NotImplementedError

    def start(
        self,
        cluster: Any,
        work: Path,
        custom: Any,
        prom_url: str,
        args: argparse.Namespace,
        analysing: bool,
    ) -> Controller:
        """Its process (and, analysing, its analysis template)."""
        raise NotImplementedError

    def create(self, run: Run) -> None:
        """The N workloads at their stable revision, until all are ready."""
        raise NotImplementedError

    def change(self, run: Run) -> None:
        """Starts every canary."""
        raise NotImplementedError

    def at_step(self, run: Run) -> int:
        """How many canaries are paused at 50 %."""
        raise NotImplementedError

    def promote(self, custom: Any, name: str) -> None:
        raise NotImplementedError

    def abort(self, custom: Any, name: str) -> None:
        raise NotImplementedError

    def crash(self, core: Any, pods: dict[str, dict[str, Any]], name: str) -> None:
        raise NotImplementedError
