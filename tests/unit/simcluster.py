"""A tiny in-memory model of two Deployments for driving the pure planner in tests.

Pods become Ready `lag` plan-calls after a scale-up; scale-downs take effect at once. It is a
test double of the cluster, not of the code under test: `plan` runs for real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ftrollout import api
from ftrollout.plan import Observation, Result, Workload, plan


@dataclass
class Track:
    replicas: int
    ready: int
    pending: list[int] = field(default_factory=list)  # ticks left for each not-yet-Ready pod

    def scale(self, n: int) -> None:
        if n < self.replicas:
            drop_pending = min(len(self.pending), self.replicas - n)
            self.pending = self.pending[drop_pending:]
            self.ready = min(self.ready, n)
        self.replicas = n

    def tick(self, lag: int) -> None:
        missing = self.replicas - self.ready - len(self.pending)
        self.pending += [lag] * max(0, missing)
        self.pending = [t - 1 for t in self.pending]
        self.ready += sum(1 for t in self.pending if t <= 0)
        self.pending = [t for t in self.pending if t > 0]


@dataclass
class Sim:
    spec: api.RolloutSpec
    n: int = 10
    lag: int = 1
    revision: str = "rev1"
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    status: api.RolloutStatus = field(default_factory=api.RolloutStatus)
    twin_exists: bool = False
    action: str | None = None
    history: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.std = Track(self.n, self.n)
        self.ft = Track(0, 0)

    def observe(self, **extra: object) -> Observation:
        kwargs: dict[str, object] = {
            "now": self.now,
            "generation": 1,
            "revision": self.revision,
            "target": Workload(self.std.replicas, self.std.ready),
            "twin": Workload(self.ft.replicas, self.ft.ready) if self.twin_exists else None,
            "action": self.action,
        }
        kwargs.update(extra)
        return Observation(**kwargs)  # type: ignore[arg-type]

    def step(self, advance: float = 1.0, **extra: object) -> Result:
        res = plan(self.spec, self.status, self.observe(**extra))
        self.status = res.status
        self.action = None
        if res.target_replicas is not None:
            self.std.scale(res.target_replicas)
        if res.twin_replicas is not None:
            self.twin_exists = True
            self.ft.scale(res.twin_replicas)
        self.history.append(res)
        self.now += timedelta(seconds=advance)
        self.std.tick(self.lag)
        self.ft.tick(self.lag)
        return res

    @property
    def ready(self) -> int:
        return self.std.ready + self.ft.ready
