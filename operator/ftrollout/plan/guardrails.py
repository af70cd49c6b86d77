"""Guardrails: GIL fallback (mode integrity) and the race budget over a sliding window."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan.actions import rollback
from ftrollout.plan.bake import guard_acts
from ftrollout.plan.conditions import cond
from ftrollout.plan.context import Ctx
from ftrollout.plan.types import parse_time, rfc3339

# A counter is stored as a JSON integer (int64 in the CRD); beyond 2**53 floats lose units anyway.
MAX_PROBE_COUNT = 2**53


def readable_time(text: str) -> bool:
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


def count_probe_incidents(
    baseline: Iterable[api.ProbeCounter],
    readings: Mapping[str, float],
    live_pods: Iterable[str],
    now: datetime,
    cap: int,
    keep_seconds: float,
) -> tuple[list[api.ProbeCounter], list[api.Incident]]:
    """New probe incidents and the next baseline, from each pod's incident counter.

    Only a value above the highest one counted for the pod is new: a lower value later is a
    lagging Prometheus replica (two behind one Service answer 0, 1, 0, 1) or a restarted
    process, never a new incident. At most `cap` incidents are added per pod and observation
    (one beyond the budget already decides; a huge counter must not allocate one per unit).
    Entries of pods that are gone are dropped once they rose longer than `keep_seconds` ago,
    and only while the pod list is known (an operator that has just started may not have seen
    every pod yet, and a lost entry would count the whole counter again).
    """
    known = {c.pod: c for c in baseline}
    out: dict[str, api.ProbeCounter] = dict(known)
    new: list[api.Incident] = []
    when = rfc3339(now)
    for pod, value in sorted(readings.items()):
        if math.isnan(value) or value < 0:
            continue  # not a counter value: nothing to compare
        count = int(min(value, MAX_PROBE_COUNT))
        base = known[pod].count if pod in known else 0
        if count <= base:
            continue
        out[pod] = api.ProbeCounter(pod=pod, count=count, time=when)
        # Distinct times (microseconds apart): an incident is known by (pod, time).
        new.extend(
            api.Incident(pod=pod, source="Probe", time=rfc3339(now + timedelta(microseconds=i)))
            for i in range(min(count - base, cap))
        )
    live = set(live_pods)
    if live:
        cutoff = now.timestamp() - keep_seconds
        for pod, c in list(out.items()):
            if pod not in live and pod not in readings and parse_time(c.time).timestamp() < cutoff:
                del out[pod]
    return sorted(out.values(), key=lambda c: c.pod), new


def observe_guardrails(ctx: Ctx, now: str) -> None:
    # While Pending (before step 1 of this revision) free-threaded pods, if any, are left over
    # from the previous revision or attempt: they are shown but neither acted on nor counted.
    # Once promoted they act only during the bake; afterwards `bake.post_promotion` alerts.
    g = ctx.spec.guardrails

    # GIL / mode integrity: only running pods of this revision (a terminating pod or one of the
    # previous template keeps its last reading, which is not about what now serves traffic).
    pods = [p for p in ctx.obs.pods if p.counts_for(ctx.obs.revision)]
    enabled = [p for p in pods if p.enabled is True or p.build is False]
    disabled = [p for p in pods if p.enabled is False and p.build is not False]
    unknown = [p for p in pods if p.enabled is None and p.build is not False]
    modules = sorted({m for p in enabled for m in p.modules})
    if not pods:
        summary = "-"
    elif enabled:
        summary = f"ON({len(enabled)})"
    elif unknown:
        summary = f"off {len(disabled)}/{len(pods)}"
    else:
        summary = "off"
    gil = api.GilStatus(
        pods=len(pods),
        disabled=len(disabled),
        enabled=len(enabled),
        unknown=len(unknown),
        fallback_modules=modules,
        summary=summary,
    )
    ctx.update(gil=gil)
    if enabled:
        culprits = ", ".join(
            f"{p.pod}"
            + (f" (module {', '.join(p.modules)})" if p.modules else "")
            + (" (not a free-threading build)" if p.build is False else "")
            for p in enabled
        )
        integrity = ("False", "GILFallback", f"GIL enabled in {len(enabled)} pod(s): {culprits}")
    elif unknown or not pods:
        integrity = ("Unknown", "NoData", "GIL state of free-threaded pods not known yet")
    else:
        integrity = (
            "True",
            "GILDisabled",
            f"all {len(pods)} free-threaded pods run without the GIL",
        )
    cond(ctx, "ModeIntegrity", *integrity)
    if guard_acts(ctx, g.gil_fallback.action) and len(enabled) > g.gil_fallback.max_pods:
        msg = (
            f"{len(enabled)} free-threaded pod(s) run with the GIL on (maxPods "
            f"{g.gil_fallback.max_pods})"
            + (f"; modules: {', '.join(modules)}" if modules else "")
            + f"; pods: {culprits}"
        )
        guard_act(ctx, g.gil_fallback.action, RollbackReason.GIL_FALLBACK, msg)

    # Race budget over a sliding window.
    budget = g.race_budget
    cutoff = ctx.obs.now.timestamp() - budget.window_seconds
    # An incident is known by (pod, time): one without a readable time can be neither placed in
    # the window nor told from the next, so it is left out (the shell stamps a crash without
    # finishedAt with the time it first saw it).
    stored = [i for i in ctx.st.races.recent if readable_time(i.time)]
    known = {(i.pod, i.time) for i in stored}
    merged = list(stored)
    seen = set(known)
    # The baseline moves in every phase: counts reached while Pending are not this revision's.
    counters, probed = count_probe_incidents(
        ctx.st.races.probe_counters,
        dict(ctx.obs.probe_counts),
        (p.pod for p in ctx.obs.pods),
        ctx.obs.now,
        cap=budget.max_incidents + 1,
        keep_seconds=budget.window_seconds,
    )
    # Pending, or Failed = blocked by the dependency gate before step 1: not this revision's.
    incoming = (
        tuple(i for i in (*ctx.obs.incidents, *probed) if readable_time(i.time))
        if ctx.st.phase not in (Phase.PENDING, Phase.FAILED)
        else ()
    )
    since = ctx.st.races.since
    if since is not None:  # the shell keeps crashes of an earlier attempt (retry) too
        # Strictly after: times have whole seconds, and a retry right after a rollback starts
        # within the second of the old crashes; new pods cannot crash in the second they are
        # asked for.
        start = parse_time(since).timestamp()
        incoming = tuple(i for i in incoming if parse_time(i.time).timestamp() > start)
    for i in incoming:  # the same incident may be observed twice (watch + list)
        if (i.pod, i.time) not in seen:
            seen.add((i.pod, i.time))
            merged.append(i)
    recent = sorted(
        (i for i in merged if parse_time(i.time).timestamp() > cutoff),
        key=lambda i: parse_time(i.time),
    )
    new = [i for i in recent if (i.pod, i.time) not in known]
    for i in new:
        what = f"exit code {i.exit_code}" if i.exit_code is not None else "probe-reported"
        ctx.event("Warning", "RaceIncident", f"free-threaded pod {i.pod}: {what}")
    if recent:
        oldest = parse_time(recent[0].time).timestamp()
        ctx.requeue.append(max(1.0, oldest + budget.window_seconds - ctx.obs.now.timestamp()))
    races = api.RaceStatus(
        incidents=len(recent),
        budget=budget.max_incidents,
        window=budget.window,
        summary=f"{len(recent)}/{budget.max_incidents}",
        recent=recent,
        since=since,
        probe_counters=counters,
    )
    ctx.update(races=races)
    if len(recent) > budget.max_incidents:
        cond(
            ctx,
            "RaceBudget",
            "False",
            "BudgetExceeded",
            f"{len(recent)} incidents in {budget.window} (budget {budget.max_incidents})",
        )
        if guard_acts(ctx, budget.action):
            codes = sorted({str(i.exit_code) for i in recent if i.exit_code is not None})
            msg = (
                f"{len(recent)} free-threaded incidents in {budget.window} exceed the budget of "
                f"{budget.max_incidents}" + (f" (exit codes {', '.join(codes)})" if codes else "")
            )
            guard_act(ctx, budget.action, RollbackReason.RACE_BUDGET, msg)
    else:
        cond(
            ctx,
            "RaceBudget",
            "True",
            "WithinBudget",
            f"{len(recent)} of {budget.max_incidents} incidents in {budget.window}",
        )


def guard_act(ctx: Ctx, action: api.GuardAction, reason: RollbackReason, msg: str) -> None:
    if ctx.st.phase == Phase.ROLLED_BACK:
        return  # another guardrail already rolled back in this reconcile: one rollback, one reason
    if action == api.GuardAction.ROLLBACK:
        rollback(ctx, reason, msg)
        return
    # Several holds may overlap: each is named in the message, each is announced once.
    held = ctx.st.phase == Phase.PAUSED and ctx.st.message.startswith("paused (")
    if held and f"paused ({reason.value})" in ctx.st.message:
        return
    prefix = f"{ctx.st.message}; " if held else ""
    ctx.update(phase=Phase.PAUSED, message=f"{prefix}paused ({reason.value}): {msg}")
    ctx.event("Warning", "GuardrailPaused", f"{reason.value}: {msg}")
