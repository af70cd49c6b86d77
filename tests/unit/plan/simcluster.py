"""A tiny in-memory model of two Deployments for driving the pure planner in tests.

Pods become Ready `lag` plan-calls after a scale-up; scale-downs take effect at once. It is a
test double of the cluster, not of the code under test: `plan` runs for real.

Beyond the two Deployments the simulator can stand in for the rest of the world the shell
observes: GIL state of free-threaded pods (`pods`), crash incidents (`incidents`), the latest
analysis round (`analysis`), a missing target (`target_exists`), an invalid spec (`spec_error`),
and people (`scale_target`, `delete_twin`, `action`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ftrollout.model import api
from ftrollout.plan import AnalysisRound, Observation, PodGil, Result, Workload, plan, rfc3339
from ftrollout.plan.types import Ownership


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
    last_action: str | None = None  # the latest request written (for `redeliver`)
    # The rest of the observed world (all optional; defaults = a healthy, quiet cluster).
    generation: int = 1
    target_exists: bool = True
    spec_error: api.SpecError | None = None
    pods: tuple[PodGil, ...] = ()
    incidents: tuple[api.Incident, ...] = ()
    analysis: AnalysisRound | None = None
    preflight: api.PreflightStatus | None = None
    # Who controls the Deployment named like the twin and who else claims the target (None: not
    # checked), and whether that Deployment carries this rollout's label.
    ownership: Ownership | None = None
    twin_owned: bool = True
    # Writes the shell would have made: (kind, value) for every replica count that differs
    # from what is live, plus one per emitted event.
    writes: list[tuple[str, int]] = field(default_factory=list)
    # Called with (sim, observation, result) right after a result is applied and before pods
    # progress: the moment where ready capacity is lowest.
    on_apply: Callable[[Sim, Observation, Result], None] | None = None

    def __setattr__(self, name: str, value: object) -> None:
        # Every request a user writes is a new write of the annotation: the apiserver records
        # its time in managedFields (a re-delivery of the same request keeps it: `redeliver`).
        if name == "action" and value is not None:
            seq = getattr(self, "action_writes", 0) + 1
            object.__setattr__(self, "action_writes", seq)
            written = self.now + timedelta(microseconds=seq)
            object.__setattr__(self, "action_written_at", written.isoformat())
        object.__setattr__(self, name, value)

    def redeliver(self) -> None:
        """The last request is seen again as it was (its removal failed, or the operator
        restarted before removing it)."""
        object.__setattr__(self, "action", self.last_action)

    def __post_init__(self) -> None:
        self.last_spec = self.spec
        self.last_status = self.status
        self.std = Track(self.n, self.n)
        self.ft = Track(0, 0)

    def observe(self, **extra: object) -> Observation:
        kwargs: dict[str, object] = {
            "now": self.now,
            "generation": self.generation,
            "revision": self.revision if self.target_exists else None,
            "target": Workload(self.std.replicas, self.std.ready) if self.target_exists else None,
            "twin": Workload(self.ft.replicas, self.ft.ready) if self.twin_exists else None,
            "action": self.action,
            "action_written_at": getattr(self, "action_written_at", None) if self.action else None,
            "pods": self.pods,
            "incidents": self.incidents,
            "analysis": self.analysis,
            "spec_error": self.spec_error,
            "preflight": self.preflight,
            "ownership": self.ownership,
            "twin_owned": self.twin_owned,
        }
        kwargs.update(extra)
        return Observation(**kwargs)  # type: ignore[arg-type]

    def apply(self, res: Result) -> None:
        """What the shell does with a result: write changed replica counts."""
        self.status = res.status
        if self.action is not None:
            self.last_action = self.action
        self.action = None
        if res.target_replicas is not None and res.target_replicas != self.std.replicas:
            self.writes.append(("target", res.target_replicas))
        if res.target_replicas is not None:
            self.std.scale(res.target_replicas)
        if res.twin_replicas is not None and (
            not self.twin_exists or res.twin_replicas != self.ft.replicas
        ):
            self.writes.append(("twin", res.twin_replicas))
        if res.twin_replicas is not None:
            self.twin_exists = True
            self.ft.scale(res.twin_replicas)
        if res.set_paused is not None:
            self.spec = self.spec.model_copy(update={"paused": res.set_paused})

    def step(self, advance: float = 1.0, **extra: object) -> Result:
        obs = self.observe(**extra)
        self.last_spec = self.spec  # apply() may flip spec.paused like the shell does
        self.last_status = self.status
        res = plan(self.spec, self.status, obs)
        self.apply(res)
        if self.on_apply is not None:
            self.on_apply(self, obs, res)
        self.history.append(res)
        self.now += timedelta(seconds=advance)
        self.std.tick(self.lag)
        self.ft.tick(self.lag)
        return res

    def run(self, steps: int, advance: float = 1.0) -> list[Result]:
        return [self.step(advance) for _ in range(steps)]

    def until(self, pred: Callable[[Sim], bool], limit: int = 200, advance: float = 1.0) -> Result:
        """Step until `pred(sim)` holds after a step; fail loudly if it never does."""
        for _ in range(limit):
            res = self.step(advance)
            if pred(self):
                return res
        raise AssertionError(
            f"condition not met after {limit} steps: phase={self.status.phase} "
            f"step={self.status.step_index} std={self.std} ft={self.ft} msg={self.status.message}"
        )

    # ------------------------------------------------------------------ the outside world

    def scale_target(self, n: int) -> None:
        """`kubectl scale deploy/<target> --replicas=n` by a person or an autoscaler."""
        self.std.scale(n)

    def scale_twin(self, n: int) -> None:
        """`kubectl scale deploy/<target>-ft --replicas=n` (or an autoscaler on the twin)."""
        self.ft.scale(n)

    def delete_twin(self) -> None:
        """`kubectl delete deploy/<target>-ft` by hand."""
        self.twin_exists = False
        self.ft = Track(0, 0)

    def incident(
        self, pod: str = "app-ft-0", exit_code: int = 139, ago: float = 0.0
    ) -> api.Incident:
        """A crash of a free-threaded pod, added to what the shell observes."""
        inc = api.Incident(
            pod=pod, exit_code=exit_code, time=rfc3339(self.now - timedelta(seconds=ago))
        )
        self.incidents = (*self.incidents, inc)
        return inc

    def analysis_round(self, *phases: str, names: tuple[str, ...] = ()) -> AnalysisRound:
        """A completed analysis round at `now`, one result per phase (metric names m0, m1...)."""
        when = rfc3339(self.now)
        results = tuple(
            api.MetricResult(
                name=names[i] if i < len(names) else f"m{i}",
                phase=p,
                free_threaded=1.0 if p != "Inconclusive" else None,
                standard=1.0 if p != "Inconclusive" else None,
                message=p.lower(),
                time=when,
            )
            for i, p in enumerate(phases)
        )
        self.analysis = AnalysisRound(time=when, results=results)
        return self.analysis

    def ft_pods(self, enabled: bool | None = False) -> tuple[PodGil, ...]:
        """PodGil for every Ready free-threaded pod, all in the same GIL state."""
        return tuple(PodGil(pod=f"app-ft-{i}", enabled=enabled) for i in range(self.ft.ready))

    @property
    def ready(self) -> int:
        return self.std.ready + self.ft.ready

    @property
    def replicas(self) -> tuple[int, int]:
        """(standard, free-threaded) desired replicas as live in the cluster."""
        return self.std.replicas, self.ft.replicas

    def events(self, res: Result | None = None) -> list[str]:
        """Reasons of the events of `res` (default: the latest result)."""
        r = res if res is not None else self.history[-1]
        return [e.reason for e in r.events]

    def all_events(self) -> list[str]:
        return [e.reason for r in self.history for e in r.events]
