"""The dependency gate's verdicts, on reports made by the real preflight script."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ftrollout.model import api
from ftrollout.plan.preflight import PREFLIGHT_FILE, from_job, job_manifest, job_name, judge

ROOT = Path(__file__).resolve().parents[3]
PREFLIGHT = ROOT / "operator/ftrollout/probe/preflight.py"
FIXTURES = Path(__file__).parent.parent / "probe_fixtures"
IMAGE = "registry.example/app:2-py3.14t"
NOW = "2026-01-01T00:10:00Z"
GATE = api.DependencyGate(modules=["json", "gilwarn_mod"])


def real_report(*modules: str) -> dict[str, Any]:
    """Run the shipped preflight script on this interpreter and return its JSON report."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"ftr-preflight-{os.getpid()}.json"
    env = {**os.environ, "FTR_TERMINATION_LOG": str(out), "PYTHONPATH": str(FIXTURES)}
    subprocess.run(
        [sys.executable, str(PREFLIGHT), *modules], env=env, check=True, capture_output=True
    )
    report: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return report


def as_free_threaded(report: dict[str, Any]) -> dict[str, Any]:
    """The same report as a 3.14t image would give when no module re-enables the GIL."""
    r = copy.deepcopy(report)
    r["python"]["freeThreadingBuild"] = True
    r["python"]["gilEnabledAtEnd"] = False
    for m in r["modules"]:
        m["gilEnabled"] = False
        m["gilReenabled"] = False
        m["gilWarning"] = False
    return r


def test_a_standard_build_is_blocked_as_not_free_threaded() -> None:
    verdict = judge(json.dumps(real_report("json")), IMAGE, GATE, NOW)
    assert verdict.phase == "Failed"
    assert "not a free-threading build" in verdict.message
    assert verdict.free_threading_build is False
    assert verdict.python_version is not None
    assert verdict.python_version.startswith("Python 3.")


def test_a_clean_free_threaded_report_passes_and_keeps_the_version_contract() -> None:
    gate = api.DependencyGate(modules=["json"])
    verdict = judge(json.dumps(as_free_threaded(real_report("json"))), IMAGE, gate, NOW)
    assert verdict.phase == "Passed", verdict.message
    assert verdict.modules[0].name == "json"
    assert verdict.modules[0].imported is True
    assert verdict.modules[0].version
    assert verdict.modules[0].gil_enabled is False
    assert verdict.image == IMAGE


def test_a_module_that_re_enables_the_gil_blocks_by_name() -> None:
    report = as_free_threaded(real_report("json", "gilwarn_mod"))
    gil = next(m for m in report["modules"] if m["name"] == "gilwarn_mod")
    gil.update(gilWarning=True, gilReenabled=True, gilEnabled=True)
    verdict = judge(json.dumps(report), IMAGE, GATE, NOW)
    assert verdict.phase == "Failed"
    assert "gilwarn_mod re-enabled the GIL" in verdict.message


def test_an_import_error_blocks_with_the_error() -> None:
    gate = api.DependencyGate(modules=["json", "nosuchmod"])
    verdict = judge(
        json.dumps(as_free_threaded(real_report("json", "nosuchmod"))), IMAGE, gate, NOW
    )
    assert verdict.phase == "Failed"
    assert "nosuchmod failed to import (ModuleNotFoundError" in verdict.message


def test_warn_records_the_regression_without_blocking() -> None:
    gate = api.DependencyGate(modules=["json", "nosuchmod"], action=api.GateAction.WARN)
    verdict = judge(
        json.dumps(as_free_threaded(real_report("json", "nosuchmod"))), IMAGE, gate, NOW
    )
    assert verdict.phase == "Warned"


@pytest.mark.parametrize("garbage", ["", "Segmentation fault", '{"schema": 99}', "[1, 2]"])
def test_garbage_output_is_a_clear_failure(garbage: str) -> None:
    verdict = judge(garbage, IMAGE, GATE, NOW)
    assert verdict.phase == "Failed"
    assert "not a report" in verdict.message


def job(conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web-preflight-x"}, "status": {"conditions": conditions or []}}


def pod(state: dict[str, Any]) -> dict[str, Any]:
    return {"status": {"containerStatuses": [{"name": "preflight", "state": state}]}}


def terminated(
    code: int, message: str = "", finished: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "message": message, "finishedAt": finished}}


def test_job_states() -> None:
    report = json.dumps(as_free_threaded(real_report("json")))
    gate = api.DependencyGate(modules=["json"])
    assert from_job(job(), [], IMAGE, gate, NOW).phase == "Running"
    assert from_job(job(), [pod({"running": {}})], IMAGE, gate, NOW).phase == "Running"
    assert from_job(job(), [pod(terminated(0, report))], IMAGE, gate, NOW).phase == "Passed"
    broke = from_job(job(), [pod(terminated(70, "fatal: boom"))], IMAGE, gate, NOW)
    assert broke.phase == "Failed"
    assert "exited 70 (the preflight script itself failed)" in broke.message
    pull = from_job(
        job(),
        [pod({"waiting": {"reason": "ImagePullBackOff", "message": "not found"}})],
        IMAGE,
        gate,
        NOW,
    )
    assert pull.phase == "Running"  # a pull error waits within the gate's timeout
    assert f"waiting to pull {IMAGE}" in pull.message
    timeout = from_job(
        job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]),
        [],
        IMAGE,
        gate,
        NOW,
    )
    assert timeout.phase == "Failed"
    assert "timed out after 5m" in timeout.message


def test_a_finished_container_gets_a_grace_period_for_its_message() -> None:
    gate = api.DependencyGate(modules=["json"])
    just_now = from_job(
        job(), [pod(terminated(0, "", finished="2026-01-01T00:09:45Z"))], IMAGE, gate, NOW
    )
    assert just_now.phase == "Running"
    later = from_job(
        job(), [pod(terminated(0, "", finished="2026-01-01T00:00:00Z"))], IMAGE, gate, NOW
    )
    assert later.phase == "Failed"


def test_job_manifest_runs_the_shipped_script_once_with_a_deadline() -> None:
    ft = api.FreeThreadedSpec(image=IMAGE)
    m = job_manifest(
        rollout="web",
        rollout_uid="u1",
        namespace="shop",
        free_threaded=ft,
        gate=api.DependencyGate(modules=["numpy", "orjson"], timeout="2m"),
        target_pod_spec={
            "tolerations": [{"operator": "Exists"}],
            "imagePullSecrets": [{"name": "reg"}],
        },
    )
    assert m["metadata"]["name"] == job_name("web", IMAGE, ["numpy", "orjson"])
    assert m["spec"]["backoffLimit"] == 0
    assert m["spec"]["activeDeadlineSeconds"] == 120
    pod_spec = m["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["imagePullSecrets"] == [{"name": "reg"}]
    c = pod_spec["containers"][0]
    assert c["image"] == IMAGE
    assert c["command"] == ["python", PREFLIGHT_FILE, "numpy", "orjson"]
    assert m["metadata"]["ownerReferences"][0]["kind"] == "FreeThreadedRollout"
    # a new image or module list is a new Job
    assert job_name("web", IMAGE + "x", ["numpy"]) != job_name("web", IMAGE, ["numpy"])


def _report(**over: Any) -> str:
    """A well-formed free-threaded report of `json`, with some fields replaced."""
    base: dict[str, Any] = {
        "schema": 1,
        "python": {"vv": "Python 3.14.0 free-threading build", "freeThreadingBuild": True},
        "modules": [
            {"name": "json", "imported": True, "version": "2.0.9", "gilEnabled": False},
        ],
    }
    for path, value in over.items():
        node: Any = base
        *parents, last = path.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
    return json.dumps(base)


MALFORMED: list[tuple[str, str, str]] = [
    # name, termination message, what the verdict must name
    ("python is a string", _report(python="3.14t"), "python"),
    ("python.vv is a number", _report(python__vv=3.14), "python.vv"),
    ("freeThreadingBuild is a string", _report(python__freeThreadingBuild="yes"), "python"),
    ("modules is a string", _report(modules="json"), "modules"),
    ("a module is a string", _report(modules=["json"]), "modules[0]"),
    ("module name is a number", _report(modules__0__name=5), "modules[0].name"),
    ("module version is a number", _report(modules__0__version=2.1), "modules[0].version"),
    ("imported is a string", _report(modules__0__imported="false"), "modules[0].imported"),
    ("error is a list", _report(modules__0__error=["boom"]), "modules[0].error"),
    ("omittedModules is a string", _report(omittedModules="many"), "omittedModules"),
]


@pytest.mark.parametrize(("name", "message", "field"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_a_report_with_unexpected_types_is_a_gate_failure_naming_the_field(
    name: str, message: str, field: str
) -> None:
    gate = api.DependencyGate(modules=["json"])
    verdict = judge(message, IMAGE, gate, NOW)
    assert verdict.phase == "Failed", name
    assert "malformed preflight report" in verdict.message
    assert field in verdict.message
    # Even with Warn: the image was not checked, so this is no verdict to go on with.
    warn = api.DependencyGate(modules=["json"], action=api.GateAction.WARN)
    assert judge(message, IMAGE, warn, NOW).phase == "Failed"


def test_the_well_formed_base_report_passes() -> None:
    assert judge(_report(), IMAGE, api.DependencyGate(modules=["json"]), NOW).phase == "Passed"


def test_the_job_is_named_after_image_modules_and_attempt() -> None:
    names = {
        job_name("web", IMAGE, ["numpy"]),
        job_name("web", IMAGE, ["numpy", "orjson"]),
        job_name("web", IMAGE + "2", ["numpy"]),
        job_name("web", IMAGE, ["numpy"], attempt=1),
    }
    assert len(names) == 4
    assert all(len(n) <= 63 for n in names)


PULL = [pod({"waiting": {"reason": "ErrImagePull", "message": "i/o timeout"}})]
BACKOFF = [pod({"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}})]


@pytest.mark.parametrize("pods", [PULL, BACKOFF])
def test_a_pull_error_waits_within_the_gate_timeout(pods: list[dict[str, Any]]) -> None:
    gate = api.DependencyGate(modules=["json"], timeout="5m")
    waiting = from_job(job(), pods, IMAGE, gate, NOW)
    assert waiting.phase == "Running"
    assert "pull" in waiting.message
    assert "5m" in waiting.message
    # The Job's deadline is the gate's timeout: then it fails, naming the pull error.
    deadline = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    failed = from_job(job(deadline), pods, IMAGE, gate, NOW)
    assert failed.phase == "Failed"
    assert f"cannot pull {IMAGE}" in failed.message
    assert "5m" in failed.message


def test_an_invalid_image_name_fails_at_once() -> None:
    pods = [pod({"waiting": {"reason": "InvalidImageName", "message": "bad"}})]
    verdict = from_job(job(), pods, IMAGE, GATE, NOW)
    assert verdict.phase == "Failed"
    assert "InvalidImageName" in verdict.message


def test_a_verdict_records_what_it_is_for_and_the_digest() -> None:
    report = json.dumps(as_free_threaded(real_report("json")))
    gate = api.DependencyGate(modules=["json"])
    done = pod(terminated(0, report))
    done["status"]["containerStatuses"][0]["imageID"] = "registry.example/app@sha256:abc"
    verdict = from_job(job(), [done], IMAGE, gate, NOW, checked="k1", attempt=2)
    assert (verdict.phase, verdict.checked, verdict.attempt) == ("Passed", "k1", 2)
    assert verdict.image_digest == "registry.example/app@sha256:abc"
