"""The generated FreeThreadedRollout CRD against a real kube-apiserver."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ftrollout_dev.localcluster import ClusterError, LocalCluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "freethreaded.dev_freethreadedrollouts.yaml"
EXAMPLE = ROOT / "manifests" / "examples" / "checkout.yaml"
CRD_NAME = "freethreadedrollouts.freethreaded.dev"


def crd_schema() -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return schema


def example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return doc


@pytest.fixture(scope="module")
def crd_installed(cluster: LocalCluster) -> LocalCluster:
    if not CRD.exists():
        pytest.fail(f"{CRD} missing: run `make crd`")
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    # Discovery and the published OpenAPI (for `kubectl explain`) lag the Established condition.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            cluster.kubectl("get", "ftr", "-A", check=False).returncode == 0
            and cluster.kubectl("explain", "ftr.spec", check=False).returncode == 0
        ):
            break
        time.sleep(0.5)
    return cluster


@pytest.fixture
def shop(crd_installed: LocalCluster) -> Iterator[str]:
    ns = example()["metadata"]["namespace"]
    crd_installed.kubectl("create", "namespace", ns, check=False)
    yield ns
    crd_installed.kubectl("delete", "ftr", "--all", "-n", ns, "--wait=false", check=False)


def apply(cluster: LocalCluster, doc: dict[str, Any], check: bool = True) -> tuple[int, str]:
    proc = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=check)
    return proc.returncode, proc.stdout + proc.stderr


def test_crd_is_established(crd_installed: LocalCluster) -> None:
    out = crd_installed.kubectl(
        "get",
        "crd",
        CRD_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    ).stdout
    assert out == "True"


def test_kubectl_explain_shows_our_descriptions(crd_installed: LocalCluster) -> None:
    out = crd_installed.kubectl("explain", "ftr.spec.steps").stdout
    flat = " ".join(out.split())
    steps = crd_schema()["properties"]["spec"]["properties"]["steps"]
    assert " ".join(steps["description"].split()) in flat
    weight = steps["items"]["properties"]["weight"]["description"]
    assert " ".join(weight.split())[:40] in flat
    assert "pause" in flat


def test_design_example_applies(crd_installed: LocalCluster, shop: str) -> None:
    code, out = apply(crd_installed, example())
    assert code == 0, out
    got = crd_installed.kubectl("get", "ftr", "checkout", "-n", shop, "-o", "yaml").stdout
    assert yaml.safe_load(got)["spec"]["steps"][-1]["weight"] == 100


def test_decreasing_weights_are_rejected_with_the_cel_message(
    crd_installed: LocalCluster, shop: str
) -> None:
    doc = copy.deepcopy(example())
    doc["metadata"]["name"] = "bad-order"
    doc["spec"]["steps"] = [{"weight": 50}, {"weight": 10}, {"weight": 100}]
    code, out = apply(crd_installed, doc, check=False)
    assert code != 0
    assert "step weights must be strictly increasing" in out


def test_weight_zero_and_last_step_below_100_are_rejected(
    crd_installed: LocalCluster, shop: str
) -> None:
    doc = copy.deepcopy(example())
    doc["metadata"]["name"] = "bad-zero"
    doc["spec"]["steps"] = [{"weight": 0}, {"weight": 100}]
    code, out = apply(crd_installed, doc, check=False)
    assert code != 0
    assert re.search(r"steps\[0\]\.weight", out), out
    doc["metadata"]["name"] = "bad-last"
    doc["spec"]["steps"] = [{"weight": 10}, {"weight": 50}]
    code, out = apply(crd_installed, doc, check=False)
    assert code != 0
    assert "the last step must have weight 100" in out


def test_kubectl_get_shows_the_printer_columns(crd_installed: LocalCluster, shop: str) -> None:
    apply(crd_installed, example())
    header = crd_installed.kubectl("get", "ftr", "-n", shop).stdout.splitlines()[0].split()
    assert header == [
        "NAME", "TARGET", "PHASE", "STEP", "WEIGHT", "AVAILABLE", "GIL", "RACES", "AGE"
    ]  # fmt: skip
    wide = crd_installed.kubectl("get", "ftr", "-n", shop, "-o", "wide").stdout.splitlines()[0]
    assert "MESSAGE" in wide.split()


def test_invalid_manifest_error_is_a_cluster_error(crd_installed: LocalCluster) -> None:
    with pytest.raises(ClusterError, match="kubectl apply"):
        crd_installed.kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: Nope\n")


def test_a_name_longer_than_a_label_value_is_rejected_with_the_cel_message(
    crd_installed: LocalCluster, shop: str
) -> None:
    doc = copy.deepcopy(example())
    doc["metadata"]["name"] = "n" * 64
    code, out = apply(crd_installed, doc, check=False)
    assert code != 0
    assert "must be no more than 63 characters" in out, out
    doc["metadata"]["name"] = "n" * 63
    code, out = apply(crd_installed, doc)
    assert code == 0, out


def test_durations_and_counts_out_of_bounds_are_rejected_with_their_messages(
    crd_installed: LocalCluster, shop: str
) -> None:
    doc = copy.deepcopy(example())
    doc["metadata"]["name"] = "bad-bounds"
    doc["spec"]["analysis"]["interval"] = "0s"
    doc["spec"]["analysis"]["failureLimit"] = 1000
    doc["spec"]["guardrails"]["raceBudget"]["window"] = "1000h"
    code, out = apply(crd_installed, doc, check=False)
    assert code != 0
    assert re.search(r"spec\.analysis\.interval.*must be between 1s and 1h", out), out
    assert re.search(r"spec\.analysis\.failureLimit.*less than or equal to 100", out), out
    assert re.search(r"spec\.guardrails\.raceBudget\.window.*must be between 1m and 24h", out), out


def test_a_target_other_than_an_apps_v1_deployment_is_rejected_and_defaults_are_stored(
    crd_installed: LocalCluster, shop: str
) -> None:
    doc = copy.deepcopy(example())
    doc["metadata"]["name"] = "bad-target"
    doc["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}
    doc["spec"]["progressDeadline"] = "5s"
    code, out = apply(crd_installed, doc, check=False)
    assert code != 0
    assert re.search(r"spec\.targetRef\.kind.*must be Deployment", out), out
    assert re.search(r"spec\.progressDeadline.*must be between 10s and 24h", out), out
    doc["spec"]["targetRef"] = {"name": "checkout"}
    del doc["spec"]["progressDeadline"]
    code, out = apply(crd_installed, doc)
    assert code == 0, out
    stored = yaml.safe_load(
        crd_installed.kubectl("get", "ftr", "bad-target", "-n", shop, "-o", "yaml").stdout
    )
    assert stored["spec"]["targetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "checkout",
    }
    assert stored["spec"]["progressDeadline"] == "10m"
