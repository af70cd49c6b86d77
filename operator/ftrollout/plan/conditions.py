"""Status conditions: Kubernetes conventions (lastTransitionTime moves only on a status change)."""

from __future__ import annotations

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan.context import Ctx
from ftrollout.plan.types import Observation, rfc3339


def held_by_guardrail(st: api.RolloutStatus) -> bool:
    """Paused by a guardrail or an inconclusive analysis (their message says `paused (...)`)."""
    return st.phase == Phase.PAUSED and st.message.startswith("paused (")


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
    order = [
        "Ready",
        "Available",
        "Progressing",
        "ModeIntegrity",
        "RaceBudget",
        "AnalysisHealthy",
    ]
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


def summarise(
    status: api.RolloutStatus,
    obs: Observation,
    baking: bool = False,
    bake_rolls_back: bool = True,
) -> api.RolloutStatus:
    """What `kubectl get`, `kubectl wait` and kstatus-based tools (Flux health checks) read.

    `Ready` follows the kstatus / Flux convention for a resource with a goal: True once the
    rollout reached it (Promoted, all N free-threaded replicas Ready, the bake over), False
    when it ended elsewhere (RolledBack; Failed, with the Progressing reason: InvalidSpec,
    TargetNotFound, DependencyGate...), Unknown while it is on its way (Pending, Progressing,
    Paused, or Promoted with free-threaded pods still becoming Ready or still `baking`: a
    guardrail can still roll it back, so a pipeline gating on Ready must not pass it yet).
    `kubectl wait --for=condition=Ready` thus returns on a promotion that stays,
    `--for=condition=Ready=False` on a rollback or a failure.
    """
    r = status.replicas
    phase = status.phase
    available = next((c for c in status.conditions if c.type == "Available"), None)
    progressing = next((c for c in status.conditions if c.type == "Progressing"), None)
    if phase == Phase.PROMOTED:
        done = r.free_threaded_ready >= r.target
        if not done or available is None or available.status != "True":
            ready, reason = "Unknown", "Promoting"
        elif baking:
            ready, reason = "Unknown", "Baking"
        else:
            ready, reason = "True", "Promoted"
    elif phase == Phase.ROLLED_BACK:
        ready, reason = "False", "RolledBack"
    elif phase == Phase.FAILED:
        ready = "False"
        reason = progressing.reason if progressing is not None else "Failed"
    elif phase is None:
        ready, reason = "Unknown", "Unknown"
    else:
        ready, reason = "Unknown", phase.value
    message = status.message
    if reason == "Promoting":
        message = f"promoted; {r.free_threaded_ready}/{r.target} free-threaded replicas Ready"
    elif reason == "Baking":
        message = f"promoted; baking until {status.bake_until}: " + (
            "a guardrail breach still rolls back"
            if bake_rolls_back
            # Every guardrail action is Pause: once promoted there is nothing to hold.
            else "a guardrail breach only alerts (every guardrail action is Pause)"
        )
    return status.model_copy(
        update={
            "current_step": 0 if status.step_index is None else status.step_index + 1,
            "replicas": r.model_copy(update={"summary": f"{r.ready}/{r.target}"}),
            "conditions": set_condition(status.conditions, "Ready", ready, reason, message, obs),
        }
    )
