"""The chart's PrometheusRule alerts, evaluated by a real Prometheus on the operator's real
metrics, scraped the way a prometheus-operator ServiceMonitor without `honorLabels` scrapes them.

- The operator's metrics: a child process registers `ftrollout.shell.metrics` on a `State` and
  feeds plan Results through `state.on_result`, as `shell.reconcile` does after each reconcile,
  then serves the registry on a loopback port. Rollouts: `shop/web` rolled back (RaceBudget),
  `pay/checkout` promoted with 2 free-threaded pods back on the GIL, `search/api` progressing
  (with a GIL pod too: the operator handles that one itself), `billing/batch` failed.
- The rules: `helm template` of charts/ftrollout with `prometheusRule.enabled=true`, its
  `spec.groups` as a Prometheus rule file. `prometheusRule.operatorDownFor=0s` through the chart;
  the chart hard-codes `for: 5m`/`15m` on the Failed and PrometheusErrors alerts, which this test
  copy rewrites to `0s` so they can fire within seconds.
- The scrape: `honor_labels: false` and the target labels prometheus-operator attaches from the
  Service's endpoints (`namespace`, `service`, `pod`, `container`, `endpoint`, and `job` = the
  Service's name), set by relabelling, 1 s scrape and evaluation intervals.

The alerts must name the rollout's namespace (`rollout_namespace`), not the operator's. To show
the checks can fail, the rule file also holds a "Mutant" copy of every alert with
`rollout_namespace` replaced by `namespace` (what the rules would be if the operator exported a
`namespace` label, which this scrape renames to `exported_namespace`): the very same checks are
run on the mutants' alerts and must raise. (Editing the chart's rule the same way by hand makes
`test_alerts_fire_with_the_rollouts_namespace` fail with the alert naming `ftrollout-system`.)

Only Prometheus and a small Python process run here (no control plane): well under a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import ftrollout
from ftrollout_dev.localcluster import Binaries, find_prometheus, free_port

RELEASE, OPERATOR_NS = "ftrollout", "ftrollout-system"
POD = "ftrollout-abc"
MUTANT = "Mutant"


def _helm() -> Path | None:
    try:
        helm = Binaries.locate().helm
    except Exception:
        return None
    return helm if helm.is_file() else None


pytestmark = pytest.mark.skipif(
    find_prometheus() is None or _helm() is None, reason="needs prometheus and the built helm"
)

# The child process that is "the operator" for metrics: real registry, real hooks.
METRICS_SERVER = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import start_http_server
    from ftrollout.model import api
    from ftrollout.plan import Result
    from ftrollout.plan.types import Event
    from ftrollout.shell import metrics
    from ftrollout.shell.state import State

    def result(phase, step, weight, *events, **kw):
        status = api.RolloutStatus(phase=phase, step_index=step, weight=weight, **kw)
        return Result(status=status, target_replicas=None, twin_replicas=None, events=events)

    def gil(enabled):
        return api.GilStatus(pods=4, enabled=enabled, disabled=4 - enabled)

    state = State()
    metrics.register(state)  # what serve() does before listening
    rollback = api.RollbackStatus(
        reason=api.RollbackReason.RACE_BUDGET, message="4 > 3", time="2025-06-01T12:00:00Z"
    )
    history = [
        (("shop", "web"), result(api.Phase.PROGRESSING, 0, 10)),
        (("shop", "web"), result(api.Phase.ROLLED_BACK, 0, 0,
            Event("Warning", "RolledBack", "RaceBudget: 4 > 3"), rollback=rollback)),
        (("pay", "checkout"), result(api.Phase.PROGRESSING, 2, 100)),
        (("pay", "checkout"), result(api.Phase.PROMOTED, 2, 100, gil=gil(2))),
        (("search", "api"), result(api.Phase.PROGRESSING, 1, 50, gil=gil(1))),
        (("billing", "batch"), result(api.Phase.FAILED, None, 0)),
    ]
    for key, res in history:
        for hook in state.on_result:  # as shell.reconcile does after each reconcile
            hook(key, res, 0.01)
    # serve() listens on all interfaces; a test keeps to loopback.
    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    print("serving", flush=True)
    while True:
        time.sleep(60)
    """
)


def say(msg: str) -> None:
    print(f"[alerts-e2e] {msg}", flush=True)


def render_chart() -> list[dict[str, Any]]:
    helm = _helm()
    assert helm is not None
    chart = Path(__file__).resolve().parents[2] / "charts" / "ftrollout"
    out = subprocess.run(
        [str(helm), "template", RELEASE, str(chart), "--namespace", OPERATOR_NS,
         "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.operatorDownFor=0s",
         "--set", "serviceMonitor.enabled=true"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def rule_groups(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(docs, "PrometheusRule")["spec"]["groups"]
    for g in groups:
        for r in g["rules"]:
            if "for" in r and r["alert"] != "FreeThreadedRolloutOperatorDown":
                r["for"] = "0s"  # hard-coded 5m/15m in the chart: too long for a test
    mutants = yaml.safe_load(yaml.safe_dump(groups).replace("rollout_namespace", "namespace"))
    for g in mutants:
        g["name"] = f"{MUTANT}{g['name']}"
        for r in g["rules"]:
            r["alert"] = f"{MUTANT}{r['alert']}"
    return [*groups, *mutants]


@dataclass
class Setup:
    url: str
    service: str  # the chart's metrics Service: job and service labels of the scrape
    metrics: subprocess.Popen[bytes]
    alert_names: set[str]


def start_metrics(d: Path, port: int) -> subprocess.Popen[bytes]:
    script = d / "metrics_server.py"
    script.write_text(METRICS_SERVER)
    operator_src = str(Path(ftrollout.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([operator_src, os.environ.get("PYTHONPATH", "")]),
    }
    log = (d / "metrics.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (d / "metrics.log").read_text()[-2000:]
        try:
            if requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).ok:
                return proc
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "metrics server not serving"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    d = tmp_path_factory.mktemp("alerts-prom")
    say("rendering the chart's PrometheusRule")
    docs = render_chart()
    service = one(docs, "Service")["metadata"]["name"]
    groups = rule_groups(docs)
    alert_names = {r["alert"] for g in groups for r in g["rules"]}
    (d / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    mport = free_port()
    say(f"starting the operator's metrics on 127.0.0.1:{mport}")
    metrics = start_metrics(d, mport)
    # What prometheus-operator generates for a ServiceMonitor endpoint: labels from the
    # Service's endpoints, set by relabelling, and the exposed labels not honoured.
    attach = {
        "namespace": OPERATOR_NS, "service": service, "pod": POD, "container": "operator",
        "endpoint": "metrics", "job": service,
    }  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(d / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": f"serviceMonitor/{OPERATOR_NS}/{RELEASE}/0",
                "honor_labels": False,
                "static_configs": [{"targets": [f"127.0.0.1:{mport}"]}],
                "relabel_configs": [
                    {"target_label": k, "replacement": v} for k, v in attach.items()
                ],
            }
        ],
    }
    (d / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    binary = find_prometheus()
    assert binary is not None
    pport = free_port()
    log = (d / "prometheus.log").open("ab")
    say(f"starting Prometheus on 127.0.0.1:{pport} (workdir {d})")
    prom = subprocess.Popen(
        [str(binary), f"--config.file={d / 'prometheus.yml'}",
         f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{pport}",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d,
        start_new_session=True,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{pport}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert prom.poll() is None, (d / "prometheus.log").read_text()[-2000:]
            try:
                if requests.get(f"{url}/-/ready", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "prometheus not ready"
            time.sleep(0.2)
        say("Prometheus ready")
        yield Setup(url, service, metrics, alert_names)
    finally:
        stop(prom)
        stop(metrics)
        say("Prometheus and the metrics server stopped")


def api_get(url: str, path: str, **params: str) -> Any:
    r = requests.get(f"{url}/api/v1/{path}", params=params, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def firing(url: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = api_get(url, "alerts")["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.5)
    say(f"ok: {what}")


def by_name(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == name]


# ----------------------------------------------------------------------- the expectations


def check_rolled_back(alerts: list[dict[str, Any]], prefix: str = "") -> None:
    (a,) = by_name(alerts, f"{prefix}FreeThreadedRolloutRolledBack")
    assert a["labels"] == {
        "alertname": f"{prefix}FreeThreadedRolloutRolledBack",
        "severity": "warning",
        "rollout_namespace": "shop",
        "rollout": "web",
    }
    assert a["annotations"]["summary"] == "FreeThreadedRollout shop/web rolled back"
    assert "kubectl ftr status web -n shop" in a["annotations"]["description"]


def check_gil_after_promotion(alerts: list[dict[str, Any]], prefix: str = "") -> None:
    # Only pay/checkout: search/api has a GIL pod too but is still progressing.
    (a,) = by_name(alerts, f"{prefix}FreeThreadedRolloutGILAfterPromotion")
    assert a["labels"] == {
        "alertname": f"{prefix}FreeThreadedRolloutGILAfterPromotion",
        "severity": "warning",
        "rollout_namespace": "pay",
        "rollout": "checkout",
    }
    assert "kubectl ftr status checkout -n pay" in a["annotations"]["description"]


def check_failed(alerts: list[dict[str, Any]], prefix: str = "") -> None:
    (a,) = by_name(alerts, f"{prefix}FreeThreadedRolloutFailed")
    assert (a["labels"].get("rollout_namespace"), a["labels"].get("rollout")) == (
        "billing",
        "batch",
    )
    assert a["annotations"]["summary"] == "FreeThreadedRollout billing/batch is Failed"


CHECKS = (check_rolled_back, check_gil_after_promotion, check_failed)


# ------------------------------------------------------------------------------------ tests


def test_the_scrape_attaches_the_targets_labels_and_renames_none_of_the_operators(
    setup: Setup,
) -> None:
    wait_until(
        "the operator's rollout series scraped",
        lambda: bool(api_get(setup.url, "query", query='ftrollout_rollout_info{rollout="web"}')["result"]),
    )  # fmt: skip
    series = api_get(setup.url, "query", query='{__name__=~"ftrollout_.+"}')["result"]
    names = {s["metric"]["__name__"] for s in series}
    assert {
        "ftrollout_rollout_info",
        "ftrollout_rollout_gil_enabled_pods",
        "ftrollout_rollbacks_total",
        "ftrollout_build_info",
    } <= names
    for s in series:
        labels = s["metric"]
        renamed = sorted(k for k in labels if k.startswith("exported_"))
        assert not renamed, f"{labels['__name__']} carries a label the scrape renames: {renamed}"
        # Every series is the operator pod's, whatever rollout it describes.
        assert (labels["namespace"], labels["pod"]) == (OPERATOR_NS, POD)
        assert labels["job"] == labels["service"] == setup.service
    (info,) = api_get(setup.url, "query", query='ftrollout_rollout_info{rollout_namespace="shop"}')[
        "result"
    ]
    assert info["metric"]["phase"] == "RolledBack"
    assert info["metric"]["namespace"] == OPERATOR_NS
    say(f"{len(series)} series, none renamed; namespace={OPERATOR_NS} on all")


def test_alerts_fire_with_the_rollouts_namespace(setup: Setup) -> None:
    def ready() -> bool:
        names = {a["labels"]["alertname"] for a in firing(setup.url)}
        return {
            "FreeThreadedRolloutRolledBack",
            "FreeThreadedRolloutGILAfterPromotion",
            "FreeThreadedRolloutFailed",
        } <= names

    wait_until("the rollback, GIL-after-promotion and Failed alerts firing", ready)
    alerts = firing(setup.url)
    for check in CHECKS:
        check(alerts)
    real = [a for a in alerts if not a["labels"]["alertname"].startswith(MUTANT)]
    # Nothing names the progressing rollout, nor the operator's own namespace as a rollout's.
    assert not [a for a in real if a["labels"].get("rollout_namespace") == "search"]
    assert not [a for a in real if a["labels"].get("rollout") == "api"]
    assert not by_name(real, "FreeThreadedRolloutOperatorDown")  # its target is up
    assert not by_name(real, "FreeThreadedRolloutPrometheusErrors")
    say("alerts: " + ", ".join(sorted(str(a["labels"]) for a in real)))


def test_the_checks_fail_on_rules_that_use_the_renamed_namespace_label(setup: Setup) -> None:
    def ready() -> bool:
        names = {a["labels"]["alertname"] for a in firing(setup.url)}
        return {
            f"{MUTANT}FreeThreadedRolloutRolledBack",
            f"{MUTANT}FreeThreadedRolloutFailed",
        } <= names

    wait_until("the mutant alerts firing", ready)
    alerts = firing(setup.url)
    (mutant,) = by_name(alerts, f"{MUTANT}FreeThreadedRolloutRolledBack")
    # Grouped by `namespace`, the alert names the operator's namespace, not the rollout's.
    assert mutant["labels"]["namespace"] == OPERATOR_NS
    assert mutant["annotations"]["summary"] == f"FreeThreadedRollout {OPERATOR_NS}/web rolled back"
    for check in (check_rolled_back, check_failed):
        with pytest.raises(AssertionError):
            check(alerts, MUTANT)
    # The GIL alert's mutant joins the two metrics on the operator's namespace: it may fire
    # (with the operator's namespace) but never passes the check either.
    with pytest.raises(AssertionError):
        check_gil_after_promotion(alerts, MUTANT)
    say("the same checks reject the mutant rules")


def test_operator_down_fires_once_the_target_is_gone(setup: Setup) -> None:
    """Last: it stops the metrics server. The alert's `up{job, namespace}` matcher uses the
    scrape's own target labels, as it should: while the target was up it did not fire."""
    stop(setup.metrics)
    say("metrics server stopped")
    wait_until(
        "FreeThreadedRolloutOperatorDown firing",
        lambda: bool(by_name(firing(setup.url), "FreeThreadedRolloutOperatorDown")),
    )
