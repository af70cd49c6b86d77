"""The dependency gate's Job I/O: start the preflight Job, read its verdict, clean it up."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ftrollout.model import api
from ftrollout.plan import rfc3339
from ftrollout.plan.observe import DeploymentSummary
from ftrollout.plan.preflight import from_job, gate_key, job_manifest, job_name
from ftrollout.shell.state import State
from ftrollout.shell.twin import ensure_probe_configmap


async def run_preflight(
    state: State,
    body: Any,
    spec: api.RolloutSpec,
    target: DeploymentSummary,
    wanted: api.PreflightStatus | None = None,
) -> None:
    """Start the preflight Job, or read its verdict and clean it up. `wanted` is the gate state
    the plan holds: a `retry` there asks for a new attempt (a new Job)."""
    gate = spec.guardrails.dependency_gate
    assert gate is not None
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    image = spec.free_threaded.image
    checked = gate_key(image, gate.modules)
    attempt = wanted.attempt if wanted is not None and wanted.checked == checked else 0
    name = job_name(meta["name"], image, gate.modules, attempt)
    now = rfc3339(datetime.now(UTC))
    job = await state.kube.get_job(key[0], name)
    if job is None:
        full = await state.kube.get_deployment(key[0], target.name)
        if full is None:
            return
        await ensure_probe_configmap(state, key[0])
        manifest = job_manifest(
            rollout=meta["name"],
            rollout_uid=meta.get("uid", ""),
            namespace=key[0],
            free_threaded=spec.free_threaded,
            gate=gate,
            target_pod_spec=full["spec"]["template"].get("spec") or {},
            attempt=attempt,
        )
        await state.kube.create_job(manifest)
        state.preflight[key] = api.PreflightStatus.model_validate(
            {"phase": "Running", "image": image, "message": f"preflight Job {name} started",
             "time": now, "checked": checked, "attempt": attempt}
        )  # fmt: skip
        return
    pods = await state.kube.list_pods(key[0], f"job-name={name}")
    verdict = from_job(job, pods, image, gate, now, checked=checked, attempt=attempt)
    if verdict.phase == "Running":
        # Shown only when it says something new (waiting for an image pull): not every poll.
        old = state.preflight.get(key)
        if old is None or (old.checked, old.attempt, old.message) != (
            checked,
            attempt,
            verdict.message,
        ):
            state.preflight[key] = verdict
            state.poke(key[0], key[1])
        return
    state.preflight[key] = verdict
    state.poke(key[0], key[1])
    await state.kube.delete_job(key[0], name)
