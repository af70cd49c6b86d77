"""`ftrollout-dev demo`: what the operator is for, on an embedded local cluster, in a few minutes.

It starts the local control plane (kube-apiserver + kwok nodes), a real Prometheus and the
operator, deploys a sample service with a simulator playing its pods, and runs three
scenarios: a healthy canary that is promoted, a GIL fallback and a race-crash budget breach
that both roll back by themselves. A fourth shows traffic routing with Gateway API (when its
CRDs can be had: the gateway-api Go module, cached): only `GET /catalog` requests go
free-threaded, at exact weights below 1/N, the HTTPRoute printed at each step and restored as
it was when the rollout is deleted. Everything it started is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ftrollout.model.crd import render_crd_yaml
from ftrollout.plan.twin import LABEL_TRACK
from ftrollout_dev.localcluster import (
    LocalCluster,
    PodMetricsExporter,
    PrometheusHandle,
    build_all,
    free_port,
    gateway_api_crds,
    start_prometheus,
)
from ftrollout_dev.simulator import (
    ERROR_RATIO_QUERY,
    P99_QUERY,
    Simulator,
    app_deployment,
    crash_status_patch,
)

console = Console()
N = 10


class DemoError(Exception):
    pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds each scenario may take")
    p.add_argument(
        "--no-routing",
        action="store_true",
        help="skip the Gateway API traffic-routing scenario",
    )


# ------------------------------------------------------------------------ plumbing


@dataclass
class Demo:
    cluster: LocalCluster
    prometheus: PrometheusHandle
    exporter: PodMetricsExporter
    core: Any
    timeout: float

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check).stdout

    def apply(self, namespace: str, doc: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        out = self.kubectl("get", "ftr", name, "-n", namespace, "-o", "json", check=False)
        try:
            st: dict[str, Any] = json.loads(out).get("status") or {}
        except ValueError:
            return {}
        return st

    def deployment(self, namespace: str, name: str) -> tuple[int, int]:
        out = self.kubectl("get", "deployment", name, "-n", namespace, "-o", "json", check=False)
        try:
            d = json.loads(out)
        except ValueError:
            return 0, 0
        return int(d["spec"].get("replicas") or 0), int(d["status"].get("readyReplicas") or 0)


def _table(title: str, demo: Demo, namespace: str) -> Table:
    st = demo.status(namespace, "checkout")
    std = demo.deployment(namespace, "checkout")
    ft = demo.deployment(namespace, "checkout-ft")
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("phase", "step", "weight", "standard", "free-threaded", "GIL", "races", "message"):
        t.add_column(col, overflow="fold", max_width=60 if col == "message" else None)
    step = st.get("stepIndex")
    t.add_row(
        str(st.get("phase", "-")),
        "-" if step is None else str(step + 1),
        f"{st.get('weight', 0)}%",
        f"{std[1]}/{std[0]} ready",
        f"{ft[1]}/{ft[0]} ready",
        str((st.get("gil") or {}).get("summary", "-")),
        str((st.get("races") or {}).get("summary", "-")),
        str(st.get("message", "")),
    )
    return t


def watch_until(
    demo: Demo,
    namespace: str,
    title: str,
    done: Callable[[dict[str, Any]], bool],
    on_tick: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + demo.timeout
    with Live(_table(title, demo, namespace), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            st = demo.status(namespace, "checkout")
            if on_tick is not None:
                on_tick(st)
            live.update(_table(title, demo, namespace))
            if done(st):
                return st
            time.sleep(0.5)
    st = demo.status(namespace, "checkout")
    raise DemoError(
        f"{title}: did not reach the expected phase within {demo.timeout:.0f}s "
        f"(phase {st.get('phase')}: {st.get('message')})"
    )


def service(namespace: str, track_label: bool = False) -> dict[str, Any]:
    app = app_deployment("checkout", N, "registry.example/checkout:2.4.0", namespace)
    if track_label:  # with routing the stable Service must select the standard pods only
        app["spec"]["template"]["metadata"]["labels"][LABEL_TRACK] = "standard"
    return app


def canary(namespace: str, prometheus: str, race_budget: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "freethreaded.dev/v1alpha1",
        "kind": "FreeThreadedRollout",
        "metadata": {"name": "checkout", "namespace": namespace},
        "spec": {
            "targetRef": {"name": "checkout"},
            "freeThreaded": {"image": "registry.example/checkout:2.4.0-py3.14t"},
            "steps": [
                {"weight": 10, "pause": {"duration": "6s"}},
                {"weight": 50, "pause": {"duration": "10s"}},
                {"weight": 100, "pause": {"duration": "4s"}},
            ],
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": "2s",
                "failureLimit": 1,
                "metrics": [
                    {
                        "name": "p99-latency",
                        "query": P99_QUERY,
                        "compare": {"maxIncreasePercent": 10},
                    },
                    {"name": "error-ratio", "query": ERROR_RATIO_QUERY, "threshold": {"max": 0.01}},
                ],
            },
            "guardrails": {
                "gilFallback": {"maxPods": 0, "action": "Rollback"},
                "raceBudget": {"maxIncidents": race_budget, "window": "1h", "action": "Rollback"},
            },
        },
    }


def crash_pod(demo: Demo, namespace: str, pod: str, code: int = 139) -> None:
    patch = crash_status_patch("app", "registry.example/checkout:2.4.0-py3.14t", code)
    demo.kubectl(
        "patch", "pod", pod, "-n", namespace, "--subresource=status", "-p", json.dumps(patch)
    )


def free_threaded_pods(demo: Demo, namespace: str) -> list[str]:
    out = demo.kubectl(
        "get", "pods", "-n", namespace, "-l", "freethreaded.dev/track=free-threaded", "-o", "name"
    )
    return sorted(line.split("/", 1)[1] for line in out.split())


# ------------------------------------------------------------------------ scenarios


def setup_namespace(demo: Demo, namespace: str, track_label: bool = False) -> Simulator:
    demo.kubectl("create", "namespace", namespace)
    demo.apply(namespace, service(namespace, track_label))
    deadline = time.monotonic() + demo.timeout
    while demo.deployment(namespace, "checkout") != (N, N):
        if time.monotonic() > deadline:
            raise DemoError(f"{namespace}: the sample service did not get {N} Ready pods")
        time.sleep(0.5)
    sim = Simulator(demo.core, namespace, "app=checkout", demo.exporter)
    sim.start()
    return sim


def scenario_promote(demo: Demo) -> dict[str, Any]:
    ns = "demo-healthy"
    console.rule("[bold]Scenario 1[/]: a healthy free-threaded canary walks 10 → 50 → 100 %")
    sim = setup_namespace(demo, ns)
    try:
        demo.apply(ns, canary(ns, demo.prometheus.url))
        st = watch_until(
            demo, ns, "healthy canary", lambda s: s.get("phase") in ("Promoted", "RolledBack")
        )
    finally:
        sim.stop()
    if st.get("phase") != "Promoted":
        raise DemoError(f"scenario 1 expected Promoted, got {st.get('phase')}: {st.get('message')}")
    console.print(f"[green]✔ Promoted[/]: {st.get('message')}")
    return st


def scenario_gil_fallback(demo: Demo) -> dict[str, Any]:
    ns = "demo-gil"
    console.rule("[bold]Scenario 2[/]: at 50 % one pod's GIL comes back (module legacy_ext)")
    sim = setup_namespace(demo, ns)
    try:
        demo.apply(ns, canary(ns, demo.prometheus.url))

        def at_half(st: dict[str, Any]) -> None:
            if st.get("weight") == 50 and st.get("stepStartedAt"):
                sim.knobs.gil_on_pods = 1  # import of legacy_ext re-enables the GIL

        st = watch_until(
            demo,
            ns,
            "GIL fallback",
            lambda s: s.get("phase") in ("Promoted", "RolledBack"),
            on_tick=at_half,
        )
    finally:
        sim.stop()
    reason = (st.get("rollback") or {}).get("reason")
    if st.get("phase") != "RolledBack" or reason != "GILFallback":
        raise DemoError(f"scenario 2 expected RolledBack(GILFallback), got {st.get('phase')}")
    console.print(f"[yellow]↩ RolledBack (GILFallback)[/]: {st['rollback']['message']}")
    return st


def scenario_race_budget(demo: Demo) -> dict[str, Any]:
    ns = "demo-races"
    console.rule("[bold]Scenario 3[/]: free-threaded pods crash with SIGSEGV (exit 139)")
    sim = setup_namespace(demo, ns)
    crashed: set[str] = set()
    try:
        demo.apply(ns, canary(ns, demo.prometheus.url, race_budget=1))

        def crash_two(st: dict[str, Any]) -> None:
            if st.get("weight") == 50 and st.get("stepStartedAt") and len(crashed) < 2:
                for pod in free_threaded_pods(demo, ns)[:2]:
                    if pod not in crashed:
                        crash_pod(demo, ns, pod)
                        crashed.add(pod)

        st = watch_until(
            demo,
            ns,
            "race budget",
            lambda s: s.get("phase") in ("Promoted", "RolledBack"),
            on_tick=crash_two,
        )
    finally:
        sim.stop()
    reason = (st.get("rollback") or {}).get("reason")
    if st.get("phase") != "RolledBack" or reason != "RaceBudget":
        raise DemoError(f"scenario 3 expected RolledBack(RaceBudget), got {st.get('phase')}")
    console.print(f"[yellow]↩ RolledBack (RaceBudget)[/]: {st['rollback']['message']}")
    return st


# Gateway API scenario: what share of the requests `GET /catalog` is (the simulated mix).
CATALOG_SHARE = 0.4
ROUTE_GROUP = "gateway.networking.k8s.io/v1"
# The report's request counts over a window as short as the demo's steps.
DEMO_REQUESTS_QUERY = (
    'sum by (pod) (rate(http_requests_total{namespace="{{namespace}}", pod=~"{{pods}}"}[10s]))'
)


def routing_objects(namespace: str) -> list[dict[str, Any]]:
    """The stable Service, a GatewayClass and Gateway (objects only: no implementation runs
    here) and the user's HTTPRoute: everything to `checkout`, static files to a CDN."""
    port = [{"name": "http", "port": 80, "targetPort": 8080}]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "ports": port},
        }
        for name, selector in (
            ("checkout", {"app": "checkout", LABEL_TRACK: "standard"}),
            ("cdn", {"app": "cdn"}),
        )
    ] + [
        {
            "apiVersion": ROUTE_GROUP,
            "kind": "GatewayClass",
            "metadata": {"name": "demo"},
            "spec": {"controllerName": "example.com/no-implementation"},
        },
        {
            "apiVersion": ROUTE_GROUP,
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "gatewayClassName": "demo",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        {
            "apiVersion": ROUTE_GROUP,
            "kind": "HTTPRoute",
            "metadata": {"name": "checkout", "namespace": namespace},
            "spec": {
                "parentRefs": [{"name": "web"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": "checkout", "port": 80}],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                        "backendRefs": [{"name": "cdn", "port": 80}],
                    },
                ],
            },
        },
    ]


def routed_canary(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "freethreaded.dev/v1alpha1",
        "kind": "FreeThreadedRollout",
        "metadata": {"name": "checkout", "namespace": namespace},
        "spec": {
            "targetRef": {"name": "checkout"},
            "freeThreaded": {"image": "registry.example/checkout:2.4.0-py3.14t"},
            # 5 % of the matching requests: below the 1/N = 10 % a replica split could do.
            "steps": [
                {"weight": 5, "pause": {"duration": "6s"}},
                {"weight": 25, "pause": {"duration": "15s"}},
                {"weight": 100, "pause": {"duration": "4s"}},
            ],
            "trafficRouting": {
                "gatewayAPI": {
                    "httpRoutes": [{"name": "checkout"}],
                    "stableService": "checkout",
                    # Read-only endpoints first: only these requests go free-threaded.
                    "matches": [
                        {"path": {"type": "PathPrefix", "value": "/catalog"}, "method": "GET"}
                    ],
                }
            },
            "guardrails": {
                "gilFallback": {"maxPods": 0, "action": "Rollback"},
                "raceBudget": {"maxIncidents": 3, "window": "1h", "action": "Rollback"},
            },
        },
    }


def describe_rule(rule: dict[str, Any]) -> str:
    """`GET /catalog → checkout 95 · checkout-ft 5`: a rule's matches and its backends."""
    matches = []
    for m in rule.get("matches") or [{}]:
        path = (m.get("path") or {}).get("value", "/")
        matches.append(f"{m['method']} {path}" if m.get("method") else path)
    refs = rule.get("backendRefs") or []
    if all(r.get("weight", 1) == 1 for r in refs):
        backends = " · ".join(str(r.get("name")) for r in refs)
    else:
        backends = " · ".join(f"{r.get('name')} {r.get('weight', 1)}" for r in refs)
    return f"{', '.join(matches)} → {backends}"


def route_rules(demo: Demo, namespace: str) -> list[dict[str, Any]]:
    out = demo.kubectl("get", "httproute", "checkout", "-n", namespace, "-o", "json", check=False)
    try:
        rules: list[dict[str, Any]] = (json.loads(out).get("spec") or {}).get("rules") or []
    except ValueError:
        return []
    return rules


def free_threaded_share(rules: list[dict[str, Any]]) -> float:
    """The share of all requests a Gateway would send to `checkout-ft`: `GET /catalog` (
    CATALOG_SHARE of them) takes its own rule when there is one (more specific), the rest
    take the `/` rule."""

    def paths(rule: dict[str, Any]) -> set[str]:
        return {(m.get("path") or {}).get("value", "/") for m in rule.get("matches") or [{}]}

    def ft_fraction(rule: dict[str, Any] | None) -> float:
        refs = (rule or {}).get("backendRefs") or []
        total = sum(int(r.get("weight", 1)) for r in refs)
        ft = sum(int(r.get("weight", 1)) for r in refs if r.get("name") == "checkout-ft")
        return ft / total if total else 0.0

    root = next((r for r in rules if "/" in paths(r)), None)
    catalog = next((r for r in rules if "/catalog" in paths(r)), root)
    return CATALOG_SHARE * ft_fraction(catalog) + (1 - CATALOG_SHARE) * ft_fraction(root)


def scenario_routing(demo: Demo) -> dict[str, Any] | None:
    ns = "demo-routing"
    console.rule(
        "[bold]Scenario 4[/]: Gateway API routing: GET /catalog first, 5 → 25 → 100 % of requests"
    )
    try:
        crds = gateway_api_crds(log=lambda m: console.print(f"      {m}"))
    except Exception as exc:  # no Go, no network: the scenario needs the CRDs
        console.print(f"[dim]skipped: Gateway API CRDs not available ({exc})[/]")
        return None
    demo.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    demo.kubectl(
        "wait", "--for=condition=Established", "crd/httproutes.gateway.networking.k8s.io",
        "--timeout=60s",
    )  # fmt: skip
    sim = setup_namespace(demo, ns, track_label=True)
    shown: list[list[str]] = []
    report: list[str] = []
    try:
        for doc in routing_objects(ns):
            demo.apply(ns, doc)
        before = route_rules(demo, ns)
        console.print("HTTPRoute checkout as the user wrote it:")
        for rule in before:
            console.print(f"  {describe_rule(rule)}", markup=False, highlight=False)
        demo.apply(ns, routed_canary(ns))
        step_seen: dict[int, float] = {}

        def show_route(st: dict[str, Any]) -> None:
            rules = route_rules(demo, ns)
            # What a Gateway would do with these weights (no implementation runs here).
            sim.knobs.free_threaded_request_share = free_threaded_share(rules)
            lines = [describe_rule(r) for r in rules]
            if not shown or shown[-1] != lines:
                shown.append(lines)
                step = st.get("stepIndex")
                where = f"step {step + 1} ({st.get('weight')}%)" if step is not None else "-"
                console.print(f"  [cyan]{where}, {st.get('phase', '-')}[/]: HTTPRoute checkout")
                for line in lines:
                    console.print(f"    {line}", markup=False, highlight=False)
            step = st.get("stepIndex")
            if step == 1 and st.get("phase") == "Progressing" and not report:
                first = step_seen.setdefault(step, time.monotonic())
                if time.monotonic() - first > 10:  # 10 s of requests at this split
                    report.append(kpi_report(demo, ns))

        st = watch_until(
            demo,
            ns,
            "Gateway API routing",
            lambda s: s.get("phase") in ("Promoted", "RolledBack"),
            on_tick=show_route,
        )
        if st.get("phase") != "Promoted":
            raise DemoError(
                f"scenario 4 expected Promoted, got {st.get('phase')}: {st.get('message')}"
            )
        show_route(st)
        console.print(f"[green]✔ Promoted[/] with traffic routing: {st.get('message')}")
        if report:
            console.rule(f"kubectl ftr report checkout -n {ns} (at 25 % of GET /catalog)")
            console.print(report[0], markup=False, highlight=False)
        demo.kubectl("delete", "ftr", "checkout", "-n", ns, "--wait=true", "--timeout=90s")
    finally:
        sim.stop()
    after = route_rules(demo, ns)
    if after != before:
        raise DemoError(f"scenario 4: the route was not restored on deletion: {after}")
    console.print("[green]✔ deleted[/]: the HTTPRoute is back exactly as the user wrote it:")
    for rule in after:
        console.print(f"  {describe_rule(rule)}", markup=False, highlight=False)
    return st


def kpi_report(demo: Demo, namespace: str) -> str:
    plugin = Path(sys.executable).with_name("kubectl-ftr")
    shown = subprocess.run(
        [
            str(plugin), "report", "checkout", "-n", namespace,
            "--prometheus-url", demo.prometheus.url,
            "--query", f"requests={DEMO_REQUESTS_QUERY}",
        ],
        env=demo.cluster.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return shown.stdout + shown.stderr


# --------------------------------------------------------------------------- main


CHART = Path(__file__).resolve().parents[2] / "charts" / "ftrollout"
RELEASE_NS = "ftrollout-system"


def install_chart(cluster: LocalCluster, workdir: Path, prometheus: str) -> Path | None:
    """`helm install` the chart as a platform team would; a kubeconfig with its SA's token.

    kwok runs no containers, so the operator itself runs here, out of cluster, with exactly
    the chart's ServiceAccount permissions. None when the chart is not next to the package.
    """
    if not (CHART / "Chart.yaml").is_file():
        return None
    helm = subprocess.run(
        [
            str(cluster.binaries.helm), "install", "ftrollout", str(CHART),
            "--namespace", RELEASE_NS, "--create-namespace",
            "--set", f"prometheus.url={prometheus}",
        ],
        env=cluster.env(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    if helm.returncode != 0:
        raise DemoError(f"helm install failed: {helm.stderr.strip() or helm.stdout.strip()}")
    accounts = cluster.kubectl("get", "serviceaccounts", "-n", RELEASE_NS, "-o", "name").stdout
    names = [a.split("/", 1)[1] for a in accounts.split() if not a.endswith("/default")]
    if not names:
        raise DemoError("the chart created no ServiceAccount")
    token = cluster.kubectl(
        "create", "token", names[0], "-n", RELEASE_NS, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": names[0], "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": names[0]}}],
        "current-context": "operator",
    }
    path = workdir / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def _operator(
    cluster: LocalCluster, workdir: Path, prometheus: str, kubeconfig: Path | None
) -> Iterator[int]:
    port = free_port()
    log = (workdir / "operator.log").open("ab")
    env = cluster.env()
    env["PYTHONUNBUFFERED"] = "1"
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ftrollout.main",
            "run",
            "--log-format=json",
            "--health-port=0",
            f"--metrics-port={port}",
            f"--prometheus-url={prometheus}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise DemoError(f"the operator exited ({proc.returncode}); see {log.name}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise DemoError(f"the operator did not start within 60s; see {log.name}")
            time.sleep(0.3)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def cli_main(args: argparse.Namespace) -> int:
    import kubernetes

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ftrollout-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    console.rule("[bold]ftrollout-dev demo[/]")
    console.print(f"working directory: {workdir}")
    try:
        console.print("[1/4] control-plane binaries (built once, then cached)")
        build_all(log=lambda m: console.print(f"      {m}"))
        console.print("[2/4] starting kube-apiserver, controller-manager, scheduler, kwok nodes")
        cluster = LocalCluster(workdir / "cluster", nodes=3, die_with_parent=not args.keep)
        cluster.up()
    except Exception as exc:
        console.print(f"[red]demo failed while starting the cluster:[/] {exc}")
        return 1
    exporter = PodMetricsExporter()
    prometheus: PrometheusHandle | None = None
    rc = 1
    try:
        console.print("[3/4] Prometheus, `helm install` of the operator chart, the operator")
        prometheus = start_prometheus([exporter.target], workdir / "prometheus")
        operator_kubeconfig = install_chart(cluster, workdir, prometheus.url)
        if operator_kubeconfig is None:
            console.print("      chart not found next to the package: CRD only, admin rights")
            cluster.kubectl("apply", "--server-side", "-f", "-", input=render_crd_yaml())
        else:
            console.print(
                "      operator runs out of cluster with the chart's ServiceAccount token "
                "(kwok runs no containers)"
            )
        cluster.kubectl(
            "wait", "--for=condition=Established", "crd/freethreadedrollouts.freethreaded.dev"
        )
        client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        demo = Demo(
            cluster, prometheus, exporter, kubernetes.client.CoreV1Api(client), args.timeout
        )
        with _operator(cluster, workdir, prometheus.url, operator_kubeconfig):
            console.print("[4/4] scenarios")
            scenario_promote(demo)
            scenario_gil_fallback(demo)
            scenario_race_budget(demo)
            routed = None if args.no_routing else scenario_routing(demo)
            console.rule("kubectl get ftr -A")
            console.print(demo.kubectl("get", "ftr", "-A"), markup=False, highlight=False)
            console.rule("kubectl ftr report checkout -n demo-healthy")
            plugin = Path(sys.executable).with_name("kubectl-ftr")
            report_cmd = [str(plugin), "report", "checkout", "-n", "demo-healthy"]
            shown = subprocess.run(
                [*report_cmd, "--prometheus-url", prometheus.url],
                env=cluster.env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            console.print(shown.stdout + shown.stderr, markup=False, highlight=False)
            report = demo.kubectl("describe", "ftr", "checkout", "-n", "demo-gil")
            console.rule("kubectl describe ftr checkout -n demo-gil (excerpt)")
            console.print(_excerpt(report), markup=False, highlight=False)
        rc = 0
        console.print(
            f"[bold green]demo finished in {time.monotonic() - started:.0f}s[/]: "
            "1 promoted, 2 rolled back by guardrails"
            + ("; 1 promoted with Gateway API routing" if routed is not None else "")
        )
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
    except Exception as exc:  # a clear line, then the cleanup below; never a bare traceback
        console.print(f"[red]demo failed:[/] {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: cleaning up[/]")
        rc = 130
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.close()
        if args.keep and rc == 0:
            console.print(f"cluster left running: KUBECONFIG={cluster.kubeconfig}")
        else:
            cluster.down()
    return rc


def _excerpt(described: str) -> str:
    lines = described.splitlines()
    keep = [i for i, line in enumerate(lines) if line.strip().startswith(("Rollback", "Events"))]
    start = keep[0] if keep else max(0, len(lines) - 30)
    return "\n".join(lines[start : start + 30])
