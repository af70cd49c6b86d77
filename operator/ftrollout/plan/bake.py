"""After promotion: the bake, standard replicas kept warm, and guardrails that alert.

A lazy import can bring the GIL back hours after promotion. For `spec.postPromotion.bake`
after promotion (until `status.bakeUntil`) the guardrails keep their Rollback action; after it,
and from promotion on without a bake, a breach only alerts: the `PostPromotion` condition goes
False with the breach as its reason, a Warning Event says it once, and the operator's
`ftrollout_rollout_gil_enabled_pods` gauge feeds the chart's alert. The phase stays Promoted
throughout; `status.bakeUntil` and the condition tell baking from baked.

`spec.postPromotion.standardReplicas` standard pods stay up through the last step (100 %) and
the bake, on top of the N free-threaded ones: a rollback during the bake starts from warm
pods, and analysis keeps comparing both tracks (`status.analysis.lastComparison`).
"""

from __future__ import annotations

from datetime import timedelta

from ftrollout.model.api import Condition, GuardAction, Phase
from ftrollout.plan.conditions import cond
from ftrollout.plan.context import Ctx
from ftrollout.plan.types import parse_time, rfc3339

CONDITION = "PostPromotion"
REASON_BAKING = "Baking"
REASON_BAKED = "Baked"
REASON_NO_BAKE = "NoBake"
REASON_GIL = "GILFallbackAfterPromotion"
REASON_RACES = "RaceBudgetAfterPromotion"


def baking(ctx: Ctx) -> bool:
    """Promoted and the bake not over yet (a bake removed from the spec ends it)."""
    st = ctx.st
    if st.phase != Phase.PROMOTED or st.bake_until is None:
        return False
    if ctx.spec.post_promotion.bake is None:
        return False
    return ctx.obs.now < parse_time(st.bake_until)


def guard_acts(ctx: Ctx, action: GuardAction) -> bool:
    """Whether a breached guardrail takes its action now (otherwise it only alerts after
    promotion). A Pause has nothing to hold once every replica is free-threaded: it alerts."""
    if ctx.st.phase in (Phase.PROGRESSING, Phase.PAUSED):
        return True
    return action == GuardAction.ROLLBACK and baking(ctx)


def warm_standard(ctx: Ctx, weight: int) -> int:
    """Standard replicas kept up at `weight`: at 100 % (the last step, and Promoted while
    baking), spec.postPromotion.standardReplicas; otherwise none beyond the split."""
    if weight < 100:
        return 0
    if ctx.st.phase == Phase.PROMOTED and not baking(ctx):
        return 0
    return ctx.spec.post_promotion.standard_replicas


def post_promotion(ctx: Ctx) -> None:
    """Runs after the steps: starts the bake on promotion, ends it, and alerts on breaches
    after it."""
    st = ctx.st
    if st.phase != Phase.PROMOTED:
        if st.bake_until is not None:
            ctx.update(bake_until=None)
        if any(c.type == CONDITION for c in st.conditions):
            ctx.update(conditions=[c for c in st.conditions if c.type != CONDITION])
        return
    seconds = ctx.spec.post_promotion.bake_seconds
    if st.bake_until is None and seconds is not None and st.promoted_at is not None:
        until = parse_time(st.promoted_at) + timedelta(seconds=seconds)
        ctx.update(bake_until=rfc3339(until))
        if ctx.obs.now < until:
            warm = ctx.spec.post_promotion.standard_replicas
            ctx.event(
                "Normal",
                "BakeStarted",
                f"baking until {ctx.st.bake_until}: guardrails still roll back"
                + (f"; {warm} standard replicas kept warm" if warm else ""),
            )
    breaches = _breaches(ctx)
    old = next((c for c in st.conditions if c.type == CONDITION), None)
    if baking(ctx):
        assert ctx.st.bake_until is not None
        left = parse_time(ctx.st.bake_until).timestamp() - ctx.obs.now.timestamp()
        ctx.requeue.append(max(1.0, left))
        if breaches:  # only a Pause action gets here: a Rollback rolled back already
            _alert(ctx, breaches, old, "during the bake")
            return
        cond(ctx, CONDITION, "Unknown", REASON_BAKING, f"baking until {ctx.st.bake_until}")
        return
    if old is not None and old.reason == REASON_BAKING:
        ctx.event("Normal", "BakeComplete", "bake complete: guardrails alert from now on")
    if breaches:
        _alert(ctx, breaches, old, "after promotion")
        return
    if ctx.st.bake_until is not None:
        cond(ctx, CONDITION, "True", REASON_BAKED, f"baked until {ctx.st.bake_until}")
    else:
        cond(ctx, CONDITION, "True", REASON_NO_BAKE, "promoted without a bake")


def _breaches(ctx: Ctx) -> list[tuple[str, str]]:
    g = ctx.spec.guardrails
    st = ctx.st
    out = []
    if st.gil.enabled > g.gil_fallback.max_pods:
        modules = st.gil.fallback_modules
        out.append(
            (
                REASON_GIL,
                f"{st.gil.enabled} free-threaded pod(s) run with the GIL on (maxPods "
                f"{g.gil_fallback.max_pods})"
                + (f"; modules: {', '.join(modules)}" if modules else ""),
            )
        )
    races = st.races
    if races.incidents > g.race_budget.max_incidents:
        out.append(
            (
                REASON_RACES,
                f"{races.incidents} free-threaded incidents in {races.window} exceed the "
                f"budget of {g.race_budget.max_incidents}",
            )
        )
    return out


def _alert(ctx: Ctx, breaches: list[tuple[str, str]], old: Condition | None, when: str) -> None:
    # Each breach is announced once: the condition's message names the ones already said.
    said = old.message if old is not None and old.status == "False" else ""
    for reason, m in breaches:
        if f"{reason}:" not in said:
            ctx.event("Warning", reason, f"{when}, no rollback: {m}")
    message = f"{when}, no rollback: " + "; ".join(f"{r}: {m}" for r, m in breaches)
    cond(ctx, CONDITION, "False", breaches[0][0], message)
