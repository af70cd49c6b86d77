"""GIL fallback read from pod logs: the CPython warning, found once, read incrementally."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from ftrollout.shell.gillog import LogCursor, LogScanner
from ftrollout.shell.state import GilReading, State

WARN = (
    "RuntimeWarning: The global interpreter lock (GIL) has been enabled to load module "
    "'{}', which has not declared that it can run safely without the GIL."
)


def line(ts: str, text: str) -> str:
    return f"{ts} {text}"


def test_the_warning_names_the_module_once() -> None:
    c = LogCursor()
    chunk = "\n".join(
        [
            line("2026-01-01T00:00:00.100000000Z", "starting"),
            line("2026-01-01T00:00:01.200000000Z", WARN.format("legacy_ext")),
            line("2026-01-01T00:00:01.300000000Z", WARN.format("legacy_ext")),
            line("2026-01-01T00:00:02.000000000Z", WARN.format("numpy.core._multiarray_umath")),
        ]
    )
    assert c.feed(chunk) == ["legacy_ext", "numpy.core._multiarray_umath"]
    assert c.modules == ["legacy_ext", "numpy.core._multiarray_umath"]
    assert c.since == "2026-01-01T00:00:02Z"


def test_overlapping_reads_do_not_count_twice_and_new_lines_are_found() -> None:
    c = LogCursor()
    first = line("2026-01-01T00:00:05.1Z", "a") + "\n" + line("2026-01-01T00:00:05.2Z", "b")
    c.feed(first)
    # The next request starts a little before the last second: the same lines come back.
    again = first + "\n" + line("2026-01-01T00:00:06.0Z", WARN.format("late_mod"))
    assert c.feed(again) == ["late_mod"]
    assert c.feed(again) == []


class FakeKube:
    """Serves a growing log per pod and records the since_seconds of each request."""

    def __init__(self) -> None:
        self.logs: dict[str, list[str]] = {}
        self.requests: list[tuple[str, int | None]] = []

    async def read_log(
        self, namespace: str, pod: str, container: str | None, since: int | None, limit: int
    ) -> str:
        self.requests.append((pod, since))
        if pod not in self.logs:
            raise type("ApiException", (Exception,), {"status": 400})("no kubelet")
        return "\n".join(self.logs[pod])


def state_with_pod(kube: Any) -> State:
    state = State()
    state.kube = kube
    state.cache.set_rollout_target("ns", "web", "web")
    state.cache.put_pod(
        {
            "metadata": {
                "name": "web-ft-abc-1",
                "namespace": "ns",
                "labels": {"pod-template-hash": "abc", "freethreaded.dev/track": "free-threaded"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-ft-abc"}],
            },
            "status": {"phase": "Running"},
        }
    )
    state.active.add(("ns", "web"))
    return state


def test_scanner_reads_incrementally_and_reports_the_module() -> None:
    kube = FakeKube()
    state = state_with_pod(kube)
    scanner = LogScanner(state)
    now = datetime.now(UTC)
    stamp = (now - timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    kube.logs["web-ft-abc-1"] = [line(stamp, "serving")]
    asyncio.run(scanner.round())
    assert kube.requests[-1] == ("web-ft-abc-1", None)  # first read: from the start
    assert ("ns", "web-ft-abc-1") not in state.gil
    kube.logs["web-ft-abc-1"].append(line(stamp, WARN.format("legacy_ext")))
    asyncio.run(scanner.round())
    since = kube.requests[-1][1]
    assert since is not None
    assert 1 <= since <= 10  # only the recent window, never the whole log again
    assert state.gil[("ns", "web-ft-abc-1")] == GilReading(True, ("legacy_ext",), source="log")


def test_pods_with_probe_readings_or_without_logs_are_not_read_again() -> None:
    kube = FakeKube()
    state = state_with_pod(kube)
    scanner = LogScanner(state)
    asyncio.run(scanner.round())  # 400: kwok has no kubelet to serve logs
    asyncio.run(scanner.round())
    assert len(kube.requests) == 1
    state2 = state_with_pod(kube)
    state2.gil[("ns", "web-ft-abc-1")] = GilReading(False)
    assert LogScanner(state2).pods_to_scan() == []


def ft_pod(name: str, namespace: str = "ns", hash_: str = "abc") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"pod-template-hash": hash_, "freethreaded.dev/track": "free-threaded"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"web-ft-{hash_}"}],
        },
        "status": {},
    }


def test_the_list_of_pods_to_read_is_made_again_only_when_something_it_reads_changed() -> None:
    """At 1000 idle rollouts walking every rollout's pods every 15 s was a quarter of the
    operator's CPU (py-spy, 1 kHz): the list is kept until a pod, a rollout, a reading or a
    pod's readability changes, and each of those changes is seen in the next round."""
    kube = FakeKube()
    state = state_with_pod(kube)
    scanner = LogScanner(state)
    walks = 0
    walk = scanner._walk

    def counting() -> list[tuple[str, str, str, str | None]]:
        nonlocal walks
        walks += 1
        return walk()

    scanner._walk = counting  # type: ignore[method-assign]
    first = ("ns", "web-ft-abc-1", "web", None)
    assert scanner.pods_to_scan() == [first]
    # Nothing changed: the same list, no walk. A reconcile setting the same container and
    # marking the rollout active again is no change either.
    state.containers[("ns", "web")] = None
    state.active.add(("ns", "web"))
    assert scanner.pods_to_scan() == [first]
    assert scanner.pods_to_scan() == [first]
    assert walks == 2  # the first list, then the container's first entry
    # A new pod of the twin.
    state.cache.put_pod(ft_pod("web-ft-abc-2"))
    second = ("ns", "web-ft-abc-2", "web", None)
    assert sorted(scanner.pods_to_scan()) == [first, second]
    # The probe reports for the first pod: its log is no longer read.
    state.gil[("ns", "web-ft-abc-1")] = GilReading(False)
    assert scanner.pods_to_scan() == [second]
    # The reading goes (pruned): read the log again.
    del state.gil[("ns", "web-ft-abc-1")]
    assert sorted(scanner.pods_to_scan()) == [first, second]
    # The rollout names a container.
    state.containers[("ns", "web")] = "app"
    assert {p[3] for p in scanner.pods_to_scan()} == {"app"}
    # A pod's log cannot be read (no kubelet): it is left out.
    scanner.unavailable.add(("ns", "web-ft-abc-2"))
    assert scanner.pods_to_scan() == [("ns", "web-ft-abc-1", "web", "app")]
    # The rollout is done: nothing to read.
    state.active.discard(("ns", "web"))
    assert scanner.pods_to_scan() == []
    state.active.add(("ns", "web"))
    assert scanner.pods_to_scan() == [("ns", "web-ft-abc-1", "web", "app")]
    # The rollout points at another target.
    state.cache.set_rollout_target("ns", "web", "api")
    assert scanner.pods_to_scan() == []
    before = walks
    for _ in range(5):
        scanner.pods_to_scan()
    assert walks == before


def test_a_pod_whose_log_was_unreadable_is_forgotten_when_it_goes() -> None:
    kube = FakeKube()
    state = state_with_pod(kube)
    scanner = LogScanner(state)
    asyncio.run(scanner.round())  # 400: unreadable
    assert scanner.unavailable == {("ns", "web-ft-abc-1")}
    state.cache.drop_pod(ft_pod("web-ft-abc-1"))
    asyncio.run(scanner.round())
    assert scanner.unavailable == set()


def test_a_pod_read_before_its_container_started_is_read_again() -> None:
    """The scanner reads a new twin pod within 15 s of its creation, often while its container
    is still being created: the API server answers 400 ("container ... is waiting to start:
    ContainerCreating"), like a node without a kubelet (kwok). The pod was then never read
    again: a GIL fallback only its log shows went unseen for its whole life."""
    kube = FakeKube()
    state = state_with_pod(kube)
    pending = ft_pod("web-ft-abc-2")
    pending["status"] = {"phase": "Pending"}
    state.cache.put_pod(pending)
    scanner = LogScanner(state)
    kube.logs["web-ft-abc-1"] = []
    asyncio.run(scanner.round())  # web-ft-abc-2: 400, its container is waiting to start
    assert ("ns", "web-ft-abc-2") not in scanner.unavailable
    state.cache.put_pod({**pending, "status": {"phase": "Running"}})
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    kube.logs["web-ft-abc-2"] = [line(stamp, WARN.format("legacy_ext"))]
    asyncio.run(scanner.round())
    assert state.gil[("ns", "web-ft-abc-2")] == GilReading(True, ("legacy_ext",), source="log")
