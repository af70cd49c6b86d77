"""The dependency gate (pure): the preflight Job, and judging what it reports.

The Job runs the free-threaded image with the stdlib-only `ftrollout_preflight.py` (shipped in
the probe ConfigMap) and reports JSON in its termination message: build flag, `python -VV`, and
per module the import result, version and GIL state after the import. The verdict is kept in
`status.preflight`: the rollout's version contract.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.model.durations import parse_duration
from ftrollout.plan.conditions import cond
from ftrollout.plan.context import Ctx
from ftrollout.plan.podsecurity import preflight_resources, preflight_security
from ftrollout.plan.twin import LABEL_ROLLOUT, PROBE_MOUNT, PROBE_VOLUME
from ftrollout.plan.types import rfc3339

PROBE_CONFIGMAP = "ftrollout-probe"
PREFLIGHT_FILE = f"{PROBE_MOUNT}/ftrollout_preflight.py"
EXIT_SCRIPT_BROKE = 70
REPORT_GRACE = 30.0  # seconds a finished container may take to show its termination message
# A registry hiccup or a slow node: retried by the kubelet, so the gate waits (the Job's
# deadline is the gate's timeout). The others cannot come right by waiting.
_PULL_TRANSIENT = ("ErrImagePull", "ImagePullBackOff")
_PULL_FATAL = ("InvalidImageName", "ErrImageNeverPull")


def _age(since: Any, now: str) -> float:
    try:
        start = datetime.fromisoformat(str(since).replace("Z", "+00:00"))
        end = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (end - start).total_seconds()


def gate_key(image: str, modules: list[str]) -> str:
    """What a verdict is for: the image and the modules checked in it."""
    return hashlib.sha256(f"{image}|{','.join(modules)}".encode()).hexdigest()[:8]


def job_name(rollout: str, image: str, modules: list[str], attempt: int = 0) -> str:
    # Each retry is a new Job: the verdict of the previous one is not reused.
    suffix = f"-{attempt}" if attempt else ""
    return f"{rollout[:40]}-preflight-{gate_key(image, modules)}{suffix}"


def job_manifest(
    *,
    rollout: str,
    rollout_uid: str,
    namespace: str,
    free_threaded: api.FreeThreadedSpec,
    gate: api.DependencyGate,
    target_pod_spec: dict[str, Any],
    attempt: int = 0,
) -> dict[str, Any]:
    """A one-shot Job; it inherits where the service's pods may run and pull from, and runs
    as the service's user within the restricted Pod Security profile."""
    pod_security, container_security = preflight_security(target_pod_spec, free_threaded.container)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security,
        "containers": [
            {
                "name": "preflight",
                "image": free_threaded.image,
                "command": ["python", PREFLIGHT_FILE, *gate.modules],
                "env": [
                    {"name": "FTR_PROBE_DISABLED", "value": "1"},
                    {"name": "FTR_TERMINATION_LOG", "value": "/dev/termination-log"},
                ],
                "volumeMounts": [
                    {"name": PROBE_VOLUME, "mountPath": PROBE_MOUNT, "readOnly": True}
                ],
                "terminationMessagePolicy": "File",
                "securityContext": container_security,
                "resources": preflight_resources(gate),
            }
        ],
        "volumes": [{"name": PROBE_VOLUME, "configMap": {"name": PROBE_CONFIGMAP}}],
    }
    for key in ("imagePullSecrets", "nodeSelector", "tolerations", "serviceAccountName"):
        if key in target_pod_spec:
            pod_spec[key] = target_pod_spec[key]
    labels = {LABEL_ROLLOUT: rollout, "app.kubernetes.io/component": "preflight"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(rollout, free_threaded.image, gate.modules, attempt),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": f"{api.GROUP}/{api.VERSION}",
                    "kind": api.KIND,
                    "name": rollout,
                    "uid": rollout_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(parse_duration(gate.timeout))),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


class _Strict(BaseModel):
    # Types are checked, not coerced: "false" must not read as an import that succeeded.
    model_config = ConfigDict(strict=True, extra="ignore")


class _ReportError(_Strict):
    type: str | None = None
    message: str | None = None


class _ReportModule(_Strict):
    name: str
    imported: bool
    version: str | None = None
    error: _ReportError | None = None
    gil_enabled: bool | None = Field(default=None, alias="gilEnabled")
    gil_reenabled: bool | None = Field(default=None, alias="gilReenabled")
    gil_warning: bool | None = Field(default=None, alias="gilWarning")


class _ReportPython(_Strict):
    vv: str | None = None
    free_threading_build: bool | None = Field(default=None, alias="freeThreadingBuild")


class _Report(_Strict):
    python: _ReportPython | None = None
    modules: list[_ReportModule] | None = None
    omitted_modules: int | None = Field(default=None, alias="omittedModules")


def _malformed(report: dict[str, Any]) -> str | None:
    """What in a schema-1 report has an unexpected type, as a field path; None when sound."""
    try:
        _Report.model_validate(report)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        got = type(err.get("input")).__name__
        if err["type"] == "model_type":
            return f"{path}: expected an object (got {got})"
        return f"{path}: {err['msg']} (got {got})"
    return None


def _status(phase: str, image: str, message: str, now: str, **more: Any) -> api.PreflightStatus:
    return api.PreflightStatus.model_validate(
        {"phase": phase, "image": image, "message": message, "time": now, **more}
    )


def judge(message: str, image: str, gate: api.DependencyGate, now: str) -> api.PreflightStatus:
    """Verdict on the JSON termination message of the preflight container."""
    try:
        report = json.loads(message.strip().splitlines()[-1]) if message.strip() else None
    except (ValueError, IndexError):
        report = None
    if not isinstance(report, dict) or report.get("schema") != 1:
        shown = message.strip()[:120] or "(empty)"
        return _status("Failed", image, f"preflight output is not a report: {shown}", now)
    wrong = _malformed(report)
    if wrong is not None:
        # Not a verdict on the image: the gate could not check it, so it never passes.
        return _status("Failed", image, f"malformed preflight report: {wrong}"[:1000], now)
    python = report.get("python") or {}
    modules = []
    problems = []
    for m in report.get("modules") or []:
        if not isinstance(m, dict):
            continue
        err = m.get("error") or None
        err_text = f"{err.get('type')}: {err.get('message')}" if isinstance(err, dict) else None
        gil_on = bool(m.get("gilWarning") or m.get("gilReenabled") or m.get("gilEnabled"))
        modules.append(
            api.ModuleReport(
                name=str(m.get("name")),
                imported=bool(m.get("imported")),
                version=m.get("version"),
                gil_enabled=bool(m.get("gilEnabled")) if m.get("gilEnabled") is not None else None,
                error=err_text,
            )
        )
        if not m.get("imported"):
            problems.append(f"{m.get('name')} failed to import ({err_text})")
        elif gil_on and python.get("freeThreadingBuild"):
            problems.append(f"{m.get('name')} re-enabled the GIL")
    build = python.get("freeThreadingBuild")
    if not build:
        problems.insert(0, f"{image} is not a free-threading build ({python.get('vv', '?')})")
    if report.get("omittedModules"):
        problems.append(f"{report['omittedModules']} module results did not fit the report")
    listed = set(gate.modules)
    missing = listed - {m.name for m in modules}
    if missing and not report.get("omittedModules"):
        problems.append(f"no result for {', '.join(sorted(missing))}")
    if problems:
        phase = "Failed" if gate.action == api.GateAction.BLOCK else "Warned"
        message_ = "; ".join(problems)
    else:
        phase = "Passed"
        message_ = (
            f"{len(modules)} module(s) import with the GIL disabled on {python.get('vv', '')}"
        )
    return _status(
        phase,
        image,
        message_[:1000],
        now,
        freeThreadingBuild=bool(build),
        pythonVersion=python.get("vv"),
        modules=[api.dump(m) for m in modules],
    )


def from_job(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    image: str,
    gate: api.DependencyGate,
    now: str,
    *,
    checked: str | None = None,
    attempt: int = 0,
) -> api.PreflightStatus:
    """What a preflight Job says so far: Running, or a final verdict, for `checked` (the gate
    key) and `attempt`."""
    verdict = _from_job(job, pods, image, gate, now)
    digest = next(
        (
            cs.get("imageID")
            for pod in pods
            for cs in (pod.get("status") or {}).get("containerStatuses") or []
            if cs.get("imageID")
        ),
        None,
    )
    return verdict.model_copy(
        update={"checked": checked, "attempt": attempt, "image_digest": digest or None}
    )


def _from_job(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    image: str,
    gate: api.DependencyGate,
    now: str,
) -> api.PreflightStatus:
    conds = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
    pulling: str | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _PULL_FATAL or reason in _PULL_TRANSIENT:
                pulling = f"{reason} {waiting.get('message', '')}".strip()
                if reason in _PULL_FATAL:
                    return _status("Failed", image, f"cannot pull {image}: {pulling}", now)
                continue
            term = (cs.get("state") or {}).get("terminated")
            if term:
                code = term.get("exitCode")
                if code not in (0, None):
                    extra = (
                        " (the preflight script itself failed)" if code == EXIT_SCRIPT_BROKE else ""
                    )
                    return _status(
                        "Failed",
                        image,
                        f"preflight container exited {code}{extra}: "
                        f"{(term.get('message') or term.get('reason') or '').strip()[:200]}",
                        now,
                    )
                message = term.get("message") or ""
                if not message.strip() and _age(term.get("finishedAt"), now) < REPORT_GRACE:
                    # The exit and its termination message can reach the apiserver in two
                    # status updates; wait briefly before calling it "no report".
                    return _status("Running", image, "preflight finished: reading its report", now)
                return judge(message, image, gate, now)
    failed = conds.get("Failed")
    if failed is not None and failed.get("status") == "True":
        if failed.get("reason") == "DeadlineExceeded":
            if pulling is not None:
                return _status(
                    "Failed",
                    image,
                    f"cannot pull {image} within the gate's timeout {gate.timeout}: {pulling}"[
                        :1000
                    ],
                    now,
                )
            return _status("Failed", image, f"preflight timed out after {gate.timeout}", now)
        return _status(
            "Failed",
            image,
            f"preflight Job failed: {failed.get('reason')} {failed.get('message', '')}",
            now,
        )
    if pulling is not None:
        return _status(
            "Running",
            image,
            f"waiting to pull {image} ({pulling}); the gate fails after {gate.timeout}"[:1000],
            now,
        )
    complete = conds.get("Complete") or conds.get("SuccessCriteriaMet")
    if complete is not None and complete.get("status") == "True" and not pods:
        return _status("Failed", image, "preflight Job completed without a report", now)
    return _status("Running", image, f"preflight Job {job['metadata']['name']} running", now)


def retry_gate(ctx: Ctx, previous: api.PreflightStatus | None) -> None:
    """`retry` runs the preflight Job again (a new attempt), whatever verdict is at hand."""
    if previous is None or previous.checked is None:
        return  # nothing cached: the gate runs anyway
    ctx.update(
        preflight=api.PreflightStatus(
            phase="Pending",
            image=previous.image,
            checked=previous.checked,
            attempt=previous.attempt + 1,
            message="retry: running the preflight again",
            time=rfc3339(ctx.obs.now),
        )
    )


def gate_verdict(ctx: Ctx, gate: api.DependencyGate) -> api.PreflightStatus | None:
    """The gate's latest word on this image and module list (None: not asked yet)."""
    key = gate_key(ctx.spec.free_threaded.image, gate.modules)
    # A verdict counts only for this image and module list, and only from the attempt asked
    # for (the shell may still hold the verdict that a `retry` asked to replace).
    held = ctx.st.preflight if ctx.st.preflight and ctx.st.preflight.checked == key else None
    attempt = held.attempt if held is not None else 0
    seen = ctx.obs.preflight
    return seen if seen is not None and (seen.checked, seen.attempt) == (key, attempt) else held


def gate_unpassed(ctx: Ctx) -> str | None:
    """Why a configured dependency gate does not let this image through (yet); None when it
    does or none is configured. Pure: it neither runs the Job nor records a verdict."""
    gate = ctx.spec.guardrails.dependency_gate
    if gate is None or not gate.modules:
        return None
    pf = gate_verdict(ctx, gate)
    if pf is None:
        return f"the dependency gate has not checked {ctx.spec.free_threaded.image} yet"
    if pf.phase in ("Passed", "Warned"):
        return None
    if pf.phase == "Failed" and gate.action != api.GateAction.BLOCK:
        return None
    return f"the dependency gate has not passed ({pf.phase}: {pf.message})"


def preflight_settled(ctx: Ctx) -> bool:
    """Whether the dependency gate lets the rollout start; runs the Job when needed."""
    gate = ctx.spec.guardrails.dependency_gate
    assert gate is not None
    image = ctx.spec.free_threaded.image
    pf = gate_verdict(ctx, gate)
    if pf is None:
        ctx.run_preflight = True
        ctx.requeue.append(2.0)
        ctx.update(message=f"dependency gate: checking {', '.join(gate.modules)} in {image}")
        return False
    if pf != ctx.st.preflight:
        ctx.update(preflight=pf)
        if pf.phase in ("Passed", "Warned"):
            ctx.event("Normal", "PreflightPassed", pf.message)
        elif pf.phase == "Failed":
            ctx.event("Warning", "DependencyGate", pf.message)
    if pf.phase in ("Pending", "Running"):
        ctx.run_preflight = True
        ctx.requeue.append(2.0)
        ctx.update(message=f"dependency gate: {pf.message or 'running'}")
        return False
    if pf.phase == "Failed" and gate.action == api.GateAction.BLOCK:
        msg = f"blocked by the dependency gate: {pf.message}"
        ctx.update(phase=Phase.FAILED, message=msg)
        cond(ctx, "Progressing", "False", "DependencyGate", msg)
        return False
    return True
