"""The Helm chart against the real control plane: install, RBAC proven by use, upgrade, uninstall.

The operator image cannot run here (no container engine); kwok marks the chart's pod Ready all the
same. The operator itself runs out of cluster with the chart's ServiceAccount token, so every API
call it makes is authorised by the chart's ClusterRole/Role and nothing else: a rollout that
completes proves the rules are sufficient, `kubectl auth can-i` proves they are not more.

The tests of this module run in order and share one release. This module does not use the
admin `operator` fixture: two operators must never handle the same rollouts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_operator import (
    CRD_NAME,
    OperatorProcess,
    apply,
    deployment,
    ftr_status,
    get,
    replicas,
    rollout,
    wait_for,
)

from ftrollout.model import api
from ftrollout.plan.preflight import PROBE_CONFIGMAP, job_manifest
from ftrollout.plan.twin import ANNOTATION_ACTION, twin_manifest
from ftrollout_dev.localcluster import LocalCluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ftrollout"
CHART_CRDS = CHART / "crds"
RELEASE = "ftr"
SA_NAME = "ftr-ftrollout"  # <release>-<chart>
OPERATOR_START = 150  # s: kopf's fallback when it may not list namespaces takes ~1 min


@dataclass
class Release:
    cluster: LocalCluster
    namespace: str  # where the chart is installed
    watched: str  # a namespace for rollouts (cluster mode, then namespaced mode)
    other: str  # a namespace the namespaced Role does not cover
    tmp: Path

    @property
    def sa(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{SA_NAME}"

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.cluster.binaries.helm), *args, "--namespace", self.namespace],
            capture_output=True,
            text=True,
            timeout=180,
            env=self.cluster.env(),
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc

    def can_i(self, verb: str, resource: str, *where: str) -> bool:
        proc = self.cluster.kubectl(
            "auth", "can-i", verb, resource, f"--as={self.sa}", *where, check=False
        )
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), proc.stderr
        return answer == "yes"

    def sa_kubeconfig(self) -> Path:
        """A kubeconfig holding a token of the chart's ServiceAccount (TokenRequest API)."""
        token = self.cluster.kubectl(
            "create", "token", SA_NAME, "-n", self.namespace, "--duration=1h"
        ).stdout.strip()
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": SA_NAME, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "operator",
                    "context": {"cluster": "local", "user": SA_NAME, "namespace": self.watched},
                }
            ],
            "current-context": "operator",
        }
        path = self.tmp / f"sa-{int(time.monotonic() * 1000)}.kubeconfig"
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def objects(self, kind: str, *where: str) -> list[dict[str, Any]]:
        proc = self.cluster.kubectl(
            "get", kind, *where, "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
        return items


def _crd_description(cluster: LocalCluster) -> str:
    crd = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return str(schema["properties"]["spec"].get("description", ""))


def _chart_crd_description() -> str:
    docs = [
        d
        for d in yaml.safe_load_all(
            (CHART_CRDS / "freethreaded.dev_freethreadedrollouts.yaml").read_text()
        )
        if d
    ]
    schema = docs[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return str(schema["properties"]["spec"].get("description", ""))


def _old_crd() -> str:
    """The chart's CRD as an older release would have left it (a different description)."""
    docs = [
        d
        for d in yaml.safe_load_all(
            (CHART_CRDS / "freethreaded.dev_freethreadedrollouts.yaml").read_text()
        )
        if d
    ]
    crd = docs[0]
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["description"] = (
        "OLD CRD from a previous release"
    )
    return yaml.safe_dump(crd)


def _run_rollout(
    rel: Release, namespace: str, name: str, log: Path, *flags: str
) -> OperatorProcess:
    """Start the operator as the ServiceAccount and take a rollout to Promoted."""
    op = OperatorProcess(
        rel.cluster, log, "--namespace", namespace, *flags, kubeconfig=rel.sa_kubeconfig()
    )
    op.start()
    apply(rel.cluster, namespace, deployment(name, 4))
    wait_for(lambda: replicas(rel.cluster, namespace, name) == (4, 4), 60, f"{name} Ready")
    steps = [
        {"weight": 25, "pause": {"duration": "1s"}},
        {"weight": 100, "pause": {"duration": "1s"}},
    ]
    apply(rel.cluster, namespace, rollout(name, name, steps))
    try:
        wait_for(
            lambda: ftr_status(rel.cluster, namespace, name).get("phase") == "Promoted",
            OPERATOR_START,
            f"{name} Promoted by the operator running as {rel.sa}",
        )
    except AssertionError:
        op.stop()
        raise AssertionError(op.log_tail(80)) from None
    return op


def _forbidden_lines(op: OperatorProcess, *fallbacks: str) -> list[str]:
    """403s in the operator's log, except kopf's documented fallbacks: it may not list
    namespaces (it then uses the given names), nor, in namespaced mode, watch CRDs (it then
    uses the startup discovery)."""
    skip = ("namespaces", *fallbacks)
    return [
        line
        for line in op.log_path.read_text(errors="replace").splitlines()
        if ("forbidden" in line.lower() or " 403" in line or "permissions" in line)
        and not any(f'resource "{r}"' in line or f"'kind': '{r}'" in line for r in skip)
        and "Not enough permissions to list namespaces" not in line
        and not ("customresourcedefinitions" in skip and "watch for resources" in line)
    ]


@pytest.fixture(scope="module")
def release(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    suffix = int(time.monotonic() * 1000) % 100000
    rel = Release(
        cluster,
        namespace=f"ftr-system-{suffix}",
        watched=f"helm-apps-{suffix}",
        other=f"helm-other-{suffix}",
        tmp=tmp_path_factory.mktemp("helm"),
    )
    for ns in (rel.watched, rel.other):
        cluster.kubectl("create", "namespace", ns)
    # The current CRD, as other modules (and `kubectl apply -f manifests/install.yaml`) leave it.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    try:
        yield rel
    finally:
        rel.helm("uninstall", RELEASE, "--wait", check=False)
        for ns in (rel.watched, rel.other):
            # Rollouts left without an operator would hold their namespace in Terminating.
            cluster.kubectl(
                "patch", "ftr", "--all", "-n", ns, "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", rel.namespace, "--wait=false", check=False)
        # Leave the current CRD for the modules that follow.
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))


def test_helm_install_creates_the_operator_and_least_privilege_rbac(release: Release) -> None:
    rel = release
    proc = rel.helm(
        "install", RELEASE, str(CHART), "--create-namespace", "--wait", "--timeout", "120s"
    )
    assert "kubectl -n " + rel.namespace + " rollout status deployment/ftr-ftrollout" in proc.stdout
    status = json.loads(rel.helm("status", RELEASE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    dep = get(rel.cluster, rel.namespace, "deployment", "ftr-ftrollout")
    assert dep is not None
    assert dep["status"].get("readyReplicas") == 1  # kwok runs no image but reports Ready
    pod_spec = dep["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == SA_NAME
    assert pod_spec["securityContext"]["runAsUser"] == 65532
    assert pod_spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert get(rel.cluster, rel.namespace, "serviceaccount", SA_NAME) is not None
    assert get(rel.cluster, rel.namespace, "service", "ftr-ftrollout-metrics") is not None
    assert sorted(r["metadata"]["name"] for r in rel.objects("clusterrole")) == [
        "ftr-ftrollout",
        "ftr-ftrollout-edit",
        "ftr-ftrollout-view",
    ]
    assert [r["metadata"]["name"] for r in rel.objects("clusterrolebinding")] == ["ftr-ftrollout"]
    crd = json.loads(
        rel.cluster.kubectl("get", "crd", CRD_NAME, "-o", "json", "--show-managed-fields").stdout
    )
    assert "helm" in {f["manager"] for f in crd["metadata"]["managedFields"]}


def test_requests_outside_the_role_are_denied(release: Release) -> None:
    rel = release
    allowed = [
        ("patch", "deployments.apps/scale", "-n", rel.watched),
        ("create", "deployments.apps", "-n", rel.watched),
        ("watch", "pods", "-A"),
        ("patch", "freethreadedrollouts.freethreaded.dev/status", "-n", rel.watched),
        ("create", "events", "-n", rel.other),
        ("create", "configmaps", "-n", rel.watched),
        ("get", f"configmaps/{PROBE_CONFIGMAP}", "-n", rel.watched),
        ("update", f"configmaps/{PROBE_CONFIGMAP}", "-n", rel.watched),
        ("update", "freethreadedrollouts.freethreaded.dev", "--subresource=finalizers", "-A"),
    ]
    denied = [
        ("delete", "nodes"),
        ("create", "secrets", "-n", rel.watched),
        ("get", "secrets", "-A"),
        ("list", "configmaps", "-A"),
        ("delete", "pods", "-n", rel.watched),
        ("update", "deployments.apps", "-n", rel.watched),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "freethreadedrollouts.freethreaded.dev", "-n", rel.watched),
        ("delete", "freethreadedrollouts.freethreaded.dev", "-n", rel.watched),
        ("impersonate", "serviceaccounts", "-A"),
        # ConfigMaps: the probe's by name only.
        ("get", "configmaps/kube-root-ca.crt", "-n", rel.watched),
        ("update", "configmaps/app-config", "-n", rel.watched),
        ("patch", f"configmaps/{PROBE_CONFIGMAP}", "-n", rel.watched),
        ("delete", f"configmaps/{PROBE_CONFIGMAP}", "-n", rel.watched),
        ("list", "configmaps", "-n", rel.watched),
        ("update", "deployments.apps", "--subresource=finalizers", "-n", rel.watched),
    ]
    assert [a for a in allowed if not rel.can_i(*a)] == []
    assert [d for d in denied if rel.can_i(*d)] == []
    # And a real request with the token is refused by the apiserver.
    proc = rel.cluster.kubectl(
        "--kubeconfig", str(rel.sa_kubeconfig()), "get", "secrets", "-n", "kube-system", check=False
    )
    assert proc.returncode != 0
    assert "forbidden" in proc.stderr.lower()


def _owned_objects(rel: Release, rollout_name: str) -> list[dict[str, Any]]:
    """The twin and the preflight Job the operator would create for a fresh rollout: both carry
    an ownerReference with blockOwnerDeletion."""
    apply(rel.cluster, rel.watched, rollout(rollout_name, rollout_name, [{"weight": 100}]))
    owner = get(rel.cluster, rel.watched, "ftr", rollout_name)
    assert owner is not None
    spec = api.parse_spec(owner["spec"])
    target = deployment(rollout_name, 1, namespace=rel.watched)
    twin = twin_manifest(
        rollout_name=rollout_name,
        rollout_uid=owner["metadata"]["uid"],
        target=target,
        spec=spec.free_threaded,
        revision="r1",
        replicas=0,
    )
    job = job_manifest(
        rollout=rollout_name,
        rollout_uid=owner["metadata"]["uid"],
        namespace=rel.watched,
        free_threaded=spec.free_threaded,
        gate=api.DependencyGate(modules=["json"]),
        target_pod_spec=target["spec"]["template"]["spec"],
    )
    for obj in (twin, job):
        assert obj["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
    return [twin, job]


def test_owner_references_with_block_owner_deletion_are_allowed(release: Release) -> None:
    """The local apiserver runs OwnerReferencesPermissionEnforcement: setting
    blockOwnerDeletion needs update on freethreadedrollouts/finalizers, which the chart grants."""
    rel = release
    cluster = rel.cluster
    objects = _owned_objects(rel, "owned")
    # Without the finalizers rule (the chart's other rules, bound to another identity) the
    # apiserver refuses both objects: the plugin is on and the rule is what makes it work.
    role = json.loads(cluster.kubectl("get", "clusterrole", SA_NAME, "-o", "json").stdout)
    rules = [r for r in role["rules"] if "freethreadedrollouts/finalizers" not in r["resources"]]
    assert len(rules) == len(role["rules"]) - 1
    bare = "ftr-no-finalizers"
    cluster.kubectl("create", "serviceaccount", bare, "-n", rel.watched)
    apply(
        cluster,
        rel.watched,
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": bare}, "rules": rules},
    )  # fmt: skip
    cluster.kubectl(
        "create", "rolebinding", bare, "-n", rel.watched, f"--role={bare}",
        f"--serviceaccount={rel.watched}:{bare}",
    )  # fmt: skip
    for obj in objects:
        proc = cluster.kubectl(
            "create", "-n", rel.watched, "-f", "-",
            f"--as=system:serviceaccount:{rel.watched}:{bare}",
            input=yaml.safe_dump(obj), check=False,
        )  # fmt: skip
        assert proc.returncode != 0, f"{obj['kind']} created without the finalizers rule"
        assert "cannot set blockOwnerDeletion" in proc.stderr, proc.stderr
    # As the chart's ServiceAccount (its own token): both created.
    kubeconfig = str(rel.sa_kubeconfig())
    for obj in objects:
        cluster.kubectl(
            "--kubeconfig", kubeconfig, "create", "-n", rel.watched, "-f", "-",
            input=yaml.safe_dump(obj),
        )  # fmt: skip
    assert get(cluster, rel.watched, "deployment", "owned-ft") is not None
    assert get(cluster, rel.watched, "job", objects[1]["metadata"]["name"]) is not None
    # Deleting the rollout takes both with it (the garbage collector follows the references).
    cluster.kubectl("delete", "ftr", "owned", "-n", rel.watched, "--cascade=foreground")
    wait_for(
        lambda: get(cluster, rel.watched, "deployment", "owned-ft") is None, 60, "twin collected"
    )


def _user_kubeconfig(rel: Release, name: str, cluster_role: str) -> Path:
    """A ServiceAccount bound to a built-in ClusterRole (view, edit) in the watched namespace,
    as a kubeconfig with its token: a namespace user who has never heard of ftrollout."""
    cluster = rel.cluster
    cluster.kubectl("create", "serviceaccount", name, "-n", rel.watched)
    cluster.kubectl(
        "create", "rolebinding", name, "-n", rel.watched, f"--clusterrole={cluster_role}",
        f"--serviceaccount={rel.watched}:{name}",
    )  # fmt: skip
    token = cluster.kubectl(
        "create", "token", name, "-n", rel.watched, "--duration=1h"
    ).stdout.strip()
    cfg = yaml.safe_load(rel.sa_kubeconfig().read_text())
    cfg["users"] = [{"name": name, "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = name
    path = rel.tmp / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


def _ftr(rel: Release, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl ftr ...` (the plugin, found on PATH) as the user of the kubeconfig."""
    assert rel.cluster.binaries.kubectl is not None
    env = rel.cluster.env()
    env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(rel.cluster.binaries.kubectl), "ftr", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_namespace_editors_promote_and_viewers_only_read(release: Release) -> None:
    """The chart's aggregated ClusterRoles extend the built-in view and edit roles."""
    rel = release
    cluster = rel.cluster
    apply(cluster, rel.watched, rollout("shared", "shared", [{"weight": 100}]))
    editor = _user_kubeconfig(rel, "alice-editor", "edit")
    viewer = _user_kubeconfig(rel, "bob-viewer", "view")

    def action() -> str | None:
        obj = get(cluster, rel.watched, "ftr", "shared") or {}
        return (obj["metadata"].get("annotations") or {}).get(ANNOTATION_ACTION)

    # The viewer reads rollouts, and may not promote.
    out = _ftr(rel, viewer, "get", "-n", rel.watched)
    assert out.returncode == 0, out.stderr
    assert "shared" in out.stdout
    denied = _ftr(rel, viewer, "promote", "shared", "-n", rel.watched)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower(), denied.stderr
    assert action() is None
    # The editor promotes with her own rights: the action annotation is set.
    done = _ftr(rel, editor, "promote", "shared", "-n", rel.watched)
    assert done.returncode == 0, done.stderr
    assert action().partition("@")[0] == "promote"  # `verb@id`: one request, applied once
    # It is the chart's role that grants it: edit knows nothing of a CRD by itself. Take the
    # aggregation label away and the aggregation controller takes the rights back.
    edit_role = f"{SA_NAME}-edit"
    label = "rbac.authorization.k8s.io/aggregate-to-edit"
    who = f"--as=system:serviceaccount:{rel.watched}:alice-editor"
    where = ("-n", rel.watched)
    patch = ("patch", "freethreadedrollouts.freethreaded.dev", who, *where)
    cluster.kubectl("label", "clusterrole", edit_role, f"{label}-")
    try:
        wait_for(
            lambda: cluster.kubectl("auth", "can-i", *patch, check=False).stdout.strip() == "no",
            60,
            "edit loses the rollout rights",
        )
        assert _ftr(rel, editor, "promote", "shared", "-n", rel.watched).returncode != 0
    finally:
        cluster.kubectl("label", "clusterrole", edit_role, f"{label}=true", "--overwrite")
    wait_for(
        lambda: cluster.kubectl("auth", "can-i", *patch, check=False).stdout.strip() == "yes",
        60,
        "edit regains the rollout rights",
    )
    cluster.kubectl("delete", "ftr", "shared", "-n", rel.watched)


def test_operator_as_the_chart_serviceaccount_completes_a_rollout(release: Release) -> None:
    rel = release
    op = _run_rollout(rel, rel.watched, "web", rel.tmp / "operator-cluster-mode.log")
    try:
        st = ftr_status(rel.cluster, rel.watched, "web")
        assert st["replicas"]["freeThreaded"] == 4
        wait_for(lambda: replicas(rel.cluster, rel.watched, "web-ft") == (4, 4), 30, "twin at 4")
        # Deleting runs the finalizer: target restored, twin deleted, finalizer removed.
        rel.cluster.kubectl("delete", "ftr", "web", "-n", rel.watched, "--wait=true", timeout=90)
        wait_for(lambda: replicas(rel.cluster, rel.watched, "web") == (4, 4), 60, "target back")
        wait_for(
            lambda: get(rel.cluster, rel.watched, "deployment", "web-ft") is None, 60, "twin gone"
        )
        assert _forbidden_lines(op) == []
    finally:
        op.stop()


def test_crd_upgrade_path_then_helm_upgrade_to_namespaced_mode(release: Release) -> None:
    rel = release
    # The cluster holds the CRD of the previous chart version, as Helm installed it.
    rel.cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=helm",
        "-f", "-", input=_old_crd(),
    )  # fmt: skip
    assert _crd_description(rel.cluster) == "OLD CRD from a previous release"
    # 1. The pain: `helm upgrade` to the new chart leaves crds/ alone.
    rel.helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--wait", "--timeout", "120s")
    assert _crd_description(rel.cluster) == "OLD CRD from a previous release"
    # 2. The documented step: apply the chart's CRD with kubectl, server side, first.
    rel.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    rel.cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    assert _crd_description(rel.cluster) == _chart_crd_description()
    # 3. helm upgrade: another log format, and namespaced mode for one namespace.
    rel.helm(
        "upgrade", RELEASE, str(CHART), "--reuse-values", "--wait", "--timeout", "120s",
        "--set", "logFormat=plain", "--set", f"watchNamespaces={{{rel.watched}}}",
    )  # fmt: skip
    status = json.loads(rel.helm("status", RELEASE, "-o", "json").stdout)
    assert status["version"] == 3
    assert status["info"]["status"] == "deployed"
    dep = get(rel.cluster, rel.namespace, "deployment", "ftr-ftrollout")
    assert dep is not None
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-format=plain" in args
    assert f"--namespace={rel.watched}" in args
    wait_for(
        lambda: (
            (get(rel.cluster, rel.namespace, "deployment", "ftr-ftrollout") or {})
            .get("status", {})
            .get("updatedReplicas")
            == 1
        ),
        60,
        "the upgraded operator pod",
    )
    # Namespaced mode: no cluster-wide grant any more, a Role in the watched namespace only (the
    # ClusterRoles left are aggregated into view/edit and bound to nobody).
    assert sorted(r["metadata"]["name"] for r in rel.objects("clusterrole")) == [
        "ftr-ftrollout-edit",
        "ftr-ftrollout-view",
    ]
    assert rel.objects("clusterrolebinding") == []
    assert [r["metadata"]["namespace"] for r in rel.objects("role", "-A")] == [rel.watched]
    assert rel.can_i("patch", "deployments.apps/scale", "-n", rel.watched)
    assert not rel.can_i("patch", "deployments.apps/scale", "-n", rel.other)
    assert not rel.can_i("watch", "pods", "-A")
    # The Role alone is enough for a whole rollout.
    op = _run_rollout(rel, rel.watched, "api", rel.tmp / "operator-namespaced.log")
    try:
        assert _forbidden_lines(op, "customresourcedefinitions") == []
    finally:
        op.stop()


def test_helm_uninstall_removes_the_operator_but_keeps_crd_and_rollouts(release: Release) -> None:
    rel = release
    rel.helm("uninstall", RELEASE, "--wait", "--timeout", "120s")
    assert get(rel.cluster, rel.namespace, "deployment", "ftr-ftrollout") is None
    assert get(rel.cluster, rel.namespace, "serviceaccount", SA_NAME) is None
    assert rel.objects("role", "-A") == []
    assert rel.objects("rolebinding", "-A") == []
    # As documented: the CRD and the rollouts stay (Helm never deletes crds/).
    assert rel.cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
    assert get(rel.cluster, rel.watched, "ftr", "api") is not None
    assert not rel.can_i("list", "pods", "-n", rel.watched)
    assert rel.helm("status", RELEASE, check=False).returncode != 0
