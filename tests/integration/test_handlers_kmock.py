"""The imperative shell (handlers.reconcile + kube.Kube) against an emulated Kubernetes API.

KMock (by kopf's author) serves the Kubernetes API from memory and records every request, so
these tests assert the exact HTTP requests one reconcile sends: the twin's creation body, scale
patches (with our field manager), the status JSON-patch, Events; that a reconcile with nothing
to do writes nothing; and that an API error (409, 500) makes reconcile raise (the daemon retries
with backoff) without the retry writing anything twice. No cluster, a few seconds in all.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import jsonpatch
import kmock as km
import kopf
import kubernetes
import pytest
import urllib3
from kmock._internal.k8s import KubernetesError
from kubernetes.client.exceptions import ApiException

from ftrollout.plan.prometheus import parse_allow_list
from ftrollout.shell import handlers, reconcile
from ftrollout.shell.kube import Kube
from ftrollout.shell.state import State

FTR = "freethreaded.dev/v1alpha1/freethreadedrollouts"
DEPLOYMENTS = "apps/v1/deployments"
NS = "shop"
N = 10
LOG = logging.getLogger("test.kmock")


class Emulator(km.KubernetesEmulator):  # type: ignore[misc]
    """KMock's emulator, plus what the apiserver does and KMock does not: `generateName`
    (Events are created that way), a `uid` for every object created, a DELETE's
    `preconditions.uid` (409 Conflict when the object of that name has another uid), and
    the 422 for a JSON patch whose `test` fails (KMock says 500)."""

    generated = 0

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.action == km.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                Emulator.generated += 1
                meta["name"] = f"{meta['generateName']}{Emulator.generated:05d}"
            if not meta.get("uid"):
                Emulator.generated += 1
                meta["uid"] = f"uid-{Emulator.generated:05d}"
        if request.action == km.action.DELETE and isinstance(data, dict):
            wanted = (data.get("preconditions") or {}).get("uid")
            key = (request.resource, request.namespace, request.name)
            live = self.objects[key] if wanted and key in self.objects else None
            if live is not None and live["metadata"].get("uid") != wanted:
                raise km.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=f"Precondition failed: UID in precondition: {wanted}, UID in "
                    f"object meta: {live['metadata'].get('uid')}",
                )
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise PatchTestFailed(message=str(exc)) from None


@attrs.frozen
class PatchTestFailed(KubernetesError):  # type: ignore[misc]
    status: int = 422
    reason: str = "Invalid"


pytestmark = [pytest.mark.timeout(30), pytest.mark.kmock(cls=Emulator)]


# ----------------------------------------------------------------------------- helpers


def target_deployment(replicas: int = N, ready: int = N) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "uid": "uid-web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "example/app:3.13"},
                        {"name": "sidecar", "image": "example/proxy:1"},
                    ]
                },
            },
        },
        "status": {"replicas": replicas, "readyReplicas": ready},
    }


def rollout_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "freethreaded.dev/v1alpha1",
        "kind": "FreeThreadedRollout",
        "metadata": {
            "name": "web",
            "namespace": NS,
            "uid": "uid-ftr",
            "generation": 1,
            "resourceVersion": "100",
        },
        "spec": {
            "targetRef": {"name": "web"},
            "freeThreaded": {"image": "example/app:3.14t", "container": "app"},
            "steps": [
                {"weight": 10, "pause": {"duration": "1h"}},
                {"weight": 50, "pause": {"duration": "1h"}},
                {"weight": 100},
            ],
            **spec,
        },
    }


class Shell:
    """A handlers.State wired to a real Kube client pointed at the KMock server."""

    def __init__(self, server: Any) -> None:
        self.server = server
        cfg = kubernetes.client.Configuration()
        cfg.host = str(server.url).rstrip("/")
        self.state = State(kube=Kube(client=kubernetes.client.ApiClient(cfg)))
        self.seen = 0

    def body(self) -> dict[str, Any]:
        """The rollout as the watch would deliver it now."""
        return copy.deepcopy(dict(self.server.objects[FTR, NS, "web"].raw))

    async def reconcile(self, body: dict[str, Any] | None = None) -> float | None:
        return await reconcile.reconcile(self.state, body or self.body(), LOG)

    def new_requests(self) -> list[Any]:
        reqs = list(self.server)
        out, self.seen = reqs[self.seen :], len(reqs)
        return out

    def watch_deployment(self, name: str, **status: int) -> None:
        """What a watch event of the Deployment would put in the cache."""
        obj = copy.deepcopy(dict(self.server.objects[DEPLOYMENTS, NS, name].raw))
        obj.setdefault("metadata", {}).setdefault("namespace", NS)
        obj["status"] = {**(obj.get("status") or {}), **status}
        self.state.cache.put_deployment(obj)


def clear_request(value: str) -> list[dict[str, Any]]:
    """The removal of the action annotation: only while it still holds the request acted on."""
    path = "/metadata/annotations/freethreaded.dev~1action"
    return [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]


def exists(kmock: Any, name: str) -> bool:
    """Whether the Deployment `name` is there: KMock's `key in kmock.objects` never matches a
    resource given as a string, and a deleted object stays in its history."""
    try:
        return not kmock.objects[DEPLOYMENTS, NS, name].deleted
    except KeyError:
        return False


def writes(reqs: list[Any]) -> list[Any]:
    return [r for r in reqs if str(r.method.value).upper() != "GET"]


def summary(reqs: list[Any]) -> list[str]:
    return [f"{str(r.method.value).upper()} {r.url.path}" for r in reqs]


def event_reasons(reqs: list[Any]) -> list[str]:
    return [r.data["reason"] for r in reqs if r.url.path.endswith("/events")]


@pytest.fixture
def shell(kmock: Any) -> Shell:
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body()
    return Shell(kmock)


# ------------------------------------------------------------------------------- tests


async def test_first_reconcile_sends_exactly_twin_status_and_events(shell: Shell) -> None:
    delay = await shell.reconcile()
    reqs = shell.new_requests()
    assert summary(writes(reqs)) == [
        f"POST /apis/apps/v1/namespaces/{NS}/deployments",
        f"PATCH /apis/freethreaded.dev/v1alpha1/namespaces/{NS}/freethreadedrollouts/web/status",
        f"POST /api/v1/namespaces/{NS}/events",
        f"POST /api/v1/namespaces/{NS}/events",
    ]
    # Reads: the target and the twin (404) on a cold cache, the target's full template.
    assert len(reqs) - len(writes(reqs)) == 3
    create, status, *evs = writes(reqs)

    twin = create.data
    assert twin["metadata"]["name"] == "web-ft"
    assert twin["spec"]["replicas"] == 1  # ceil(10 * 10%)
    owner = twin["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "FreeThreadedRollout",
        "web",
        "uid-ftr",
        True,
    )
    assert twin["spec"]["selector"]["matchLabels"] == {
        "app": "web",
        "freethreaded.dev/rollout": "web",
        "freethreaded.dev/track": "free-threaded",
    }
    containers = {c["name"]: c["image"] for c in twin["spec"]["template"]["spec"]["containers"]}
    assert containers == {"app": "example/app:3.14t", "sidecar": "example/proxy:1"}
    assert twin["spec"]["template"]["metadata"]["labels"]["app"] == "web"
    assert create.params.get("fieldManager") == "ftrollout"

    # Status: one JSON patch replacing /status whole.
    assert status.headers["Content-Type"].startswith("application/json-patch+json")
    assert [op["op"] for op in status.data] == ["add"]
    assert status.data[0]["path"] == "/status"
    st = status.data[0]["value"]
    assert (st["phase"], st["stepIndex"], st["weight"], st["observedGeneration"]) == (
        "Progressing",
        0,
        10,
        1,
    )
    assert st["replicas"]["target"] == N

    assert [e.data["reason"] for e in evs] == ["RolloutStarted", "StepStarted"]
    for e in evs:
        assert e.data["involvedObject"]["uid"] == "uid-ftr"
        assert e.data["involvedObject"]["kind"] == "FreeThreadedRollout"
        assert e.data["type"] == "Normal"
    # The standard track is not touched before the free-threaded pod is Ready.
    assert not any("/deployments/web/scale" in p for p in summary(reqs))
    assert delay is not None


async def test_a_reconcile_with_nothing_new_sends_no_request_at_all(shell: Shell) -> None:
    await shell.reconcile()
    shell.new_requests()
    for _ in range(3):
        await shell.reconcile()
    assert summary(shell.new_requests()) == []  # not even a GET: the cache answered


async def test_twin_ready_scales_the_standard_track_down_once(shell: Shell) -> None:
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    shell.new_requests()
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    scale = [r for r in reqs if r.url.path.endswith("/deployments/web/scale")]
    assert len(scale) == 1
    assert scale[0].data == {"spec": {"replicas": 9}}
    assert scale[0].params.get("fieldManager") == "ftrollout"
    assert not any(r.url.path.endswith("/deployments/web-ft/scale") for r in reqs)
    # Scale first, status second (a crash in between is re-planned from observed replicas).
    assert summary(reqs)[0].endswith("/deployments/web/scale")
    assert summary(reqs)[1].endswith("/status")
    assert event_reasons(reqs) == []
    # The next look sees the standard track at 9 with >= 9 Ready: the step is reached, once.
    await shell.reconcile()
    reached = writes(shell.new_requests())
    assert not any("/scale" in p for p in summary(reached))
    assert event_reasons(reached) == ["StepReached"]
    # The watch brings the standard track's pod count down: the status says so, nothing else.
    shell.watch_deployment("web", replicas=9, readyReplicas=9)
    await shell.reconcile()
    (status,) = writes(shell.new_requests())
    assert status.data[0]["value"]["replicas"]["standardReady"] == 9
    for _ in range(2):
        await shell.reconcile()
    assert writes(shell.new_requests()) == []


async def test_twin_ready_before_its_create_call_returns_still_scales_the_standard_down(
    shell: Shell,
) -> None:
    """The create call runs in a thread; the watch may bring the twin already Ready before the
    call's response is handled (seen in CI: the rollout then waited for an event that had come).
    """
    create = shell.state.kube.create_deployment

    async def create_then_watch_ready(manifest: dict[str, Any]) -> dict[str, Any]:
        created = await create(manifest)
        shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
        return created

    shell.state.kube.create_deployment = create_then_watch_ready  # type: ignore[method-assign]
    await shell.reconcile()
    shell.new_requests()
    await shell.reconcile()  # no new event: the twin's readiness is already in the cache
    scale = [r for r in writes(shell.new_requests()) if r.url.path.endswith("/scale")]
    assert [(r.url.path.rsplit("/", 2)[-2], r.data) for r in scale] == [
        ("web", {"spec": {"replicas": 9}})
    ]


async def test_409_on_the_status_patch_raises_and_the_retry_writes_each_thing_once(
    shell: Shell, kmock: Any
) -> None:
    body = shell.body()  # the watch's copy: the failed patch never reaches it
    kmock["patch", km.resource(FTR), km.subresource("status")][:1] << 409
    with pytest.raises(ApiException) as exc:
        await shell.reconcile(body)
    assert exc.value.status == 409
    first = writes(shell.new_requests())
    # The twin was created; the status write failed; no event claims what the status does not.
    assert summary(first)[0].endswith("/deployments")
    assert event_reasons(first) == []
    await shell.reconcile(body)  # the daemon's retry, same (stale) body
    retry = writes(shell.new_requests())
    assert not any(p.startswith("POST") and p.endswith("/deployments") for p in summary(retry))
    assert [p.rsplit("/", 1)[1] for p in summary(retry)] == ["status", "events", "events"]
    assert event_reasons(retry) == ["RolloutStarted", "StepStarted"]


async def test_500_on_a_scale_patch_raises_before_status_and_events(
    shell: Shell, kmock: Any
) -> None:
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    body = shell.body()
    shell.new_requests()
    kmock["patch", km.resource(DEPLOYMENTS), km.subresource("scale")][:1] << 500
    with pytest.raises(ApiException) as exc:
        await shell.reconcile(body)
    assert exc.value.status == 500
    assert summary(writes(shell.new_requests())) == [
        f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/web/scale"
    ]
    await shell.reconcile(body)
    retry = writes(shell.new_requests())
    assert [p.rsplit("/", 1)[1] for p in summary(retry)] == ["scale", "status"]
    assert retry[0].data == {"spec": {"replicas": 9}}
    await shell.reconcile(body)
    assert not any("/scale" in p for p in summary(writes(shell.new_requests())))


async def test_a_failed_event_post_does_not_fail_the_reconcile(shell: Shell, kmock: Any) -> None:
    kmock["post", km.resource("v1/events")] << 500
    await shell.reconcile()  # events are best effort
    reqs = writes(shell.new_requests())
    assert summary(reqs)[1].endswith("/status")
    await shell.reconcile()
    assert writes(shell.new_requests()) == []  # and they are not re-sent


async def test_the_daemon_retries_a_failing_reconcile_with_backoff(
    shell: Shell, kmock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "STATE", shell.state)
    monkeypatch.setattr(handlers, "ERROR_BACKOFF", (0.05, 0.1))
    kmock["patch", km.resource(FTR), km.subresource("status")][:2] << 503

    class Stopped:
        flag = False

        def __bool__(self) -> bool:
            return self.flag

    stopped = Stopped()
    fn = getattr(handlers.rollout_daemon, "__wrapped__", handlers.rollout_daemon)
    task = asyncio.create_task(
        fn(body=shell.body(), name="web", namespace=NS, stopped=stopped, logger=LOG)
    )
    try:
        for _ in range(200):
            done = [r for r in kmock if r.url.path.endswith("/status")]
            if len(done) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        stopped.flag = True
        shell.state.poke(NS, "web")
        await asyncio.wait_for(task, 5)
    reqs = list(kmock)
    status_patches = [r for r in reqs if r.url.path.endswith("/status")]
    assert len(status_patches) == 3  # two 503s, then success; then quiet
    assert event_reasons(reqs) == ["RolloutStarted", "StepStarted"]
    creates = [r for r in reqs if r.url.path.endswith("/deployments") and r.method.value == "POST"]
    assert len(creates) == 1


async def test_a_missing_target_fails_the_rollout_without_creating_a_twin(kmock: Any) -> None:
    kmock.objects[FTR, NS, "web"] = rollout_body()
    shell = Shell(kmock)
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    assert not any(r.url.path.endswith("/deployments") for r in reqs)
    (status,) = [r for r in reqs if r.url.path.endswith("/status")]
    st = status.data[0]["value"]
    assert st["phase"] == "Failed"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Progressing"]["reason"] == "TargetNotFound"
    assert event_reasons(reqs) == ["TargetNotFound"]
    await shell.reconcile()
    await shell.reconcile(shell.body())
    assert writes(shell.new_requests()) == []  # reported once, not on every resync


async def test_an_action_annotation_is_acted_on_once(shell: Shell) -> None:
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=9, readyReplicas=9)
    await shell.reconcile()
    shell.new_requests()
    body = shell.body()
    body["metadata"]["annotations"] = {"freethreaded.dev/action": "rollback"}
    body["metadata"]["resourceVersion"] = "200"
    await shell.reconcile(body)
    reqs = writes(shell.new_requests())
    clear = [r for r in reqs if r.url.path.endswith("/freethreadedrollouts/web")]
    assert len(clear) == 1
    assert clear[0].data == clear_request("rollback")
    assert [r.data["spec"]["replicas"] for r in reqs if r.url.path.endswith("/web/scale")] == [10]
    # The Event answering the request names it: `kubectl ftr rollback --wait` reads it there.
    answers = [r.data for r in reqs if r.url.path.endswith("/events")]
    assert [(e["reason"], e["metadata"].get("annotations")) for e in answers] == [
        ("RolledBack", {"freethreaded.dev/action": "rollback"})
    ]
    # The same body again (the watch has not delivered the annotation's removal yet).
    await shell.reconcile(body)
    again = writes(shell.new_requests())
    assert not any(r.url.path.endswith("/freethreadedrollouts/web") for r in again)
    assert "RolledBack" not in event_reasons(again)


# ------------------------------------------------------- analysis numbers vs status writes

ANALYSIS = {
    "interval": "30s",
    "metrics": [{"name": "error-ratio", "query": "x", "threshold": {"max": 0.01}}],
}


def round_of(when: str, value: float, phase: str = "Successful") -> Any:
    from ftrollout.model import api
    from ftrollout.plan import AnalysisRound

    result = api.MetricResult(
        name="error-ratio", phase=phase, free_threaded=value, message=f"{value} vs max 0.01",
        time=when,
    )  # fmt: skip
    return AnalysisRound(time=when, results=(result,))


def status_writes_of(reqs: list[Any]) -> list[dict[str, Any]]:
    return [r.data[0]["value"] for r in writes(reqs) if r.url.path.endswith("/status")]


async def at_first_step(kmock: Any, pause: str, *more: dict[str, Any]) -> Shell:
    """At step 1 (10 %, reached); `more` steps between it and 100 %."""
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        analysis=ANALYSIS,
        steps=[{"weight": 10, "pause": {"duration": pause}}, *more, {"weight": 100}],
    )
    shell = Shell(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=9, readyReplicas=9)
    await shell.reconcile()
    await shell.reconcile()
    shell.new_requests()
    return shell


async def test_rounds_that_only_bring_new_numbers_are_not_written_each_time(
    kmock: Any,
) -> None:
    shell = await at_first_step(kmock, "1h")
    shell.state.analysis[NS, "web"] = round_of("2026-01-01T00:00:00Z", 0.001)
    await shell.reconcile()
    (first,) = status_writes_of(shell.new_requests())  # the first result is news: written
    assert first["analysis"]["metrics"][0]["freeThreaded"] == 0.001

    for i, value in enumerate((0.002, 0.003, 0.004), start=1):
        shell.state.analysis[NS, "web"] = round_of(
            f"2026-01-01T00:{i // 2:02d}:{i % 2 * 30:02d}Z", value
        )
        await shell.reconcile()
        await shell.reconcile()  # a resync in between changes nothing either
    assert writes(shell.new_requests()) == []  # same result, new numbers: kept in memory

    # A result that changes phase is written at once, with the latest numbers.
    shell.state.analysis[NS, "web"] = round_of("2026-01-01T00:02:00Z", 0.5, "Failed")
    await shell.reconcile()
    (failed,) = status_writes_of(shell.new_requests())
    assert failed["analysis"]["metrics"][0]["phase"] == "Failed"
    assert failed["analysis"]["failedRounds"] == 1
    assert failed["analysis"]["lastRound"] == "2026-01-01T00:02:00Z"


async def test_kept_numbers_are_written_once_the_refresh_period_is_over(kmock: Any) -> None:
    shell = await at_first_step(kmock, "1h")
    shell.state.analysis[NS, "web"] = round_of("2026-01-01T00:00:00Z", 0.001)
    await shell.reconcile()
    shell.state.analysis[NS, "web"] = round_of("2026-01-01T00:00:30Z", 0.002)
    await shell.reconcile()
    assert writes(shell.new_requests())[1:] == []
    shell.state.status_refresh = 0.2
    await asyncio.sleep(0.3)
    await shell.reconcile()  # the next look after the period (a round or the resync)
    (refreshed,) = status_writes_of(shell.new_requests())
    assert refreshed["analysis"]["metrics"][0]["freeThreaded"] == 0.002
    assert refreshed["analysis"]["lastRound"] == "2026-01-01T00:00:30Z"


async def test_a_step_advances_on_a_round_that_was_kept_in_memory(
    kmock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clock(datetime):
        """The shell's clock, moved by the test (a real 1 s pause raced a loaded CI machine)."""

        current = datetime(2030, 1, 1, tzinfo=UTC)

        @classmethod
        def now(cls, tz: Any = None) -> Clock:
            return cls.current  # type: ignore[return-value]

    monkeypatch.setattr(reconcile, "datetime", Clock)
    shell = await at_first_step(kmock, "1m")  # the step is reached at 2030-01-01T00:00:00Z
    shell.state.analysis[NS, "web"] = round_of("2000-01-01T00:00:00Z", 0.001)  # before the step
    await shell.reconcile()
    Clock.current += timedelta(seconds=30)
    shell.state.analysis[NS, "web"] = round_of("2030-01-01T00:00:30Z", 0.002)
    await shell.reconcile()  # pause not over: this round only brings numbers, kept in memory
    assert shell.body()["status"]["analysis"]["lastRound"] == "2000-01-01T00:00:00Z"
    shell.new_requests()
    Clock.current += timedelta(seconds=31)
    await shell.reconcile()  # the pause is over: the kept round counts, the step advances
    (advanced,) = status_writes_of(shell.new_requests())
    assert advanced["stepIndex"] == 1
    assert advanced["analysis"]["lastRound"] == "2030-01-01T00:00:30Z"


def twin_pod(name: str, revision: str, *, deleting: bool = False) -> dict[str, Any]:
    pod_template_hash = name.split("-")[2]
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "labels": {"app": "web", "pod-template-hash": pod_template_hash},
        "annotations": {"freethreaded.dev/revision": revision},
        "ownerReferences": [{"kind": "ReplicaSet", "name": f"web-ft-{pod_template_hash}"}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def test_terminating_and_earlier_revision_pods_with_the_gil_on_do_not_roll_back(
    kmock: Any,
) -> None:
    from ftrollout.shell.state import GilReading

    shell = await at_first_step(kmock, "1h")
    twin = kmock.objects[DEPLOYMENTS, NS, "web-ft"].raw
    revision = twin["spec"]["template"]["metadata"]["annotations"]["freethreaded.dev/revision"]
    for body in (
        twin_pod("web-ft-5d9f7-aaaaa", revision),
        twin_pod("web-ft-5d9f7-bbbbb", revision, deleting=True),  # on its way out
        twin_pod("web-ft-1c2b3-ccccc", "0ld0ld0ld0"),  # the previous template's pod
    ):
        shell.state.cache.put_pod(body)
    shell.state.gil[NS, "web-ft-5d9f7-aaaaa"] = GilReading(enabled=False)
    shell.state.gil[NS, "web-ft-5d9f7-bbbbb"] = GilReading(enabled=True, modules=("numpy",))
    shell.state.gil[NS, "web-ft-1c2b3-ccccc"] = GilReading(enabled=True, modules=("numpy",))
    await shell.reconcile()
    status = shell.body()["status"]
    assert status["phase"] == "Progressing", status["message"]
    assert status["gil"]["pods"] == 1
    assert status["gil"]["summary"] == "off"
    assert "RolledBack" not in event_reasons(shell.new_requests())

    # The same reading on a running pod of this revision does roll back.
    shell.state.gil[NS, "web-ft-5d9f7-aaaaa"] = GilReading(enabled=True, modules=("numpy",))
    await shell.reconcile()
    status = shell.body()["status"]
    assert status["phase"] == "RolledBack"
    assert "web-ft-5d9f7-aaaaa" in status["rollback"]["message"]
    assert "bbbbb" not in status["rollback"]["message"]


async def test_a_name_too_long_for_a_label_value_fails_with_a_condition_and_creates_nothing(
    kmock: Any,
) -> None:
    # An installed CRD from before the metadata.name rule lets such a rollout in; the twin's
    # labels and the preflight Job's would be rejected (422) before any status was written.
    name = "checkout-free-threaded-canary-for-the-payments-team-in-region-eu"
    assert len(name) == 64
    body = rollout_body()
    body["metadata"]["name"] = name
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, name] = body
    shell = Shell(kmock)
    await shell.reconcile(copy.deepcopy(body))
    reqs = writes(shell.new_requests())
    assert not any("/deployments" in r.url.path for r in reqs)  # no twin, no scale
    (status,) = [r for r in reqs if r.url.path.endswith("/status")]
    st = status.data[0]["value"]
    assert st["phase"] == "Failed"
    progressing = {c["type"]: c for c in st["conditions"]}["Progressing"]
    assert progressing["reason"] == "InvalidSpec"
    assert "metadata.name" in progressing["message"]
    assert "63 characters" in progressing["message"]
    assert event_reasons(reqs) == ["InvalidSpec"]


# ---------------------------------------------------------------------- deletion (finalizer)


async def finalize(shell: Shell) -> None:
    """kopf's call of the deletion handler with the rollout as the watch shows it now."""
    body = shell.body()
    body["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "STATE", shell.state)
        await handlers.rollout_deleted(body=body, namespace=NS, logger=LOG)


async def test_deletion_keeps_the_twin_however_long_the_target_takes_to_be_ready(
    shell: Shell, kmock: Any
) -> None:
    """Mid-step (9 standard + 1 free-threaded): the finalizer raises the target back to N and
    keeps the twin until N standard pods are Ready, reporting progress once per change
    (status message, Event), never giving up."""
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    target = kmock.objects[DEPLOYMENTS, NS, "web"]
    assert target["spec"]["replicas"] == 9
    shell.new_requests()

    with pytest.raises(kopf.TemporaryError):
        await finalize(shell)
    first = writes(shell.new_requests())
    assert [r.data for r in first if r.url.path.endswith("/deployments/web/scale")] == [
        {"spec": {"replicas": N}}
    ]
    assert not any(str(r.method.value).upper() == "DELETE" for r in first)
    assert event_reasons(first) == ["Finalizing"]
    assert "10 Ready standard replicas" in shell.body()["status"]["message"]

    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment(replicas=N, ready=3)
    for _ in range(5):  # however many retries: kopf's handler never gives up, nor do we
        with pytest.raises(kopf.TemporaryError):
            await finalize(shell)
    waiting = writes(shell.new_requests())
    assert not any(str(r.method.value).upper() == "DELETE" for r in waiting)
    assert event_reasons(waiting) == ["Finalizing"]  # one more: the count changed, once
    assert "(3 now)" in shell.body()["status"]["message"]
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["spec"]["replicas"] == 1

    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment(replicas=N, ready=N)
    await finalize(shell)
    done = writes(shell.new_requests())
    assert [str(r.method.value).upper() + " " + r.url.path.rsplit("/", 1)[1] for r in done] == [
        "DELETE web-ft"
    ]


def test_the_deletion_handler_has_no_timeout_nor_retry_limit() -> None:
    """kopf releases the finalizer when a handler's timeout or retries run out: the twin would
    then be garbage-collected with the standard track not Ready."""
    found = [
        h
        for h in kopf.get_default_registry()._changing.get_all_handlers()
        if h.id == "rollout_deleted"
    ]
    assert len(found) == 1
    assert found[0].timeout is None
    assert found[0].retries is None


# -------------------------------------------------------------------------------- ownership


def foreign_twin() -> dict[str, Any]:
    """Someone's own Deployment that happens to be called `<target>-ft`."""
    body = target_deployment(replicas=2, ready=2)
    body["metadata"].update(name="web-ft", uid="uid-theirs", labels={"app": "legacy"})
    body["spec"]["selector"] = {"matchLabels": {"app": "legacy"}}
    body["spec"]["template"]["metadata"]["labels"] = {"app": "legacy"}
    return body


def deployment_writes(reqs: list[Any]) -> list[str]:
    return [p for p in summary(writes(reqs)) if "/deployments" in p]


async def test_a_foreign_twin_survives_reconcile_and_deletion(kmock: Any) -> None:
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[DEPLOYMENTS, NS, "web-ft"] = foreign_twin()
    kmock.objects[FTR, NS, "web"] = rollout_body()
    shell = Shell(kmock)
    for _ in range(3):
        await shell.reconcile()
    reqs = shell.new_requests()
    assert deployment_writes(reqs) == []  # neither deleted, re-templated nor scaled
    (status,) = status_writes_of(reqs)
    assert status["phase"] == "Failed"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Progressing"]["reason"] == "TwinNotOwned"
    assert "web-ft" in conds["Progressing"]["message"]
    assert event_reasons(reqs) == ["TwinNotOwned"]

    await finalize(shell)  # nothing of ours to restore or remove: the finalizer is released
    assert deployment_writes(shell.new_requests()) == []
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["metadata"]["uid"] == "uid-theirs"


async def test_deleting_a_rollout_leaves_a_foreign_twin_alone(kmock: Any) -> None:
    """The rollout had run (status says N = 10); meanwhile `web-ft` became someone else's."""
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[DEPLOYMENTS, NS, "web-ft"] = foreign_twin()
    body = rollout_body()
    body["status"] = {"phase": "Progressing", "revision": "r1", "replicas": {"target": N}}
    kmock.objects[FTR, NS, "web"] = body
    shell = Shell(kmock)
    await finalize(shell)
    reqs = shell.new_requests()
    assert deployment_writes(reqs) == []
    assert event_reasons(reqs) == ["TwinNotOwned"]


async def test_a_second_rollout_on_the_same_target_fails_naming_the_first(kmock: Any) -> None:
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    first = rollout_body()
    first["metadata"]["creationTimestamp"] = "2030-01-01T00:00:00Z"
    kmock.objects[FTR, NS, "web"] = first
    second = rollout_body()
    second["metadata"].update(name="web2", uid="uid-web2", creationTimestamp="2030-01-02T00:00:00Z")
    kmock.objects[FTR, NS, "web2"] = second
    shell = Shell(kmock)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(handlers, "STATE", shell.state)
        for obj in (second, first):  # the watch may bring them in any order
            await handlers.rollout_event(
                event={"type": "ADDED", "object": obj},
                name=obj["metadata"]["name"],
                namespace=NS,
                spec=obj["spec"],
            )
    await shell.reconcile()  # the first creates its twin
    shell.watch_deployment("web-ft", replicas=1, readyReplicas=1)
    await shell.reconcile()
    twin_before = copy.deepcopy(dict(kmock.objects[DEPLOYMENTS, NS, "web-ft"].raw))
    target_before = kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"]
    shell.new_requests()

    body2 = copy.deepcopy(dict(kmock.objects[FTR, NS, "web2"].raw))
    for _ in range(3):
        await reconcile.reconcile(shell.state, body2, LOG)
    reqs = shell.new_requests()
    assert deployment_writes(reqs) == []
    (status,) = [r.data[0]["value"] for r in writes(reqs) if "/web2/status" in r.url.path]
    assert status["phase"] == "Failed"
    assert "'web'" in status["message"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Progressing"]["reason"] == "TargetClaimed"
    assert event_reasons(reqs) == ["TargetClaimed"]
    assert dict(kmock.objects[DEPLOYMENTS, NS, "web-ft"].raw) == twin_before
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == target_before

    # The first carries on as if the second were not there.
    await shell.reconcile()
    assert shell.body()["status"]["phase"] == "Progressing"


# ------------------------------------------------------------------ actions: exactly once


def annotate(kmock: Any, value: str) -> None:
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["metadata"].setdefault("annotations", {})["freethreaded.dev/action"] = value
    kmock.objects[FTR, NS, "web"] = obj


def fail_next_clear(shell: Shell) -> None:
    """The next removal of the action annotation fails with a 500 and changes nothing (KMock
    would apply the patch before answering with a canned error)."""
    real = shell.state.kube.remove_rollout_annotation

    async def once(*args: Any, **kw: Any) -> bool:
        shell.state.kube.remove_rollout_annotation = real  # type: ignore[method-assign]
        raise ApiException(status=500, reason="Internal Server Error")

    shell.state.kube.remove_rollout_annotation = once  # type: ignore[method-assign]


@pytest.mark.parametrize("value", ["promote", "promote@20300101T000000Z-1a2b"])
async def test_a_promote_whose_clearing_fails_advances_exactly_one_step(
    kmock: Any, value: str
) -> None:
    shell = await at_first_step(kmock, "1h", {"weight": 50, "pause": {"duration": "1h"}})
    assert shell.body()["status"]["stepIndex"] == 0
    annotate(kmock, value)
    shell.new_requests()
    fail_next_clear(shell)
    with pytest.raises(ApiException):
        await shell.reconcile()  # status written (step 2), the annotation's removal failed
    assert shell.body()["status"]["stepIndex"] == 1
    assert shell.body()["metadata"]["annotations"]["freethreaded.dev/action"] == value
    await shell.reconcile()  # the daemon's retry sees the same request again
    assert shell.body()["status"]["stepIndex"] == 1
    assert event_reasons(shell.new_requests()) == ["StepPromoted"]
    assert "freethreaded.dev/action" not in (shell.body()["metadata"].get("annotations") or {})


async def test_a_promote_seen_again_after_an_operator_restart_is_not_applied_again(
    kmock: Any,
) -> None:
    """The operator died between the status write and the annotation's removal."""
    shell = await at_first_step(kmock, "1h", {"weight": 50, "pause": {"duration": "1h"}})
    annotate(kmock, "promote")
    fail_next_clear(shell)
    with pytest.raises(ApiException):
        await shell.reconcile()
    restarted = Shell(kmock)  # nothing in memory
    restarted.seen = len(list(kmock))
    await restarted.reconcile()
    assert restarted.body()["status"]["stepIndex"] == 1
    reqs = restarted.new_requests()
    assert "StepPromoted" not in event_reasons(reqs)
    assert [r.data for r in writes(reqs) if r.url.path.endswith("/freethreadedrollouts/web")] == [
        clear_request("promote")
    ]


async def test_a_request_written_while_the_operator_acts_on_another_is_not_dropped(
    kmock: Any,
) -> None:
    """Another user's request lands between the operator's read of ours and its removal of
    the annotation: the removal must not take theirs with it (it was never applied)."""
    shell = await at_first_step(
        kmock, "1h", {"weight": 50, "pause": {"duration": "1h"}}, {"weight": 70}
    )
    ours, theirs = "promote@20300101T000000Z-aaaaaa", "pause@20300101T000001Z-bbbbbb"
    annotate(kmock, ours)
    real = shell.state.kube.emit_event

    async def meanwhile(*args: Any, **kw: Any) -> None:
        await real(*args, **kw)
        annotate(kmock, theirs)  # after the operator read ours, before it removes it
        obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
        obj["metadata"]["resourceVersion"] = "9001"  # a write: the API server's new version
        kmock.objects[FTR, NS, "web"] = obj

    shell.state.kube.emit_event = meanwhile  # type: ignore[method-assign]
    await shell.reconcile()
    shell.state.kube.emit_event = real  # type: ignore[method-assign]
    assert shell.body()["status"]["stepIndex"] == 1  # ours applied
    assert shell.body()["metadata"]["annotations"]["freethreaded.dev/action"] == theirs
    shell.new_requests()
    await shell.reconcile()  # the watch delivers theirs: applied, then removed
    assert "PauseRequested" in event_reasons(shell.new_requests())
    assert shell.body()["spec"]["paused"] is True
    assert "freethreaded.dev/action" not in (shell.body()["metadata"].get("annotations") or {})


def bump_rv(kmock: Any, rv: str) -> None:
    """What the API server does on every write (KMock keeps the resourceVersion)."""
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["metadata"]["resourceVersion"] = rv
    kmock.objects[FTR, NS, "web"] = obj


def deny_annotation_removal(shell: Shell) -> None:
    """Every removal of the action annotation is refused with a 422 that is not the JSON-patch
    test (a ValidatingAdmissionPolicy denies with 422 Invalid by default): nothing changes."""
    custom = shell.state.kube.custom
    real = custom.patch_namespaced_custom_object

    def patch(*args: Any, **kw: Any) -> Any:
        if kw.get("_content_type") == "application/json-patch+json":
            raise ApiException(status=422, reason="Invalid")
        return real(*args, **kw)

    custom.patch_namespaced_custom_object = patch  # type: ignore[method-assign]


async def test_a_removal_refused_with_422_for_another_reason_does_not_apply_the_request_twice(
    kmock: Any,
) -> None:
    """A 422 that leaves our request on the annotation is not "replaced": the request stays
    recorded as applied, however many timed reconciles and watch events see it again."""
    shell = await at_first_step(
        kmock, "1h", {"weight": 30, "pause": {"duration": "1h"}}, {"weight": 50}
    )
    deny_annotation_removal(shell)
    annotate(kmock, "promote@20300101T000000Z-abcdef")
    bump_rv(kmock, "200")
    shell.new_requests()
    with pytest.raises(ApiException):
        await shell.reconcile()  # promote applied: step 2; its removal refused
    assert shell.body()["status"]["stepIndex"] == 1
    bump_rv(kmock, "201")  # the status write
    body = shell.body()
    for _ in range(2):  # the watch event, then the daemon's retry with the same body
        with pytest.raises(ApiException):
            await shell.reconcile(body)
    bump_rv(kmock, "202")
    with pytest.raises(ApiException):
        await shell.reconcile()
    assert shell.body()["status"]["stepIndex"] == 1, "one promote advanced two steps"
    assert event_reasons(shell.new_requests()) == ["StepPromoted"]


@pytest.mark.parametrize("value", ["promote", "promote@20300101T000000Z-abcdef"])
async def test_a_reconcile_of_the_pre_write_body_does_not_let_the_echo_apply_the_request_again(
    kmock: Any, value: str
) -> None:
    """The promote scales the twin; that Deployment's watch event pokes the daemon, which
    reconciles the body it read before its own writes (the request hidden as being consumed)
    before the rollout's watch delivers the status write with the annotation still on it."""
    shell = await at_first_step(
        kmock, "1h", {"weight": 30, "pause": {"duration": "1h"}}, {"weight": 50}
    )
    annotate(kmock, value)
    bump_rv(kmock, "200")
    body1 = shell.body()
    await shell.reconcile(body1)  # applied (step 2), status written, annotation removed
    echo = copy.deepcopy(body1)  # the status write's watch event: annotation still there
    echo["status"] = shell.body()["status"]
    echo["metadata"]["resourceVersion"] = "201"
    await shell.reconcile(body1)  # poke by the twin's watch event, before the echo
    await shell.reconcile(echo)  # the echo
    assert shell.body()["status"]["stepIndex"] == 1, "one promote advanced two steps"


async def test_a_pause_is_not_dropped_when_an_event_write_times_out(kmock: Any) -> None:
    """An Event POST that fails other than with an ApiException (a urllib3 read timeout) must
    neither fail the reconcile nor leave a pause recorded as applied with spec.paused unset."""
    shell = await at_first_step(kmock, "1h", {"weight": 50, "pause": {"duration": "1h"}})
    request = "pause@20300101T000000Z-abcdef"
    annotate(kmock, request)
    core = shell.state.kube.core
    real = core.create_namespaced_event

    def created_but_timed_out(*args: Any, **kw: Any) -> Any:
        real(*args, **kw)
        raise urllib3.exceptions.ReadTimeoutError(None, "/api/v1/events", "read timed out")

    core.create_namespaced_event = created_but_timed_out  # type: ignore[method-assign]
    await shell.reconcile()
    core.create_namespaced_event = real  # type: ignore[method-assign]
    assert shell.body()["spec"].get("paused") is True
    assert "freethreaded.dev/action" not in (shell.body()["metadata"].get("annotations") or {})


async def test_a_pause_recorded_but_not_written_to_the_spec_is_written_by_the_retry(
    kmock: Any,
) -> None:
    """The operator stopped between the status write (lastAction = the pause) and the
    spec.paused patch: the restarted operator sees the same request and writes spec.paused."""
    shell = await at_first_step(kmock, "1h", {"weight": 50, "pause": {"duration": "1h"}})
    request = "pause@20300101T000000Z-abcdef"
    annotate(kmock, request)
    real = shell.state.kube.patch_rollout

    async def died(*args: Any, **kw: Any) -> None:
        raise RuntimeError("operator stopped")

    shell.state.kube.patch_rollout = died  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await shell.reconcile()
    shell.state.kube.patch_rollout = real  # type: ignore[method-assign]
    assert shell.body()["status"]["lastAction"]["value"] == request
    restarted = Shell(kmock)
    await restarted.reconcile()
    assert restarted.body()["spec"].get("paused") is True
    assert "freethreaded.dev/action" not in (restarted.body()["metadata"].get("annotations") or {})


# ------------------------------------------------------------- an unreadable status (#16)


def twin_deployment(replicas: int, ready: int, revision: str = "old") -> dict[str, Any]:
    body = target_deployment(replicas, ready)
    labels = {"app": "web", "freethreaded.dev/rollout": "web"}
    selector = {**labels, "freethreaded.dev/track": "free-threaded"}
    body["metadata"] = {
        "name": "web-ft",
        "namespace": NS,
        "uid": "uid-web-ft",
        "labels": labels,
        "annotations": {"freethreaded.dev/revision": revision},
        "ownerReferences": [
            {"apiVersion": "freethreaded.dev/v1alpha1", "kind": "FreeThreadedRollout",
             "name": "web", "uid": "uid-ftr", "controller": True}
        ],
    }  # fmt: skip
    body["spec"]["selector"] = {"matchLabels": selector}
    body["spec"]["template"]["metadata"]["labels"] = selector
    return body


async def test_an_unreadable_status_mid_step_keeps_n_and_is_reported(kmock: Any) -> None:
    """Mid-step at 5 + 5 the status cannot be read (a field a newer operator wrote): N is taken
    from both tracks (10, not 5), the standard track goes back to 10, and a condition and a
    Warning Event say the status was unreadable (it was dropped silently)."""
    target = target_deployment(replicas=5, ready=5)
    target["metadata"]["managedFields"] = [
        {"manager": "ftrollout", "operation": "Update", "subresource": "scale",
         "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]  # fmt: skip
    kmock.objects[DEPLOYMENTS, NS, "web"] = target
    kmock.objects[DEPLOYMENTS, NS, "web-ft"] = twin_deployment(replicas=5, ready=5)
    body = rollout_body()
    body["status"] = {
        "phase": "Progressing",
        "stepIndex": 1,
        "weight": 50,
        "replicas": {"target": 10, "standard": 5, "freeThreaded": 5, "surge": 2},
    }
    kmock.objects[FTR, NS, "web"] = body
    shell = Shell(kmock)
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    (st,) = status_writes_of(reqs)
    assert st["replicas"]["target"] == N
    scales = {r.url.path.rsplit("/", 2)[-2]: r.data for r in reqs if r.url.path.endswith("/scale")}
    assert scales.get("web") == {"spec": {"replicas": N}}
    assert "web-ft" not in scales  # the twin is kept until the standard pods are Ready
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["StatusReadable"]["status"] == "False"
    assert conds["StatusReadable"]["reason"] == "StatusUnreadable"
    assert "surge" in conds["StatusReadable"]["message"]
    unreadable = [r.data for r in reqs if r.url.path.endswith("/events")]
    assert [(e["type"], e["reason"]) for e in unreadable if e["reason"] == "StatusUnreadable"] == [
        ("Warning", "StatusUnreadable")
    ]


# ------------------------------------------- a new revision re-templates the twin last (#16)


def twin_template_patches(reqs: list[Any]) -> list[Any]:
    return [
        r
        for r in writes(reqs)
        if r.url.path.endswith("/deployments/web-ft") and str(r.method.value).upper() == "PATCH"
    ]


@pytest.mark.parametrize("strategy", ["Recreate", "RollingUpdate"])
async def test_a_new_revision_replaces_the_twins_pods_only_once_standard_is_ready_at_n(
    kmock: Any, strategy: str
) -> None:
    """At 50 % (5 + 5) the target gets a new image. The twin copies the target's strategy:
    re-templating it at once (as before) killed every free-threaded pod (Recreate) or a
    quarter of them (RollingUpdate) while the standard track had 5 Ready. Its template is only
    replaced once the standard track is Ready at N."""
    target = target_deployment()
    target["spec"]["strategy"] = {"type": strategy}
    kmock.objects[DEPLOYMENTS, NS, "web"] = target
    kmock.objects[FTR, NS, "web"] = rollout_body(
        steps=[{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]
    )
    shell = Shell(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=5, readyReplicas=5)
    await shell.reconcile()
    assert shell.body()["status"]["replicas"]["standard"] == 5
    shell.new_requests()

    # A new revision: the target's template changes.
    raw = kmock.objects[DEPLOYMENTS, NS, "web"].raw
    new = copy.deepcopy(dict(raw))
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "example/app:3.13-b"
    kmock.objects[DEPLOYMENTS, NS, "web"] = new
    shell.watch_deployment("web", replicas=5, readyReplicas=5)
    await shell.reconcile()
    reqs = shell.new_requests()
    assert [r.data for r in writes(reqs) if r.url.path.endswith("/deployments/web/scale")] == [
        {"spec": {"replicas": N}}
    ]
    assert twin_template_patches(reqs) == []  # standard Ready 5 < 10: the twin is kept

    for ready in (7, 9):
        shell.watch_deployment("web", replicas=N, readyReplicas=ready)
        await shell.reconcile()
        assert twin_template_patches(shell.new_requests()) == []

    shell.watch_deployment("web", replicas=N, readyReplicas=N)
    await shell.reconcile()
    (patch,) = twin_template_patches(shell.new_requests())
    containers = patch.data["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "example/app:3.14t"
    assert patch.data["metadata"]["annotations"]["freethreaded.dev/revision"]


# ------------------------------------------------------------------- Prometheus addresses


def analysed_body(address: str) -> dict[str, Any]:
    return rollout_body(
        analysis={
            "prometheus": {"address": address},
            "metrics": [{"name": "errors", "query": "up", "threshold": {"max": 1}}],
        }
    )


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("http://evil.example:9090", "not in the operator's allow-list"),
        ("http://prometheus.monitoring:9090/api/v1/admin/tsdb/snapshot#", "fragment"),
        ("http://user:pw@prometheus.monitoring:9090", "user information"),
    ],
)
async def test_an_address_outside_the_allow_list_fails_the_rollout_naming_the_field(
    kmock: Any, address: str, why: str
) -> None:
    from ftrollout.shell.prometheus_config import PrometheusConfig
    from ftrollout.shell.scheduler import Scheduler

    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = analysed_body(address)
    shell = Shell(kmock)
    own = "http://prometheus.monitoring:9090"
    shell.state.prometheus = PrometheusConfig(own=own, allowed=parse_allow_list([], own))
    shell.state.default_prometheus = own
    shell.state.scheduler = Scheduler(shell.state)
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    assert not any("/deployments" in r.url.path for r in reqs)  # no twin, no scale
    (status,) = [r for r in reqs if r.url.path.endswith("/status")]
    st = status.data[0]["value"]
    assert st["phase"] == "Failed"
    progressing = {c["type"]: c for c in st["conditions"]}["Progressing"]
    assert progressing["reason"] == "InvalidSpec"
    assert progressing["message"].startswith("spec.analysis.prometheus.address: ")
    assert why in progressing["message"]
    assert event_reasons(reqs) == ["InvalidSpec"]
    assert not shell.state.scheduler.targets  # never queried


async def test_an_allowed_address_is_registered_normalised(kmock: Any) -> None:
    from ftrollout.shell.prometheus_config import PrometheusConfig
    from ftrollout.shell.scheduler import Scheduler

    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = analysed_body("http://Team-A.example:80/prometheus/")
    shell = Shell(kmock)
    shell.state.prometheus = PrometheusConfig(
        allowed=parse_allow_list(["http://team-a.example/prometheus"], None)
    )
    shell.state.scheduler = Scheduler(shell.state)
    await shell.reconcile()
    assert shell.body()["status"]["phase"] in ("Progressing", "Pending")
    (target,) = shell.state.scheduler.targets.values()
    assert target.url == "http://team-a.example/prometheus"


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [("team-a", False), (f"team-a,{NS}", True)],
    ids=["another-namespaces-address", "own-namespace"],
)
async def test_an_address_reserved_for_other_namespaces_fails_the_rollout_naming_the_field(
    kmock: Any, scope: str, allowed: bool
) -> None:
    """Team A's Prometheus (with team A's credentials and CA) named by a rollout in another
    namespace: Failed before anything is queried; from a namespace in its scope: used."""
    from ftrollout.shell.prometheus_config import PrometheusConfig
    from ftrollout.shell.scheduler import Scheduler

    team_a = "http://prometheus.team-a:9090"
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = analysed_body(team_a)
    shell = Shell(kmock)
    shell.state.prometheus = PrometheusConfig(
        allowed=parse_allow_list([team_a], None, [f"{team_a}={scope}"])
    )
    shell.state.scheduler = Scheduler(shell.state)
    await shell.reconcile()
    reqs = writes(shell.new_requests())
    if allowed:
        (target,) = shell.state.scheduler.targets.values()
        assert target.url == team_a
        return
    assert not any("/deployments" in r.url.path for r in reqs)  # no twin, no scale
    (status,) = [r for r in reqs if r.url.path.endswith("/status")]
    st = status.data[0]["value"]
    assert st["phase"] == "Failed"
    progressing = {c["type"]: c for c in st["conditions"]}["Progressing"]
    assert progressing["reason"] == "InvalidSpec"
    assert progressing["message"].startswith(
        f"spec.analysis.prometheus.address: {team_a} is reserved for other namespaces than '{NS}'"
    )
    assert event_reasons(reqs) == ["InvalidSpec"]
    assert not shell.state.scheduler.targets  # never queried


def api_deployment() -> dict[str, Any]:
    body = target_deployment(replicas=3, ready=3)
    body["metadata"].update(name="api", uid="uid-api", labels={"app": "api"})
    body["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    body["spec"]["template"]["metadata"]["labels"] = {"app": "api"}
    return body


async def test_retargeting_mid_step_fails_and_deletion_restores_the_held_target(
    kmock: Any,
) -> None:
    """spec.targetRef edited at 5 + 5 (a CRD without the immutability rule): nothing is
    touched on either Deployment, and deleting the rollout restores the target it split
    (status.target), not the new one, before its twin goes."""
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        steps=[{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]
    )
    shell = Shell(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=5, readyReplicas=5)
    await shell.reconcile()
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == 5

    kmock.objects[DEPLOYMENTS, NS, "api"] = api_deployment()
    obj = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    obj["spec"]["targetRef"] = {"name": "api"}
    obj["metadata"]["generation"] = 2
    kmock.objects[FTR, NS, "web"] = obj
    shell.new_requests()
    for _ in range(3):
        await shell.reconcile()
    assert deployment_writes(shell.new_requests()) == []
    status = shell.body()["status"]
    assert status["phase"] == "Failed"
    assert "spec.targetRef" in status["message"]

    with pytest.raises(kopf.TemporaryError):  # waits for `web` to be Ready at N
        await finalize(shell)
    assert kmock.objects[DEPLOYMENTS, NS, "web"]["spec"]["replicas"] == N
    assert kmock.objects[DEPLOYMENTS, NS, "api"]["spec"]["replicas"] == 3
    assert deployment_writes(shell.new_requests()) == [
        "PATCH /apis/apps/v1/namespaces/shop/deployments/web/scale"
    ]


async def test_a_rollout_never_scales_another_rollouts_twin(kmock: Any) -> None:
    """A targetRef naming another rollout's twin (`web-ft`, controlled by rollout `web`) is
    refused: Failed naming that rollout, no `web-ft-ft` created, `web-ft` never scaled."""
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        steps=[{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]
    )
    shell = Shell(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    await shell.reconcile()
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["metadata"]["ownerReferences"][0]["uid"] == (
        "uid-ftr"
    )

    x = rollout_body(steps=[{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}])
    x["metadata"].update(name="x", uid="uid-x")
    x["spec"]["targetRef"] = {"name": "web-ft"}
    kmock.objects[FTR, NS, "x"] = x
    shell.new_requests()
    for _ in range(2):
        await shell.reconcile(copy.deepcopy(dict(kmock.objects[FTR, NS, "x"].raw)))
    assert deployment_writes(shell.new_requests()) == []
    status = kmock.objects[FTR, NS, "x"]["status"]
    assert status["phase"] == "Failed"
    assert "FreeThreadedRollout 'web'" in status["message"]


async def test_a_recreated_rollout_adopts_the_twin_and_keeps_n(kmock: Any) -> None:
    """The rollout deleted after its finalizer was removed and created again (same name, new
    uid) mid-step at 5 + 5: the twin made by the old one is adopted (its controller reference
    rewritten, so garbage collection keeps it) and N stays 10."""
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        steps=[{"weight": 50, "pause": {"duration": "1h"}}, {"weight": 100}]
    )
    shell = Shell(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=5, readyReplicas=5)
    await shell.reconcile()

    # N is read from the twin's annotation (the emulator keeps no managedFields).
    annotations = kmock.objects[DEPLOYMENTS, NS, "web-ft"]["metadata"]["annotations"]
    assert annotations["freethreaded.dev/service-replicas"] == str(N)
    web = copy.deepcopy(dict(kmock.objects[DEPLOYMENTS, NS, "web"].raw))
    web["status"] = {"replicas": 5, "readyReplicas": 5}
    kmock.objects[DEPLOYMENTS, NS, "web"] = web
    again = copy.deepcopy(dict(kmock.objects[FTR, NS, "web"].raw))
    again["metadata"]["uid"] = "uid-new"
    again.pop("status", None)
    kmock.objects[FTR, NS, "web"] = again
    shell = Shell(kmock)  # a fresh cache
    shell.watch_deployment("web")
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    await shell.reconcile()
    twin = kmock.objects[DEPLOYMENTS, NS, "web-ft"]
    assert [r["uid"] for r in twin["metadata"]["ownerReferences"]] == ["uid-new"]
    status = shell.body()["status"]
    assert status["phase"] != "Failed", status["message"]
    assert status["replicas"]["target"] == N
    assert "TwinAdopted" in event_reasons(shell.new_requests())


# ------------------------------------------------- deletes carry the uid they were decided on


async def test_a_twin_replaced_since_it_was_seen_is_not_deleted_for_a_new_selector(
    kmock: Any,
) -> None:
    """The target was re-created on a new selector: the twin seen on the old one is deleted
    to be made again. If that twin was itself replaced by someone else's `web-ft` that the
    watch has not shown yet, the DELETE's uid precondition makes the apiserver refuse it (409)
    instead of deleting theirs (review of h-b: deleted by name)."""
    target = target_deployment()
    labels = {"app": "web", "generation": "2"}
    target["spec"]["selector"] = {"matchLabels": labels}
    target["spec"]["template"]["metadata"]["labels"] = labels
    kmock.objects[DEPLOYMENTS, NS, "web"] = target
    kmock.objects[DEPLOYMENTS, NS, "web-ft"] = twin_deployment(replicas=0, ready=0)
    body = rollout_body()
    body["status"] = {
        "phase": "Progressing",
        "stepIndex": 0,
        "weight": 10,
        "revision": "old",
        "target": "web",
        "replicas": {"target": N, "standard": N, "freeThreaded": 0},
    }
    kmock.objects[FTR, NS, "web"] = body
    shell = Shell(kmock)
    shell.watch_deployment("web")
    shell.watch_deployment("web-ft")  # ours, on the old selector, in the cache
    kmock.objects[DEPLOYMENTS, NS, "web-ft"] = foreign_twin()  # live: theirs
    await shell.reconcile()  # raises nothing
    reqs = shell.new_requests()
    (delete,) = [r for r in writes(reqs) if r.url.path.endswith("/deployments/web-ft")]
    assert delete.data["preconditions"]["uid"] == "uid-web-ft"
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["metadata"]["uid"] == "uid-theirs"
    # Nothing decided for ours is written to theirs: no scale, no template, no create.
    assert deployment_writes(reqs) == [f"DELETE /apis/apps/v1/namespaces/{NS}/deployments/web-ft"]
    # The next look sees theirs and touches nothing.
    await shell.reconcile()
    reqs = shell.new_requests()
    assert [p for p in deployment_writes(reqs) if "web-ft" in p] == []
    assert status_writes_of(reqs)[-1]["phase"] == "Failed"
    assert kmock.objects[DEPLOYMENTS, NS, "web-ft"]["metadata"]["uid"] == "uid-theirs"


async def test_the_finalizer_deletes_only_the_twin_it_read(kmock: Any) -> None:
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[DEPLOYMENTS, NS, "web-ft"] = twin_deployment(replicas=0, ready=0)
    body = rollout_body()
    body["status"] = {"target": "web", "replicas": {"target": N}}
    kmock.objects[FTR, NS, "web"] = body
    shell = Shell(kmock)
    await finalize(shell)
    (delete,) = [r for r in writes(shell.new_requests()) if r.url.path.endswith("/web-ft")]
    assert delete.data["preconditions"]["uid"] == "uid-web-ft"
    assert not exists(kmock, "web-ft")


async def _first_look_of_daemon(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Run the rollout's daemon once round and return the timeouts it waited for a poke with."""
    monkeypatch.setattr(handlers, "STATE", shell.state)
    real_wait_for = asyncio.wait_for
    timeouts: list[float] = []

    real_wait = handlers.wait_set

    async def recording(poke: asyncio.Event, seconds: float) -> None:
        timeouts.append(seconds)
        await real_wait(poke, 0.01)

    monkeypatch.setattr(handlers, "wait_set", recording)

    class Stopped:
        flag = False

        def __bool__(self) -> bool:
            return self.flag

    stopped = Stopped()
    fn = getattr(handlers.rollout_daemon, "__wrapped__", handlers.rollout_daemon)
    task = asyncio.create_task(
        fn(body=shell.body(), name="web", namespace=NS, stopped=stopped, logger=LOG)
    )
    try:
        for _ in range(200):
            if timeouts:
                break
            await asyncio.sleep(0.01)
    finally:
        stopped.flag = True
        shell.state.poke(NS, "web")
        await real_wait_for(task, 5)
    return timeouts


@pytest.mark.parametrize(
    ("pause", "seconds"),
    [({}, 3600.0), ({"duration": "1h"}, 3600.0), ({"duration": "90s"}, 90.0)],
)
async def test_a_paused_rollout_with_nothing_due_is_not_looked_at_every_minute(
    kmock: Any, monkeypatch: pytest.MonkeyPatch, pause: dict[str, Any], seconds: float
) -> None:
    """Issue 22: at 1000 paused rollouts a look every 60 s was most of the idle CPU. Everything
    the reconcile reads is watched (a poke) or asked for by the plan (the pause's end)."""
    kmock.objects[DEPLOYMENTS, NS, "web"] = target_deployment()
    kmock.objects[FTR, NS, "web"] = rollout_body(
        steps=[{"weight": 50, "pause": pause}, {"weight": 100}]
    )
    shell = Shell(kmock)
    await shell.reconcile()
    shell.watch_deployment("web-ft", replicas=5, readyReplicas=5)
    await shell.reconcile()
    shell.watch_deployment("web", replicas=5, readyReplicas=5)
    await shell.reconcile()
    await shell.reconcile()
    status = shell.body()["status"]
    assert status["stepStartedAt"], status["message"]  # the step is reached: nothing to do
    assert status["phase"] == ("Paused" if not pause else "Progressing")
    shell.new_requests()
    timeouts = await _first_look_of_daemon(shell, monkeypatch)
    assert writes(shell.new_requests()) == []  # the daemon's look found nothing to do
    assert len(timeouts) >= 1
    if seconds == handlers.IDLE_RESYNC_SECONDS:  # spread over the last quarter per rollout
        assert seconds * 0.75 - 2.0 <= timeouts[0] <= seconds + 2.0
    else:
        assert timeouts[0] == pytest.approx(seconds, abs=2.0)


def test_a_rollout_whose_routes_are_read_not_watched_keeps_the_minute() -> None:
    routed = {"spec": {"trafficRouting": {"gatewayAPI": {"httpRoutes": [{"name": "web"}]}}}}
    assert 45.0 <= handlers.next_look(routed, None) <= 60.0
    assert handlers.next_look(routed, 5.0) == 5.0
    assert 2700.0 <= handlers.next_look({"spec": {}}, None) <= 3600.0
    assert handlers.next_look({"spec": {}}, 0.0) == 0.05


def test_the_looks_of_rollouts_created_together_are_spread() -> None:
    looks = {
        handlers.next_look({"metadata": {"namespace": "ns", "name": f"r{i}"}, "spec": {}}, None)
        for i in range(100)
    }
    assert len(looks) > 90
    assert min(looks) < 2800.0
    assert max(looks) > 3500.0


async def test_a_rollback_applied_by_the_other_replica_is_not_undone_on_resume(kmock: Any) -> None:
    """A replica paused by a peering handover keeps its process and its in-memory status (a
    deferred analysis-only status here); the other replica applies a rollback. On resume the
    first one used to plan from its memory and write it back: the rollback undone, its record
    lost. The memory counts only while the API shows the status it was planned from."""
    a = await at_first_step(kmock, "1h")
    a.state.analysis[NS, "web"] = round_of("2030-01-01T00:00:00Z", 0.001)
    await a.reconcile()
    a.state.analysis[NS, "web"] = round_of("2030-01-01T00:00:30Z", 0.002)
    await a.reconcile()  # only new numbers: kept in memory (deferred_status)
    assert (NS, "web") in a.state.deferred_status

    b = Shell(kmock)
    request = "rollback@20300101T000100Z-abcdef"
    annotate(kmock, request)
    await b.reconcile()
    st = kmock.objects[FTR, NS, "web"].raw["status"]
    assert st["phase"] == "RolledBack"

    a.new_requests()
    await a.reconcile()
    a.watch_deployment("web", replicas=10, readyReplicas=10)
    await a.reconcile()
    st = kmock.objects[FTR, NS, "web"].raw["status"]
    scales = [
        (r.url.path.rsplit("/", 2)[-2], r.data["spec"]["replicas"])
        for r in a.new_requests()
        if r.url.path.endswith("/scale")
    ]
    assert st["phase"] == "RolledBack", (st["phase"], st.get("message"), scales)
    assert request in [r["value"] for r in st.get("recentActions") or []]
    assert (NS, "web") not in a.state.deferred_status


async def test_a_pending_write_of_ours_does_not_hide_a_newer_status_written_by_another(
    kmock: Any,
) -> None:
    """Our last status write not yet seen back (pending_status) stands in for the API's
    status only while the API shows what it was written over: a status written by another
    replica since is newer, and planning from ours would undo its rollback."""
    a = await at_first_step(kmock, "1h")
    before = copy.deepcopy(kmock.objects[FTR, NS, "web"].raw["status"])
    ours = {**before, "message": "a write of ours still in flight"}
    b = Shell(kmock)
    request = "rollback@20300101T000100Z-fedcba"
    annotate(kmock, request)
    await b.reconcile()
    assert kmock.objects[FTR, NS, "web"].raw["status"]["phase"] == "RolledBack"
    a.state.pending_status[NS, "web"] = ours
    getattr(a.state, "pending_bases", {})[NS, "web"] = [before]
    a.new_requests()
    await a.reconcile()
    st = kmock.objects[FTR, NS, "web"].raw["status"]
    assert st["phase"] == "RolledBack", (st["phase"], st.get("message"))
    assert request in [r["value"] for r in st.get("recentActions") or []]
    assert a.state.pending_status.get((NS, "web")) != ours
