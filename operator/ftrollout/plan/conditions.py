"""Status conditions: Kubernetes conventions (lastTransitionTime moves only on a status change)."""

from __future__ import annotations

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan.context import Ctx
from ftrollout.plan.types import Observation, rfc3339


def cond(ctx: Ctx, type_: str, status: str, reason: str, message: str) -> None:
    ctx.update(conditions=set_condition(ctx.st.conditions, type_, status, reason, message, ctx.obs))


def set_condition(
    conditions: list[api.Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    obs: Observation,
) -> list[api.Condition]:
    """Kubernetes convention: lastTransitionTime moves only when status changes."""
    old = next((c for c in conditions if c.type == type_), None)
    when = rfc3339(obs.now)
    if old is not None and old.status == status:
        when = old.last_transition_time
    new = api.Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": when,
            "observedGeneration": obs.generation,
        }
    )
    out = [c for c in conditions if c.type != type_]
    out.append(new)
    order = ["Available", "Progressing", "ModeIntegrity", "RaceBudget", "AnalysisHealthy"]
    out.sort(key=lambda c: order.index(c.type) if c.type in order else len(order))
    return out


def progressing_condition(ctx: Ctx) -> None:
    phase = ctx.st.phase
    if phase == Phase.FAILED:
        return  # set where the failure was found, with its own reason
    table: dict[Phase | None, tuple[str, str]] = {
        Phase.PENDING: ("True", "Preparing"),
        Phase.PROGRESSING: ("True", "StepProgressing"),
        Phase.PAUSED: ("Unknown", "Paused"),
        Phase.PROMOTED: ("False", "Promoted"),
        Phase.ROLLED_BACK: ("False", "RolledBack"),
    }
    status, reason = table.get(phase, ("Unknown", "Unknown"))
    cond(ctx, "Progressing", status, reason, ctx.st.message)
