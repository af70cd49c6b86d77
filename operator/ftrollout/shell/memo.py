"""Skip the plan of a reconcile whose world has not changed since the last one that wrote nothing.

The planner is a function of the rollout (its resourceVersion and the status it reads), the
observation built from the watch cache, and the clock. A plan that wrote nothing says when the
clock alone would change it (`requeue_after`, a property test holds it to that:
`test_plan_properties.check_quiet_until_due`): until then the same rollout and observation plan
the same, so the look or poke that finds them is answered from here, without the plan, the
status dump or the writes' checks (issue 22: at 1000 paused rollouts the hourly looks were a
third of the idle operator's CPU). Plans that wrote something, or that routes, a failed baseline
write or a preflight Job still wait on, are never remembered: the next reconcile runs in full.
A memo is trusted for at most MEMO_SECONDS: a clock-driven detail the planner does not announce
(the probe counters of gone pods, kept for the race window) is acted on within that time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ftrollout.plan import Observation

MEMO_SECONDS = 6 * 3600.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Memo:
    resource_version: str
    # The spec as read: the same dict as the body's until the next event (no copy is kept);
    # compared too, so a spec edited under an unchanged resourceVersion is never missed.
    spec: Any
    status: dict[str, Any]  # the status the plan read (ours in flight, or the API's)
    observation: Observation  # with the clock left out
    # What the shell acts on beyond the observation (the twin's template, the baseline's):
    # the Deployments' summaries as read, resourceVersions included.
    workloads: tuple[Any, ...]
    # When the clock alone may change the plan: the planner's clock (UTC seconds), so a test
    # that moves it moves this too.
    due: float
    requeue_after: float | None  # what that plan asked for


def timeless(obs: Observation) -> Observation:
    return dataclasses.replace(obs, now=_EPOCH)


def remember(
    resource_version: str,
    spec: Any,
    status: dict[str, Any],
    obs: Observation,
    workloads: tuple[Any, ...],
    requeue_after: float | None,
    now: float,
) -> Memo:
    due = now + (MEMO_SECONDS if requeue_after is None else min(requeue_after, MEMO_SECONDS))
    return Memo(resource_version, spec, status, timeless(obs), workloads, due, requeue_after)


@dataclass(frozen=True)
class Skip:
    delay: float | None  # what the daemon waits for; None: nothing due (the idle look)


def answer(
    memo: Memo | None,
    resource_version: str,
    spec: Any,
    status: dict[str, Any],
    obs: Observation,
    workloads: tuple[Any, ...],
    now: float,
) -> Skip | None:
    """The remembered plan's answer when nothing it read has changed and it is not due; None
    when the plan must run."""
    if memo is None or now >= memo.due:
        return None
    if memo.resource_version != resource_version or memo.spec != spec or memo.status != status:
        return None
    if memo.workloads != workloads or memo.observation != timeless(obs):
        return None
    return Skip(None if memo.requeue_after is None else memo.due - now)
