"""The fresh baseline's writes (shell/baseline.py, the finalizer) against KMock: created with
the twin and owned by the rollout, scaled with the twin's step, deleted at promotion, rollback
and deletion; a `<target>-baseline` that is someone else's is never touched."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_handlers_kmock import (
    DEPLOYMENTS,
    FTR,
    NS,
    Emulator,
    Shell,
    annotate,
    deployment_writes,
    event_reasons,
    exists,
    finalize,
    rollout_body,
    status_writes_of,
    summary,
    target_deployment,
    writes,
)

pytestmark = [pytest.mark.timeout(30), pytest.mark.kmock(cls=Emulator)]

BASELINE = "web-baseline"
BASELINE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{BASELINE}"
STEPS = [
    {"weight": 10, "pause": {"duration": "1h"}},
    {"weight": 50, "pause": {"duration": "1h"}},
    {"weight": 100},
]


def with_baseline(kmock: Any, baseline: dict[str, Any] | None = None) -> Shell:
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        analysis={"baseline": {} if baseline is None else baseline}, steps=STEPS
    )
    return Shell(kmock)


async def at_step(shell: Shell, ft: int, std: int) -> None:
    """The twin's pods of the current step Ready, then the standard track lowered and Ready."""
    shell.watch_deployment("web-ft", replicas=ft, readyReplicas=ft)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=std, readyReplicas=std)
    await shell.reconcile()
    await shell.reconcile()


def baseline_writes(reqs: list[Any]) -> list[str]:
    return [p for p in summary(writes(reqs)) if BASELINE in p or p.endswith("/deployments")]


def create_of(reqs: list[Any], name: str) -> dict[str, Any]:
    (body,) = [
        r.data
        for r in writes(reqs)
        if r.url.path.endswith("/deployments") and r.data["metadata"]["name"] == name
    ]
    return dict(body)


async def test_created_with_the_twin_owned_by_the_rollout(kmock: Any) -> None:
    shell = with_baseline(kmock)
    await shell.reconcile()
    reqs = shell.new_requests()
    twin, baseline = create_of(reqs, "web-ft"), create_of(reqs, BASELINE)
    assert twin["spec"]["replicas"] == baseline["spec"]["replicas"] == 1
    owner = baseline["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "FreeThreadedRollout",
        "web",
        "uid-ftr",
        True,
    )
    template = baseline["spec"]["template"]
    images = {c["name"]: c["image"] for c in template["spec"]["containers"]}
    assert images == {"app": "example/app:3.13", "sidecar": "example/proxy:1"}  # standard
    assert template["metadata"]["labels"] == {
        "app": "web",  # the Service's labels: it takes the twin's share of traffic
        "freethreaded.dev/rollout": "web",
        "freethreaded.dev/track": "baseline",
    }
    assert baseline["spec"]["selector"]["matchLabels"] == template["metadata"]["labels"]
    # The status write comes before the baseline: it is extra, nothing waits for it.
    order = [
        r.data["metadata"]["name"] if r.url.path.endswith("/deployments") else r.url.path
        for r in writes(reqs)
        if r.url.path.endswith(("/deployments", "/status"))
    ]
    assert order == [
        "web-ft",
        f"/apis/freethreaded.dev/v1alpha1/namespaces/{NS}/freethreadedrollouts/web/status",
        BASELINE,
    ]
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["spec"]["replicas"] == 1
    # Nothing new: nothing written, the standard track sized as without a baseline.
    await at_step(shell, 1, 9)
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 9
    shell.new_requests()
    await shell.reconcile()
    assert writes(shell.new_requests()) == []


async def test_scaled_with_the_step_then_deleted_at_promotion(kmock: Any) -> None:
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    shell.new_requests()
    annotate(kmock, "promote")
    await shell.reconcile()
    reqs = shell.new_requests()
    assert shell.body()["status"]["stepIndex"] == 1
    scales = [r.data for r in writes(reqs) if r.url.path == f"{BASELINE_PATH}/scale"]
    assert scales == [{"spec": {"replicas": 5}}]
    assert (
        scales[0]["spec"]["replicas"]
        == kmock.objects[DEPLOYMENTS, NS, "web-ft"]["spec"]["replicas"]
    )
    await at_step(shell, 5, 5)
    shell.new_requests()
    annotate(kmock, "promote-full")
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["metadata"]["resourceVersion"] = "300"  # a new write of the rollout
    kmock.objects[FTR, NS, "web"] = obj
    await shell.reconcile()
    await at_step(shell, 10, 0)
    assert shell.body()["status"]["phase"] == "Promoted", shell.body()["status"]["message"]
    reqs = shell.new_requests()
    assert f"DELETE {BASELINE_PATH}" in summary(writes(reqs))
    assert not exists(kmock, BASELINE)
    for _ in range(2):
        await shell.reconcile()
    assert baseline_writes(shell.new_requests()) == []  # not created again
    # Someone's own `web-baseline` after promotion: the rollout needs none and leaves it be.
    kmock.objects[DEPLOYMENTS, NS, BASELINE] = foreign_baseline()
    shell.watch_deployment(BASELINE)
    await shell.reconcile()
    assert baseline_writes(shell.new_requests()) == []
    assert shell.body()["status"]["phase"] == "Promoted"


async def test_deleted_at_rollback(kmock: Any) -> None:
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    assert exists(kmock, BASELINE)
    shell.new_requests()
    annotate(kmock, "rollback")
    await shell.reconcile()
    assert shell.body()["status"]["phase"] == "RolledBack"
    assert f"DELETE {BASELINE_PATH}" in summary(writes(shell.new_requests()))
    assert not exists(kmock, BASELINE)


async def test_deleted_first_by_the_finalizer(kmock: Any) -> None:
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    shell.new_requests()
    with pytest.raises(Exception, match="Ready standard replicas"):
        await finalize(shell)  # waits for the standard track; the baseline is gone already
    reqs = writes(shell.new_requests())
    assert summary(reqs)[0] == f"DELETE {BASELINE_PATH}"
    assert not exists(kmock, BASELINE)


async def test_turned_off_mid_rollout_it_is_deleted(kmock: Any) -> None:
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["spec"]["analysis"]["baseline"] = {"enabled": False}
    kmock.objects[FTR, NS, "web"] = obj
    shell.new_requests()
    await shell.reconcile()
    assert f"DELETE {BASELINE_PATH}" in summary(writes(shell.new_requests()))
    assert shell.body()["status"]["phase"] == "Progressing"


def foreign_baseline() -> dict[str, Any]:
    body = target_deployment(replicas=2, ready=2)
    body["metadata"].update(name=BASELINE, uid="uid-theirs", labels={"app": "report"})
    body["spec"]["selector"] = {"matchLabels": {"app": "report"}}
    body["spec"]["template"]["metadata"]["labels"] = {"app": "report"}
    return body


@pytest.mark.parametrize("watched", [True, False])
async def test_a_foreign_baseline_is_never_touched(kmock: Any, watched: bool) -> None:
    """Seen by the watch: the rollout fails naming it. Not yet seen: the read before creating
    finds it, nothing is created, and the next reconcile fails the rollout the same way."""
    shell = with_baseline(kmock)
    kmock.objects[DEPLOYMENTS, NS, BASELINE] = foreign_baseline()
    if watched:
        shell.watch_deployment(BASELINE)
    for _ in range(3):
        await shell.reconcile()
    reqs = shell.new_requests()
    assert [p for p in deployment_writes(reqs) if BASELINE in p] == []
    assert not any(
        r.url.path.endswith("/deployments") and r.data["metadata"]["name"] == BASELINE
        for r in writes(reqs)
    )
    assert status_writes_of(reqs)[-1]["phase"] == "Failed"
    assert "BaselineNotOwned" in event_reasons(reqs)
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["spec"]["replicas"] == 2

    await finalize(shell)
    assert [p for p in deployment_writes(shell.new_requests()) if BASELINE in p] == []
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["metadata"]["uid"] == "uid-theirs"


async def test_a_refused_baseline_create_is_reported_and_holds_nothing_back(kmock: Any) -> None:
    """A quota on count/deployments.apps, an admission policy or RBAC refuses the baseline: the
    step's analysis is still registered and the rollout runs (its compare rounds say `baseline:
    no series`); the refusal is a Warning Event (once per distinct error) and a log line, and
    the create is tried again at the next reconcile."""
    from kubernetes.client.exceptions import ApiException

    from ftrollout.shell.scheduler import Scheduler

    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        analysis={
            "baseline": {},
            "metrics": [{"name": "errors", "query": "up", "threshold": {"max": 1}}],
        }
    )
    shell = Shell(kmock)
    shell.state.default_prometheus = "http://prometheus.monitoring:9090"
    shell.state.scheduler = Scheduler(shell.state)
    real = shell.state.kube.create_deployment
    refused: list[str] = []

    async def create(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["metadata"]["name"] == BASELINE and len(refused) < 3:
            refused.append(BASELINE)
            raise ApiException(status=403, reason="Forbidden: exceeded quota")
        return dict(await real(manifest))

    shell.state.kube.create_deployment = create
    for _ in range(3):
        await shell.reconcile()  # raises nothing
    reqs = shell.new_requests()
    assert len(refused) == 3  # tried again at each reconcile
    assert shell.body()["status"]["phase"] in ("Progressing", "Paused")
    assert (NS, "web") in shell.state.scheduler.targets
    assert (NS, "web") in shell.state.active
    assert event_reasons(reqs).count("BaselineWriteFailed") == 1
    (message,) = [
        r.data["message"]
        for r in reqs
        if r.url.path.endswith("/events") and r.data["reason"] == "BaselineWriteFailed"
    ]
    assert BASELINE in message
    assert "403 Forbidden: exceeded quota" in message
    # Allowed again: created at the next reconcile, and the error is forgotten.
    await shell.reconcile()
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["spec"]["replicas"] == 1
    assert (NS, "web") not in shell.state.baseline_errors


def edit_spec(kmock: Any, **changes: Any) -> None:
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    for path, value in changes.items():
        here = obj["spec"]
        *parents, leaf = path.split("__")
        for p in parents:
            here = here.setdefault(p, {})
        here[leaf] = value
    obj["metadata"]["generation"] = 2
    kmock.objects[FTR, NS, "web"] = obj


@pytest.mark.parametrize(
    "edit",
    [
        # InvalidSpec: an address the operator does not allow (e.g. after a Helm upgrade)
        {"analysis__prometheus": {"address": "http://elsewhere:9090"}},
        {"targetRef": {"name": "other"}},  # TargetChanged: the held target's baseline goes
    ],
)
async def test_deleted_when_the_rollout_fails_before_its_steps(
    kmock: Any, edit: dict[str, Any]
) -> None:
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["spec"]["replicas"] == 1
    shell.new_requests()
    edit_spec(kmock, **edit)
    await shell.reconcile()
    reqs = shell.new_requests()
    assert status_writes_of(reqs)[-1]["phase"] == "Failed"
    assert f"DELETE {BASELINE_PATH}" in summary(writes(reqs))
    assert not exists(kmock, BASELINE)
    # Both tracks as they were: only the extra pods went.
    assert [p for p in deployment_writes(reqs) if BASELINE not in p] == []


async def test_a_foreign_baseline_survives_an_invalid_spec(kmock: Any) -> None:
    shell = with_baseline(kmock)
    kmock.objects[DEPLOYMENTS, NS, BASELINE] = foreign_baseline()
    shell.watch_deployment(BASELINE)
    await shell.reconcile()  # BaselineNotOwned
    edit_spec(kmock, analysis__prometheus={"address": "http://elsewhere:9090"})
    shell.new_requests()
    for _ in range(2):
        await shell.reconcile()
    reqs = shell.new_requests()
    assert status_writes_of(reqs)[-1]["message"].startswith("invalid spec")
    assert [p for p in deployment_writes(reqs) if BASELINE in p] == []
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["metadata"]["uid"] == "uid-theirs"


async def test_a_baseline_replaced_by_someone_else_is_not_deleted_while_the_watch_lags(
    kmock: Any,
) -> None:
    """Ours was deleted and a user's `web-baseline` created in its place; the watch has not
    shown either yet. The rollout then fails early: the DELETE carries our baseline's uid as a
    precondition, so the apiserver refuses it (409) instead of deleting the user's Deployment
    (review of h-b: deleted by name). The live one is read, and the rollout names it."""
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    shell.watch_deployment(BASELINE)  # ours, in the cache
    kmock.objects[DEPLOYMENTS, NS, BASELINE] = foreign_baseline()  # live: theirs
    edit_spec(kmock, analysis__prometheus={"address": "http://elsewhere:9090"})
    shell.new_requests()
    await shell.reconcile()  # raises nothing
    reqs = shell.new_requests()
    (delete,) = [r for r in writes(reqs) if r.url.path == BASELINE_PATH]
    assert delete.data["preconditions"]["uid"] != "uid-theirs"
    assert exists(kmock, BASELINE)
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["metadata"]["uid"] == "uid-theirs"
    assert "BaselineWriteFailed" not in event_reasons(reqs)
    # The spec fixed: the rollout sees the user's Deployment and touches nothing.
    fixed = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    del fixed["spec"]["analysis"]["prometheus"]
    kmock.objects[FTR, NS, "web"] = fixed
    for _ in range(2):
        await shell.reconcile()
    reqs = shell.new_requests()
    assert [p for p in deployment_writes(reqs) if BASELINE in p] == []
    assert "BaselineNotOwned" in event_reasons(reqs)
    assert kmock.objects[DEPLOYMENTS, NS, BASELINE]["metadata"]["uid"] == "uid-theirs"


async def test_the_finalizer_deletes_only_the_baseline_it_read(kmock: Any) -> None:
    """The finalizer's DELETE carries the uid of the baseline it read, so one replaced in
    between is left alone."""
    shell = with_baseline(kmock)
    await shell.reconcile()
    await at_step(shell, 1, 9)
    shell.new_requests()
    with pytest.raises(Exception, match="Ready standard replicas"):
        await finalize(shell)
    (delete,) = [r for r in writes(shell.new_requests()) if r.url.path == BASELINE_PATH]
    assert delete.data["preconditions"]["uid"]


async def test_a_failing_event_post_does_not_escape_the_baseline_write(kmock: Any) -> None:
    """The baseline write never raises: a transport error on the BaselineWriteFailed Event
    (connection reset, read timeout: urllib3 errors, not ApiException) escaped it, the
    reconcile raised before the analysis was registered, and the error was already remembered
    so its Warning was never sent (review of h-b). It is remembered only once said."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import ProtocolError

    shell = with_baseline(kmock)
    real = shell.state.kube.create_deployment

    async def create(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["metadata"]["name"] == BASELINE:
            raise ApiException(status=403, reason="Forbidden: exceeded quota")
        return dict(await real(manifest))

    shell.state.kube.create_deployment = create  # type: ignore[method-assign]
    core = shell.state.kube.core
    real_event = core.create_namespaced_event
    failed: list[str] = []

    def event(namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        if body.get("reason") == "BaselineWriteFailed" and not failed:
            failed.append(body["reason"])
            raise ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        return real_event(namespace, body, **kw)

    core.create_namespaced_event = event  # type: ignore[method-assign]
    await shell.reconcile()  # raises nothing
    assert failed == ["BaselineWriteFailed"]
    assert ("shop", "web") in shell.state.active  # what comes after the baseline was done
    assert "BaselineWriteFailed" not in event_reasons(shell.new_requests())
    await shell.reconcile()
    assert event_reasons(shell.new_requests()).count("BaselineWriteFailed") == 1
    await shell.reconcile()
    assert "BaselineWriteFailed" not in event_reasons(shell.new_requests())  # said once
