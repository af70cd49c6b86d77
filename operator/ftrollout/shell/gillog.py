"""GIL fallback from pod logs: the second-best source, for pods without the runtime probe.

CPython prints, when an import re-enables the GIL on a free-threaded build:

    RuntimeWarning: The global interpreter lock (GIL) has been enabled to load module
    'legacy_ext', which has not declared that it can run safely without the GIL.

Each pod's log is read incrementally (`sinceTime` plus the last line seen), never whole again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ftrollout.shell.state import GilReading, State
from ftrollout.shell.versioned import VersionedSet

log = logging.getLogger("ftrollout.shell.gillog")
LOG_INTERVAL = 15.0  # seconds between reads of one pod's log
LIMIT_BYTES = 256 * 1024
CONCURRENCY = 4

WARNING = re.compile(
    r"The global interpreter lock \(GIL\) has been enabled to load module '([^']+)'"
)
# Written by the apiserver with `timestamps=true`: "2026-01-01T00:00:00.123456789Z line".
_STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (.*)$")


@dataclass
class LogCursor:
    """Where reading a pod's log left off, and what it found so far."""

    since: str | None = None  # RFC 3339 second of the last line read
    seen_at_since: set[str] = field(default_factory=set)  # lines already read in that second
    modules: list[str] = field(default_factory=list)

    def feed(self, text: str) -> list[str]:
        """Consume a chunk read with timestamps; return modules newly found."""
        found: list[str] = []
        for raw in text.splitlines():
            m = _STAMPED.match(raw)
            if m is None:
                continue
            stamp, line = m.groups()
            second = stamp.split(".")[0] + "Z" if "." in stamp else stamp
            if self.since is not None and second < self.since:
                continue  # the request window starts a little early: already read
            if second == self.since and raw in self.seen_at_since:
                continue  # the boundary second comes again
            if second != self.since:
                self.since = second
                self.seen_at_since = set()
            self.seen_at_since.add(raw)
            for module in WARNING.findall(line):
                if module not in self.modules:
                    self.modules.append(module)
                    found.append(module)
        return found


class LogScanner:
    """Reads the logs of free-threaded pods that have no probe reading, incrementally."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.cursors: dict[tuple[str, str], LogCursor] = {}
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.unavailable: VersionedSet[tuple[str, str]] = VersionedSet()
        # The last list and what it was made from: it is made again only when a rollout, a
        # pod, a reading or a pod's readability changed (a quarter of the idle operator's CPU
        # at 1000 rollouts was walking every rollout's pods every 15 s to find nothing new).
        self._made_from: tuple[tuple[object, ...], tuple[int, ...]] | None = None
        self._list: list[tuple[str, str, str, str | None]] = []

    def _inputs(self) -> tuple[tuple[object, ...], tuple[int, ...]]:
        """The objects the list is made from (compared with `is`: the pod keys are one object
        until a pod comes or goes) and the versions of the versioned ones (shell.versioned)."""
        state, cache = self.state, self.state.cache
        versioned = (cache.rollout_targets, state.active, state.containers, state.gil)
        objects = (cache.pod_keys(), *versioned, self.unavailable)
        return objects, tuple(v.version for v in (*versioned, self.unavailable))

    def pods_to_scan(self) -> list[tuple[str, str, str, str | None]]:
        """(namespace, pod, rollout, container) of active rollouts' pods without a reading."""
        objects, versions = self._inputs()
        made = self._made_from
        if (
            made is None
            or versions != made[1]
            or any(a is not b for a, b in zip(objects, made[0], strict=True))
        ):
            self._list = self._walk()
            self._made_from = (objects, versions)
        return self._list

    def _walk(self) -> list[tuple[str, str, str, str | None]]:
        out = []
        for (ns, rollout), target in self.state.cache.rollout_targets.items():
            if (ns, rollout) not in self.state.active:
                continue
            container = self.state.containers.get((ns, rollout))
            for p in self.state.cache.pods_of(ns, f"{target}-ft"):
                reading = self.state.gil.get((ns, p.name))
                if reading is not None and reading.source == "probe":
                    continue
                if (ns, p.name) in self.unavailable:
                    continue
                out.append((ns, p.name, rollout, container))
        return out

    async def round(self) -> None:
        pods = self.pods_to_scan()
        live = {(ns, pod) for ns, pod, _, _ in pods}
        for key in set(self.cursors) - live:
            if key not in self.state.gil or self.state.gil[key].source == "log":
                self.cursors.pop(key, None)
        # A pod whose log could not be read is asked no more; it is forgotten once it is gone.
        gone = self.unavailable - self.state.cache.pod_keys()
        if gone:
            self.unavailable -= gone
        await asyncio.gather(*(self.scan(*p) for p in pods))

    def _running(self, namespace: str, pod: str, rollout: str) -> bool:
        target = self.state.cache.rollout_targets.get((namespace, rollout))
        p = self.state.cache.pods.get((namespace, f"{target}-ft"), {}).get(pod)
        return p is not None and p.running

    async def scan(self, namespace: str, pod: str, rollout: str, container: str | None) -> None:

        key = (namespace, pod)
        cursor = self.cursors.setdefault(key, LogCursor())
        since = None
        if cursor.since is not None:
            then = datetime.fromisoformat(cursor.since.replace("Z", "+00:00"))
            since = max(1, math.ceil((datetime.now(UTC) - then).total_seconds()) + 1)
        async with self.limit:
            try:
                text = await self.state.kube.read_log(namespace, pod, container, since, LIMIT_BYTES)
            except Exception as exc:  # no kubelet (kwok), pod gone, forbidden: try later
                status = getattr(exc, "status", None)
                # 400 is also a container still waiting to start (a new pod): such a pod is
                # asked again; only a running one's 400 (no kubelet: kwok) is final.
                if status == 403 or (status == 400 and self._running(namespace, pod, rollout)):
                    self.unavailable.add(key)
                log.debug("log of %s/%s not readable: %s", namespace, pod, status or exc)
                return
        found = cursor.feed(text)
        if found:
            log.info("%s/%s: pod %s log: GIL re-enabled by %s", namespace, rollout, pod, found)
        if cursor.modules:
            reading = GilReading(enabled=True, modules=tuple(cursor.modules), source="log")
            if self.state.gil.get(key) != reading:
                self.state.gil[key] = reading
                self.state.poke(namespace, rollout)
