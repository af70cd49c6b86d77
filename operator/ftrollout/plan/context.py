"""The scratch state of one plan() call: the status being built, events and requeues."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftrollout.model import api
from ftrollout.plan.types import Event, EventType, Observation


@dataclass
class Ctx:
    """Mutable scratch state of one plan() call; only plan() sees it."""

    spec: api.RolloutSpec
    obs: Observation
    st: api.RolloutStatus
    events: list[Event] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)
    set_paused: bool | None = None
    run_preflight: bool = False
    route_writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # spec.trafficRouting removed while this revision's steps ran with it (`routing.hold_removed`)
    routing_removed: bool = False

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def update(self, **changes: object) -> None:
        self.st = self.st.model_copy(update=changes)

    def pause(self, paused: bool) -> None:
        """spec.paused is written by the shell after the plan: the rest of this plan reads it
        as it will be, so a pause holds the step in the very reconcile that records it."""
        self.set_paused = paused
        self.spec = self.spec.model_copy(update={"paused": paused})
