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
            "status": {},
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
