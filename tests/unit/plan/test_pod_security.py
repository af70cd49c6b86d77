"""Restricted namespaces: the preflight Job and the twin pass the Pod Security "restricted" rules.

`restricted_violations` restates the checks of the restricted profile (Pod Security Standards,
v1.25+) that an operator-built pod could break; tests/e2e/test_restricted_namespace.py has the
real admission controller decide.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ftrollout.model import api
from ftrollout.plan.preflight import job_manifest
from ftrollout.plan.twin import twin_manifest

IMAGE = "registry.example/app:2-py3.14t"
ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(key)
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {v['name']}: {kinds}")
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("pod seccompProfile")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    for c in [*(pod.get("initContainers") or []), *pod["containers"]]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation != false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities not dropped")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities added")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{name}: runAsNonRoot != true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{name}: hostPort")
    return out


def restricted_target(pod_level: bool = True) -> dict[str, Any]:
    """A Deployment the restricted profile admits: at pod level, or per container."""
    hardened = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    identity = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod: dict[str, Any] = {
        "containers": [
            {"name": "app", "image": "registry.example/app:2", "securityContext": dict(hardened)}
        ]
    }
    if pod_level:
        pod["securityContext"] = identity
    else:
        pod["containers"][0]["securityContext"].update(identity)
    assert restricted_violations(pod) == []
    return {
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod},
        },
    }


def job(target: dict[str, Any], gate: api.DependencyGate | None = None) -> dict[str, Any]:
    return job_manifest(
        rollout="web",
        rollout_uid="u1",
        namespace="shop",
        free_threaded=api.FreeThreadedSpec(image=IMAGE),
        gate=gate or api.DependencyGate(modules=["json"]),
        target_pod_spec=target["spec"]["template"]["spec"],
    )


@pytest.mark.parametrize("pod_level", [True, False], ids=["pod-level", "container-level"])
def test_the_preflight_job_is_restricted_and_runs_as_the_service(pod_level: bool) -> None:
    pod = job(restricted_target(pod_level))["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    c = pod["containers"][0]["securityContext"]
    assert c["allowPrivilegeEscalation"] is False
    assert c["capabilities"] == {"drop": ["ALL"]}
    assert c["runAsNonRoot"] is True
    assert c["seccompProfile"] == {"type": "RuntimeDefault"}
    # The same user as the service's container: the image's files are readable as for the app.
    assert c["runAsUser"] == 1000


def test_the_preflight_job_is_restricted_when_the_service_says_nothing() -> None:
    target = restricted_target()
    bare = copy.deepcopy(target)
    del bare["spec"]["template"]["spec"]["securityContext"]
    del bare["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    pod = job(bare)["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    # A non-root uid of its own: the preflight only imports and writes its termination log.
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 65532


def test_the_preflight_job_keeps_a_group_and_fs_group_of_the_service() -> None:
    target = restricted_target()
    target["spec"]["template"]["spec"]["securityContext"].update(
        runAsGroup=3000, fsGroup=2000, supplementalGroups=[4000]
    )
    pod = job(target)["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 2000
    assert pod["securityContext"]["supplementalGroups"] == [4000]
    assert pod["containers"][0]["securityContext"]["runAsGroup"] == 3000


def test_the_preflight_job_has_resources_by_default_and_as_configured() -> None:
    c = job(restricted_target())["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    gate = api.DependencyGate.model_validate(
        {"modules": ["torch"], "resources": {"limits": {"memory": "4Gi"}}}
    )
    c = job(restricted_target(), gate)["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"memory": "4Gi"}}


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}, "memory"),
        ({"requests": {"cpu": "1500m"}, "limits": {"cpu": "1"}}, "cpu"),
        ({"requests": {"cpu": "lots"}}, "cpu"),
        ({"limits": {"gpu": "1"}}, "gpu"),
    ],
)
def test_bad_preflight_resources_are_refused_naming_the_field(
    resources: dict[str, Any], field: str
) -> None:
    with pytest.raises(api.ValidationError) as err:
        api.DependencyGate.model_validate({"modules": ["json"], "resources": resources})
    assert field in str(err.value)


def test_quantities_compare_like_kubernetes() -> None:
    ok = {"requests": {"cpu": "0.5", "memory": "1G"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
    api.DependencyGate.model_validate({"modules": ["json"], "resources": ok})


def test_the_twin_with_the_probe_is_admitted_iff_the_target_is() -> None:
    target = restricted_target()
    ft = api.FreeThreadedSpec.model_validate({"image": IMAGE, "probe": {"enabled": True}})
    twin = twin_manifest(
        rollout_name="web",
        rollout_uid="u1",
        target=target,
        spec=ft,
        revision="r1",
        replicas=1,
        probe_configmap="ftrollout-probe",
    )
    pod = twin["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"ftrollout-probe"}
    assert restricted_violations(pod) == []
    # The probe's port is not a hostPort, nothing privileged was added: what the twin breaks
    # is what the target broke already.
    privileged = copy.deepcopy(target)
    privileged["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    twin = twin_manifest(
        rollout_name="web", rollout_uid="u1", target=privileged, spec=ft, revision="r1",
        replicas=1, probe_configmap="ftrollout-probe",
    )  # fmt: skip
    assert restricted_violations(twin["spec"]["template"]["spec"]) == ["app: privileged"]


def test_the_crd_checks_requests_against_limits_with_the_same_words() -> None:
    from ftrollout.model.crd import build_crd

    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    gate = schema["properties"]["spec"]["properties"]["guardrails"]["properties"]["dependencyGate"]
    resources = gate["properties"]["resources"]
    messages = {r["message"] for r in resources["x-kubernetes-validations"]}
    assert messages == {f"{r}: {api.MSG_REQUEST_OVER_LIMIT}" for r in ("cpu", "memory")}
    assert all("quantity(" in r["rule"] for r in resources["x-kubernetes-validations"])
