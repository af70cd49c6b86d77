"""The Helm chart: rendering, least-privilege RBAC, security context, install.yaml drift, examples.

Rendering needs the helm binary built by `ftrollout-dev cluster build` (`make tools`); without it the
rendering tests are skipped (the byte-equality and example tests still run).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftrollout.model import api
from ftrollout.plan import twin
from ftrollout.plan.preflight import PROBE_CONFIGMAP
from ftrollout.shell import metrics
from ftrollout_dev.localcluster import Binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ftrollout"
CRD_FILE = "freethreaded.dev_freethreadedrollouts.yaml"
PEERING_CRDS = "kopf.dev_peerings.yaml"  # kopf's, for peering.enabled
INSTALL = ROOT / "manifests" / "install.yaml"
INSTALL_HEADER = CHART / "install-header.yaml"
EXAMPLES = ["minimal", "full", "gil-strict"]
SA = "system:serviceaccount"

# (apiGroup, resource) -> verbs: exactly what the operator calls (see templates/_helpers.tpl).
NAMESPACED_RULES: dict[tuple[str, str], set[str]] = {
    ("freethreaded.dev", "freethreadedrollouts"): {"list", "watch", "patch"},
    ("freethreaded.dev", "freethreadedrollouts/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("apps", "deployments/scale"): {"patch"},
    ("", "pods"): {"list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create"},
    ("batch", "jobs"): {"get", "create", "delete"},
    ("", "configmaps"): {"create"},
    ("", f"configmaps/{PROBE_CONFIGMAP}"): {"get", "update"},
    ("freethreaded.dev", "freethreadedrollouts/finalizers"): {"update"},
    ("", "services"): {"get", "create", "patch", "delete"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "patch"},
}
CLUSTER_ONLY_RULES: dict[tuple[str, str], set[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}
PEERING_VERBS = {"list", "watch", "patch"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
# What the built-in view and edit ClusterRoles gain for FreeThreadedRollouts.
VIEW_RULES: dict[tuple[str, str], set[str]] = {
    ("freethreaded.dev", "freethreadedrollouts"): {"get", "list", "watch"},
    ("freethreaded.dev", "freethreadedrollouts/status"): {"get", "list", "watch"},
}
EDIT_RULES: dict[tuple[str, str], set[str]] = {
    ("freethreaded.dev", "freethreadedrollouts"): {
        "create", "update", "patch", "delete", "deletecollection",
    },
}  # fmt: skip


def helm_binary() -> Path | None:
    helm = Binaries.locate().helm
    return helm if helm.is_file() else None


needs_helm = pytest.mark.skipif(
    helm_binary() is None, reason="helm not built: run `make tools` (ftrollout-dev cluster build)"
)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = helm_binary()
    assert binary is not None
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "KUBECONFIG": "/nonexistent"},
    )


def template_text(*sets: str, namespace: str = "ftrollout-system", crds: bool = False) -> str:
    args = ["template", "ftrollout", str(CHART), "--namespace", namespace]
    if crds:
        args.append("--include-crds")
    for s in sets:
        args += ["--set", s]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(*sets: str, namespace: str = "ftrollout-system") -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(template_text(*sets, namespace=namespace)) if d]


def render_install_yaml() -> str:
    """What `make manifests` writes to manifests/install.yaml."""
    return INSTALL_HEADER.read_text() + template_text(crds=True)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs; a rule limited to objects by name is keyed
    (apiGroup, resource/name) per name."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for name in rule.get("resourceNames") or [None]:
                    key = (group, resource if name is None else f"{resource}/{name}")
                    out.setdefault(key, set()).update(rule["verbs"])
    return out


def operator_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ClusterRole bound to the operator (the others are aggregated into view/edit)."""
    roles = [r for r in of_kind(docs, "ClusterRole") if not aggregates_to(r)]
    assert len(roles) == 1, roles
    return roles[0]


def aggregates_to(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"].get("labels") or {}
    return {k.removeprefix(AGGREGATE) for k, v in labels.items() if k.startswith(AGGREGATE)}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)


# --------------------------------------------------------------------------- without helm


def test_chart_crd_is_byte_identical_to_the_generated_crd() -> None:
    chart_crd = CHART / "crds" / CRD_FILE
    assert chart_crd.read_bytes() == (ROOT / "crds" / CRD_FILE).read_bytes(), (
        "charts/ftrollout/crds drifted from crds/: run `make manifests` (it copies the CRD)"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [CRD_FILE, PEERING_CRDS]


def test_chart_versions_follow_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


def test_every_value_is_described_by_the_schema() -> None:
    import json

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_rollouts_are_valid_and_commented(name: str) -> None:
    text = (ROOT / "manifests" / "examples" / f"{name}.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == f"{api.GROUP}/{api.VERSION}"
    assert doc["kind"] == api.KIND
    spec = api.parse_spec(doc["spec"])
    assert spec.steps[-1].weight == 100
    comments = [line for line in text.splitlines() if "#" in line]
    assert len(comments) >= 5, f"{name}.yaml should explain itself"


def test_example_last_steps_hold_as_their_comments_say() -> None:
    """A step without `pause` does not hold; the examples whose last step says it waits for a
    promote spell it `pause: {}` (an omitted pause waited before v1alpha1 adopted Argo's rule)."""
    holds: dict[str, str | None] = {}
    for name in EXAMPLES:
        text = (ROOT / "manifests" / "examples" / f"{name}.yaml").read_text()
        last = api.parse_spec(yaml.safe_load(text)["spec"]).steps[-1]
        holds[name] = "promote" if last.waits_for_promote else last.pause and last.pause.duration
        says_promote = (
            "waits for `kubectl ftr promote`" in text or "wait for `kubectl ftr promote`" in text
        )
        assert says_promote == (holds[name] == "promote"), name
    assert holds["minimal"] == "promote"


def test_gil_strict_example_tolerates_no_gil_and_no_crash() -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "examples" / "gil-strict.yaml").read_text())
    spec = api.parse_spec(doc["spec"])
    g = spec.guardrails
    assert g.gil_fallback.max_pods == 0
    assert g.gil_fallback.action == api.GuardAction.ROLLBACK
    assert g.race_budget.max_incidents == 0
    assert g.dependency_gate is not None
    assert g.dependency_gate.action == api.GateAction.BLOCK
    assert spec.free_threaded.probe.enabled
    assert spec.analysis is not None
    assert spec.analysis.on_inconclusive == api.OnInconclusive.ROLLBACK


def test_full_example_sets_every_spec_field() -> None:
    doc = yaml.safe_load((ROOT / "manifests" / "examples" / "full.yaml").read_text())
    spec = api.parse_spec(doc["spec"])
    # Every field set explicitly equals a model with no field left at its default.
    assert spec.model_fields_set == set(api.RolloutSpec.model_fields)
    assert spec.analysis is not None
    assert spec.analysis.model_fields_set == set(api.Analysis.model_fields)
    assert spec.guardrails.dependency_gate is not None
    assert spec.free_threaded.model_fields_set == set(api.FreeThreadedSpec.model_fields)


def test_install_yaml_examples_are_not_mixed_up() -> None:
    # The install manifest holds no FreeThreadedRollout; examples hold nothing else.
    kinds = [d["kind"] for d in yaml.safe_load_all(INSTALL.read_text()) if d]
    assert api.KIND not in kinds
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]


# ------------------------------------------------------------------------------ with helm


@needs_helm
def test_helm_lint_is_clean() -> None:
    for sets in ([], ["watchNamespaces={a,b}", "peering.enabled=true", "replicaCount=2"]):
        args = ["lint", "--strict", str(CHART)]
        for s in sets:
            args += ["--set", s]
        proc = helm(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[ERROR]" not in proc.stdout, proc.stdout
        assert "[WARNING]" not in proc.stdout, proc.stdout


@needs_helm
def test_install_yaml_is_the_rendered_chart() -> None:
    assert INSTALL.read_text() == render_install_yaml(), (
        "manifests/install.yaml drifted from the chart: run `make manifests` and commit"
    )


@needs_helm
def test_default_render_is_cluster_wide_with_exactly_the_needed_rules() -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    role = operator_role(docs)
    assert rules_of(role) == NAMESPACED_RULES | CLUSTER_ONLY_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ftrollout", "namespace": "ftrollout-system"}
    ]
    # No namespace flag: the operator watches everything.
    assert not [a for a in container(docs)["args"] if a.startswith("--namespace")]


@needs_helm
def test_rbac_never_grants_wildcards_secrets_nodes_or_rbac() -> None:
    for sets in ((), ("watchNamespaces={shop}", "peering.enabled=true")):
        docs = render(*sets)
        for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"]
                assert "*" not in rule["resources"]
                assert "*" not in rule["apiGroups"]
                for forbidden in ("secrets", "nodes", "roles", "clusterroles", "rolebindings"):
                    assert forbidden not in rule["resources"]
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
                if not aggregates_to(role):  # editors may delete their rollouts in bulk
                    assert "deletecollection" not in rule["verbs"]


@needs_helm
def test_configmap_rights_are_limited_to_the_probe_configmap() -> None:
    for sets in ((), ("watchNamespaces={shop}",)):
        docs = render(*sets)
        role = operator_role(docs) if not sets else one(docs, "Role")
        rules = [r for r in role["rules"] if "configmaps" in r["resources"]]
        by_name = [r for r in rules if r.get("resourceNames")]
        unnamed = [r for r in rules if not r.get("resourceNames")]
        assert [r["resourceNames"] for r in by_name] == [[PROBE_CONFIGMAP]]
        assert set(by_name[0]["verbs"]) == {"get", "update"}
        # create cannot be limited by name (the name is not in the URL): it is the one verb left
        # unnamed, and it cannot touch an existing ConfigMap.
        assert [set(r["verbs"]) for r in unnamed] == [{"create"}]


@needs_helm
def test_owner_references_may_block_the_rollouts_deletion() -> None:
    # The twin and the preflight Job carry ownerReferences with blockOwnerDeletion: under the
    # OwnerReferencesPermissionEnforcement admission plugin that needs update on finalizers.
    for sets in ((), ("watchNamespaces={shop}",)):
        docs = render(*sets)
        role = operator_role(docs) if not sets else one(docs, "Role")
        rules = rules_of(role)
        assert rules[("freethreaded.dev", "freethreadedrollouts/finalizers")] == {"update"}
        assert not [k for k in rules if k[1].startswith("deployments/finalizers")]


@needs_helm
def test_viewers_and_editors_get_rollout_rights_through_aggregation() -> None:
    for sets in ((), ("watchNamespaces={shop}",)):
        docs = render(*sets)
        aggregated = {
            frozenset(aggregates_to(r)): r for r in of_kind(docs, "ClusterRole") if aggregates_to(r)
        }
        assert set(aggregated) == {frozenset({"view"}), frozenset({"edit"})}
        view = aggregated[frozenset({"view"})]
        edit = aggregated[frozenset({"edit"})]
        assert view["metadata"]["labels"][AGGREGATE + "view"] == "true"
        assert rules_of(view) == VIEW_RULES
        # edit aggregates view's rules too (the built-in edit role selects aggregate-to-view);
        # the status and finalizers stay the operator's.
        assert rules_of(edit) == EDIT_RULES
        for role in aggregated.values():
            assert "aggregationRule" not in role
        bound = {b["roleRef"]["name"] for b in of_kind(docs, "ClusterRoleBinding")}
        assert not bound & {r["metadata"]["name"] for r in aggregated.values()}
    docs = render("rbac.aggregateToView=false", "rbac.aggregateToEdit=false")
    assert [r for r in of_kind(docs, "ClusterRole") if aggregates_to(r)] == []
    docs = render("rbac.create=false")
    assert of_kind(docs, "ClusterRole") == []


@needs_helm
def test_namespaced_mode_renders_a_role_per_namespace_and_no_cluster_role() -> None:
    docs = render("watchNamespaces={shop,search}", namespace="ops")
    # No cluster-wide grant: the only ClusterRoles are aggregated into view/edit, bound to nobody.
    assert all(aggregates_to(r) for r in of_kind(docs, "ClusterRole"))
    assert not of_kind(docs, "ClusterRoleBinding")
    roles = of_kind(docs, "Role")
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["search", "shop"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["search", "shop"]
    for role in roles:
        assert rules_of(role) == NAMESPACED_RULES
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "ftrollout", "namespace": "ops"}
        ]
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=shop",
        "--namespace=search",
    ]


@needs_helm
def test_peering_grants_peering_objects_only_when_enabled() -> None:
    docs = render("peering.enabled=true", "replicaCount=2")
    rules = rules_of(operator_role(docs))
    assert rules[("kopf.dev", "clusterkopfpeerings")] == PEERING_VERBS
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "ftrollout"
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--peering=ftrollout" in container(docs)["args"]

    docs = render("peering.enabled=true", "watchNamespaces={shop}")
    assert rules_of(one(docs, "Role"))[("kopf.dev", "kopfpeerings")] == PEERING_VERBS
    assert one(docs, "KopfPeering")["metadata"]["namespace"] == "shop"

    docs = render()
    assert not [k for k in rules_of(operator_role(docs)) if "peering" in k[1]]
    assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


@needs_helm
def test_rbac_can_be_left_to_the_platform_team() -> None:
    docs = render("rbac.create=false", "serviceAccount.create=false", "serviceAccount.name=ops")
    assert not [d for d in docs if "Role" in d["kind"] or d["kind"] == "ServiceAccount"]
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "ops"


@needs_helm
def test_deployment_runs_non_root_with_a_read_only_root_filesystem() -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # The read-only root gets one writable place.
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["emptyDir"]
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]


@needs_helm
def test_probes_hit_healthz_and_ports_match_the_operator_flags() -> None:
    docs = render()
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9102}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--health-port=8080" in c["args"]
    assert "--metrics-port=9102" in c["args"]
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9102, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert c["image"] == "ghcr.io/ftrollout/ftrollout:0.1.0"
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in c["env"]


@needs_helm
def test_values_become_operator_flags() -> None:
    c = container(
        render(
            "logFormat=plain",
            "prometheus.url=http://prom.monitoring:9090",
            "prometheus.allowedAddresses={http://team-a.example:9090,*}",
            "qps=20",
            "burst=40",
            "verbose=true",
            "healthPort=8081",
            "metrics.port=9200",
            "statusRefreshSeconds=60",
            "prometheus.maxResponseBytes=1048576",
            "image.digest=sha256:" + "a" * 64,
        )
    )
    args = c["args"]
    for flag in (
        "--log-format=plain",
        "--prometheus-url=http://prom.monitoring:9090",
        "--prometheus-allow=http://team-a.example:9090",
        "--prometheus-allow=*",
        "--qps=20",
        "--burst=40",
        "--verbose",
        "--health-port=8081",
        "--metrics-port=9200",
        "--status-refresh=60",
        "--prometheus-max-response-bytes=1048576",
    ):
        assert flag in args
    assert c["image"] == "ghcr.io/ftrollout/ftrollout@sha256:" + "a" * 64
    # Every rendered flag is one `ftrollout run` accepts.
    import argparse

    from ftrollout.shell.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.parse_args(args)


@needs_helm
@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["logFormat=xml"], "/logFormat"),
        (["typo=1"], "typo"),
        (["replicaCount=2"], "peering.enabled"),
        (["podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (["watchNamespaces={Bad_NS}"], "/watchNamespaces/0"),
        (["prometheus.url=prometheus:9090"], "/prometheus/url"),
        (["prometheus.allowedAddresses={http://u:p@prom:9090}"], "/prometheus/allowedAddresses/0"),
        (["statusRefreshSeconds=-1"], "/statusRefreshSeconds"),
        (["prometheus.maxResponseBytes=10"], "/prometheus/maxResponseBytes"),
        (["serviceMonitor.enabled=true", "metrics.service.enabled=false"], "metrics.service"),
    ],
)
def test_bad_values_are_refused_with_the_key(sets: list[str], message: str) -> None:
    args = ["template", "x", str(CHART)]
    for s in sets:
        args += ["--set", s]
    proc = helm(*args)
    assert proc.returncode != 0
    assert message in proc.stderr


@needs_helm
def test_monitoring_objects_are_optional_and_use_real_metric_names() -> None:
    docs = render()
    assert not of_kind(docs, "ServiceMonitor")
    assert not of_kind(docs, "PrometheusRule")
    docs = render("serviceMonitor.enabled=true", "prometheusRule.enabled=true")
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "FreeThreadedRolloutRolledBack",
        "FreeThreadedRolloutOperatorDown",
        "FreeThreadedRolloutFailed",
        "FreeThreadedRolloutPrometheusErrors",
        "FreeThreadedRolloutGILAfterPromotion",
    } <= set(alerts)
    # The alerts query metrics the operator really exports, by labels those metrics carry
    # under their own names (no `namespace`: a ServiceMonitor without honorLabels would turn it
    # into exported_namespace and the alert would name the operator's namespace).
    exported: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if hasattr(collector, "_labelnames") and hasattr(collector, "describe"):
            for m in collector.describe():
                name = m.name + ("_total" if m.type == "counter" else "")
                exported[name] = set(collector._labelnames)
    used = set()
    for alert in alerts.values():
        expr = alert["expr"]
        names = set(re.findall(r"\bftrollout_[a-z_]+", expr))
        used |= names
        assert names <= set(exported), alert["alert"]
        labels = set()
        for name in names:
            labels |= exported[name]
        grouped = re.findall(r"by \(([^)]*)\)", expr)
        by = {x.strip() for g in grouped for x in g.split(",") if x.strip()}
        templated = set(re.findall(r"\$labels\.([a-z_]+)", json.dumps(alert["annotations"])))
        if names:
            assert by <= labels, (alert["alert"], by - labels)
            assert templated <= by or not by, (alert["alert"], templated - by)
    assert {
        "ftrollout_rollout_info",
        "ftrollout_prometheus_query_errors_total",
        "ftrollout_rollout_gil_enabled_pods",
    } <= used
    # After promotion a GIL fallback only alerts: the alert is for Promoted rollouts.
    gil_after = alerts["FreeThreadedRolloutGILAfterPromotion"]["expr"]
    assert "ftrollout_rollout_gil_enabled_pods" in gil_after
    assert 'phase="Promoted"' in gil_after
    assert "on (rollout_namespace, rollout)" in gil_after
    assert 'job="ftrollout-metrics"' in alerts["FreeThreadedRolloutOperatorDown"]["expr"]
    # Alert templates survive Helm's own templating.
    summary = alerts["FreeThreadedRolloutRolledBack"]["annotations"]["summary"]
    assert "{{ $labels.rollout_namespace }}/{{ $labels.rollout }}" in summary


@needs_helm
def test_pod_monitor_for_the_probe_is_off_by_default() -> None:
    assert not of_kind(render(), "PodMonitor")


@needs_helm
def test_pod_monitor_scrapes_the_probe_port_of_free_threaded_pods_in_any_namespace() -> None:
    pm = one(render("podMonitor.enabled=true", "podMonitor.labels.release=kp"), "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["metadata"]["namespace"] == "ftrollout-system"
    assert pm["metadata"]["labels"]["release"] == "kp"
    assert pm["spec"]["selector"] == {"matchLabels": {twin.LABEL_TRACK: twin.TRACK_FREE_THREADED}}
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == twin.PROBE_PORT_NAME  # the name the twin declares
    assert endpoint["path"] == "/metrics"
    # Nothing that would drop the namespace/pod target labels the guardrail queries group by.
    assert "relabelings" not in endpoint
    assert "honorLabels" not in endpoint


@needs_helm
def test_pod_monitor_namespaces_follow_the_watched_ones_or_the_value() -> None:
    pm = one(render("podMonitor.enabled=true", "watchNamespaces={shop,pay}"), "PodMonitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["shop", "pay"]}
    pm = one(
        render(
            "podMonitor.enabled=true",
            "podMonitor.namespaceSelector.matchNames={shop}",
            "podMonitor.namespace=monitoring",
            "podMonitor.interval=5s",
        ),
        "PodMonitor",
    )
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["shop"]}
    assert pm["metadata"]["namespace"] == "monitoring"
    assert pm["spec"]["podMetricsEndpoints"][0]["interval"] == "5s"


@needs_helm
def test_pod_monitor_values_are_validated() -> None:
    proc = helm(
        "template", "ftrollout", str(CHART), "--set", "podMonitor.namespaceSelector.all=true"
    )
    assert proc.returncode != 0
    assert "podMonitor" in proc.stderr


@needs_helm
def test_notes_say_how_to_check_it_works() -> None:
    proc = helm("install", "ftrollout", str(CHART), "-n", "ops", "--dry-run=client")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    for text in (
        "kubectl -n ops rollout status deployment/ftrollout",
        "/healthz",
        "/metrics",
        "kubectl auth can-i",
        "kubectl apply --server-side --force-conflicts -f",
        "kubectl get ftr -A",
    ):
        assert text in notes


@needs_helm
def test_prometheus_ca_and_credentials_are_mounted_files_and_flags_the_operator_accepts() -> None:
    sets = (
        "prometheus.url=https://prom.monitoring:9090",
        "prometheus.tls.caSecret=prom-ca",
        "prometheus.auth[0].secretName=prom-basic",
        "prometheus.auth[0].type=basic",
        "prometheus.auth[1].secretName=team-a-token",
        "prometheus.auth[1].type=bearer",
        "prometheus.auth[1].address=https://team-a.example:9090",
    )
    docs = render(*sets)
    c = container(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "--prometheus-ca-file=/etc/ftrollout/prometheus-ca/ca.crt" in c["args"]
    assert (
        "--prometheus-basic-auth=https://prom.monitoring:9090=/etc/ftrollout/prometheus-auth/0"
        in c["args"]
    )
    assert (
        "--prometheus-bearer-token-file=https://team-a.example:9090="
        "/etc/ftrollout/prometheus-auth/1/token" in c["args"]
    )
    assert "--prometheus-insecure-skip-verify" not in c["args"]  # verified unless opted out
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {
        "prometheus-ca": "prom-ca",
        "prometheus-auth-0": "prom-basic",
        "prometheus-auth-1": "team-a-token",
    }
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["prometheus-auth-1"] == "/etc/ftrollout/prometheus-auth/1"
    # The kubelet mounts them: no Role or ClusterRole of the chart mentions Secrets.
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        assert all("secrets" not in r.get("resources", []) for r in role["rules"])
    # The flags parse; the files would be there in the pod.
    import argparse

    from ftrollout.shell.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(c["args"])
    assert args.prometheus_basic_auth
    assert args.prometheus_bearer_token_file
    insecure = container(render("prometheus.tls.insecureSkipVerify=true"))
    assert "--prometheus-insecure-skip-verify" in insecure["args"]
    proc = helm("template", "x", str(CHART), "--set", "prometheus.auth[0].secretName=s",
                "--set", "prometheus.auth[0].type=basic")  # fmt: skip
    assert proc.returncode != 0
    assert "prometheus.auth[0]: no address and no prometheus.url" in proc.stderr


@needs_helm
def test_an_allowed_address_may_be_reserved_for_namespaces() -> None:
    """prometheus.allowedAddresses items: a string (every namespace) or {address, namespaces}."""
    docs = render(
        "prometheus.url=http://prom.monitoring:9090",
        "prometheus.allowedAddresses[0].address=http://prom.team-a:9090",
        "prometheus.allowedAddresses[0].namespaces={team-a,team-a-dev}",
        "prometheus.allowedAddresses[1]=http://shared:9090",
    )
    args = container(docs)["args"]
    assert "--prometheus-allow=http://prom.team-a:9090" in args
    assert "--prometheus-address-namespaces=http://prom.team-a:9090=team-a,team-a-dev" in args
    assert "--prometheus-allow=http://shared:9090" in args
    import argparse

    from ftrollout.shell.prometheus_config import from_args
    from ftrollout.shell.runner import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = from_args(parser.parse_args(args))
    assert cfg.allowed.scopes == {"http://prom.team-a:9090": {"team-a", "team-a-dev"}}
    for bad, key in (
        (["prometheus.allowedAddresses[0].namespaces={team-a}"], "allowedAddresses/0"),
        (
            [
                "prometheus.allowedAddresses[0].address=http://a:1",
                "prometheus.allowedAddresses[0].namespaces={Team_A}",
            ],
            "allowedAddresses/0",
        ),
    ):
        args_ = ["template", "x", str(CHART)]
        for s in bad:
            args_ += ["--set", s]
        proc = helm(*args_)
        assert proc.returncode != 0
        assert key in proc.stderr
