"""The pure rollout state machine: spec + observations + status -> replicas, status, events.

No I/O here. The shell (`handlers.py`) observes the cluster and Prometheus, calls `plan`, and
applies the result; a result equal to what is already there means no write at all.

Capacity rule (DESIGN "Traffic split"): with N the target's replicas when the revision began,
the standard track is only lowered to `N - ready free-threaded`, and the free-threaded track is
only lowered to `N - ready standard`. Ready capacity therefore never drops below N because of
the operator, whatever order the pods become Ready in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ftrollout import api
from ftrollout.api import Phase, RollbackReason
from ftrollout.durations import format_duration
from ftrollout.workloads import split

ACTIONS = ("promote", "promote-full", "pause", "resume", "rollback", "retry")

EventType = Literal["Normal", "Warning"]


FIELD_MANAGER = "ftrollout"


@dataclass(frozen=True)
class Workload:
    """What the plan needs of a Deployment: desired and ready replicas."""

    replicas: int
    ready: int
    # Field manager that last set spec.replicas (from managedFields), when known.
    replicas_manager: str | None = None


@dataclass(frozen=True)
class PodGil:
    """GIL state of one free-threaded pod; enabled None = not known (yet)."""

    pod: str
    enabled: bool | None
    modules: tuple[str, ...] = ()
    build: bool | None = None  # False: the interpreter is not a free-threading build at all


@dataclass(frozen=True)
class AnalysisRound:
    """One completed round of every metric, computed by the analysis loop."""

    time: str
    results: tuple[api.MetricResult, ...]


@dataclass(frozen=True)
class Observation:
    now: datetime
    generation: int
    revision: str | None  # None when the target is missing
    target: Workload | None
    twin: Workload | None
    pods: tuple[PodGil, ...] = ()
    incidents: tuple[api.Incident, ...] = ()
    analysis: AnalysisRound | None = None
    action: str | None = None
    preflight: api.PreflightStatus | None = None
    spec_error: api.SpecError | None = None


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Result:
    status: api.RolloutStatus
    target_replicas: int | None  # None: leave the target alone
    twin_replicas: int | None  # None: leave the twin alone (or do not create it)
    events: tuple[Event, ...] = ()
    clear_action: bool = False
    set_paused: bool | None = None  # pause/resume actions flip spec.paused
    requeue_after: float | None = None  # seconds until the plan wants to look again
    run_preflight: bool = False


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class _Ctx:
    """Mutable scratch state of one plan() call; only plan() sees it."""

    spec: api.RolloutSpec
    obs: Observation
    st: api.RolloutStatus
    events: list[Event] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)
    set_paused: bool | None = None
    run_preflight: bool = False

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def update(self, **changes: object) -> None:
        self.st = self.st.model_copy(update=changes)


# ------------------------------------------------------------------------------ entry


def plan(spec: api.RolloutSpec | None, status: api.RolloutStatus, obs: Observation) -> Result:
    if spec is None or obs.spec_error is not None:
        return _invalid_spec(status, obs)
    ctx = _Ctx(spec=spec, obs=obs, st=status)
    now = rfc3339(obs.now)

    if obs.target is None or obs.revision is None:
        return _target_missing(ctx)

    # First sight, or a new revision (target template or spec.freeThreaded changed).
    if ctx.st.revision is None or ctx.st.phase is None:
        _start_revision(ctx, n=obs.target.replicas, first=True)
    elif ctx.st.revision != obs.revision:
        _start_revision(ctx, n=ctx.st.replicas.target, first=False)
    elif ctx.st.phase == Phase.FAILED and _failed_for_spec_or_target(ctx.st):
        # The spec or target became valid again: carry on from where the status says. A
        # rollback stays a rollback (status.rollback is cleared only by retry/new revision).
        if ctx.st.rollback is not None:
            rb = ctx.st.rollback
            ctx.update(
                phase=Phase.ROLLED_BACK, message=f"rolled back ({rb.reason.value}): {rb.message}"
            )
        elif ctx.st.promoted_at is not None:  # a promotion stays a promotion
            ctx.update(
                phase=Phase.PROMOTED,
                message=f"promoted: all {ctx.st.replicas.target} replicas free-threaded",
            )
        else:
            ctx.update(phase=Phase.PROGRESSING if ctx.st.step_index is not None else Phase.PENDING)

    _follow_external_scale(ctx)
    _handle_action(ctx)
    _observe_guardrails(ctx, now)
    _observe_analysis(ctx, now)
    _advance(ctx, now)
    return _finish(ctx)


def _failed_for_spec_or_target(st: api.RolloutStatus) -> bool:
    cond = next((c for c in st.conditions if c.type == "Progressing"), None)
    return cond is not None and cond.reason in ("InvalidSpec", "TargetNotFound")


# --------------------------------------------------------------------- special cases


def _invalid_spec(status: api.RolloutStatus, obs: Observation) -> Result:
    err = obs.spec_error
    message = str(err) if err is not None else "spec is missing"
    conditions = set_condition(
        status.conditions, "Progressing", "False", "InvalidSpec", message, obs
    )
    new = status.model_copy(
        update={
            "phase": Phase.FAILED,
            "message": f"invalid spec: {message}",
            "conditions": conditions,
            "observed_generation": obs.generation,
        }
    )
    events: list[Event] = []
    if status.phase != Phase.FAILED or status.message != new.message:
        events.append(Event("Warning", "InvalidSpec", message))
    if obs.action is not None:
        events.append(_action_ignored(obs.action, "the spec is invalid"))
    # Never touch replicas on bad input: capacity stays where it is.
    return Result(
        status=new,
        target_replicas=None,
        twin_replicas=None,
        events=tuple(events),
        clear_action=obs.action is not None,
    )


def _action_ignored(action: str, why: str) -> Event:
    return Event("Warning", "ActionIgnored", f"action {action!r} ignored: {why}")


def _target_missing(ctx: _Ctx) -> Result:
    name = ctx.spec.target_ref.name
    message = f"target Deployment {name!r} not found in this namespace"
    if ctx.st.phase != Phase.FAILED or ctx.st.message != message:
        ctx.event("Warning", "TargetNotFound", message)
    if ctx.obs.action is not None:
        ctx.events.append(_action_ignored(ctx.obs.action, "the target Deployment is missing"))
    ctx.update(
        phase=Phase.FAILED,
        message=message,
        conditions=set_condition(
            ctx.st.conditions, "Progressing", "False", "TargetNotFound", message, ctx.obs
        ),
        observed_generation=ctx.obs.generation,
    )
    return _finish(ctx, touch_replicas=False)


# --------------------------------------------------------------------------- phases


def _start_revision(ctx: _Ctx, n: int, first: bool) -> None:
    assert ctx.obs.revision is not None
    if first:
        msg = f"started: {n} replicas, revision {ctx.obs.revision}"
        ctx.event("Normal", "RolloutStarted", msg)
    elif ctx.obs.revision == ctx.st.revision:  # retry: its own Retry event says so
        msg = f"retry: standard back to {n}, steps start again from 0"
    else:
        msg = (
            f"new revision {ctx.obs.revision} (was {ctx.st.revision}): standard back to {n}, "
            "steps start again from 0"
        )
        ctx.event("Normal", "NewRevision", msg)
    ctx.update(
        revision=ctx.obs.revision,
        phase=Phase.PENDING,
        step_index=None,
        weight=0,
        step_started_at=None,
        replicas=ctx.st.replicas.model_copy(update={"target": n}),
        analysis=api.AnalysisStatus(),
        races=api.RaceStatus(),
        rollback=None,
        promoted_at=None,
        preflight=None if not first else ctx.st.preflight,
        message=msg,
    )


def _follow_external_scale(ctx: _Ctx) -> None:
    """Someone ran `kubectl scale` on the target: take the new value as the new total N.

    Only while a split is in force; the value the operator last wrote is in status, so a
    difference means a person or an autoscaler changed it.
    """
    target = ctx.obs.target
    assert target is not None
    last = ctx.st.replicas
    if ctx.st.phase not in (Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING):
        return
    if last.standard == 0 and last.free_threaded == 0:
        return  # nothing written yet
    if target.replicas_manager == FIELD_MANAGER:
        return  # the apiserver says the value is ours, whatever status may have missed
    if target.replicas_manager is not None and target.replicas != last.target:
        _take_new_total(ctx, target.replicas)
        return
    # The operator's own last write may have landed while its status write did not, and the
    # pods may have moved on since: a value between the last write in status and what it
    # would write now is one of its own writes in flight, not someone else's.
    lo, hi = sorted((last.standard, _target_set(ctx)))
    if lo <= target.replicas <= hi:
        return
    if target.replicas != last.target:
        _take_new_total(ctx, target.replicas)


def _take_new_total(ctx: _Ctx, new_n: int) -> None:
    last = ctx.st.replicas
    target = ctx.obs.target
    assert target is not None
    ctx.event(
        "Normal",
        "TargetScaled",
        f"target scaled to {target.replicas} by someone else: total replicas {last.target} -> "
        f"{new_n}, split recomputed at the current step",
    )
    ctx.update(replicas=last.model_copy(update={"target": new_n}))


def _handle_action(ctx: _Ctx) -> None:
    action = ctx.obs.action
    if action is None:
        return
    st = ctx.st
    if action not in ACTIONS:
        ctx.event(
            "Warning",
            "UnknownAction",
            f"annotation freethreaded.dev/action={action!r} ignored: use one of "
            + ", ".join(ACTIONS),
        )
        return
    if action == "rollback":
        if st.phase == Phase.ROLLED_BACK:
            ctx.event("Normal", "ActionIgnored", "rollback: already rolled back")
        else:
            _rollback(ctx, RollbackReason.MANUAL, "rollback requested by the user")
    elif action == "retry":
        if st.phase in (Phase.ROLLED_BACK, Phase.FAILED):
            ctx.event("Normal", "Retry", "retry requested: steps start again from 0")
            _start_revision(ctx, n=st.replicas.target, first=False)
        else:
            ctx.event("Normal", "ActionIgnored", f"retry: nothing to retry in phase {st.phase}")
    elif action == "pause":
        ctx.set_paused = True
        ctx.event("Normal", "PauseRequested", "pause requested: holding at the current step")
    elif action == "resume":
        ctx.set_paused = False
        ctx.event("Normal", "ResumeRequested", "resume requested")
        if _waiting_for_promote(ctx):
            _promote_step(ctx, "resume")
        elif st.phase == Phase.PAUSED and st.message.startswith("paused ("):
            # Lift a guardrail / inconclusive hold; guardrails below re-hold if still breached.
            ctx.update(phase=Phase.PROGRESSING, message="resumed by the user")
    elif action in ("promote", "promote-full"):
        if st.phase in (Phase.ROLLED_BACK, Phase.PROMOTED, Phase.FAILED):
            ctx.event("Normal", "ActionIgnored", f"{action}: not possible in phase {st.phase}")
        elif action == "promote-full":
            # Promoted at once: the capacity rule still scales standard down only as
            # free-threaded pods become Ready.
            _promote_full_done(ctx, "promote-full: skipping the remaining steps and pauses")
        else:
            _promote_step(ctx, "promote")


def _waiting_for_promote(ctx: _Ctx) -> bool:
    st = ctx.st
    if st.step_index is None or st.step_started_at is None:
        return False
    return ctx.spec.steps[st.step_index].pause.seconds is None


def _promote_step(ctx: _Ctx, why: str) -> None:
    st = ctx.st
    if st.step_index is None:
        ctx.update(step_index=0, weight=ctx.spec.steps[0].weight, step_started_at=None)
        ctx.event("Normal", "StepPromoted", f"{why}: starting step 1")
        return
    if st.step_index >= len(ctx.spec.steps) - 1:
        if st.step_started_at is not None:
            _promote_full_done(ctx, f"{why}: last step promoted")
        else:
            ctx.event("Normal", "ActionIgnored", f"{why}: last step not reached yet")
        return
    nxt = st.step_index + 1
    ctx.update(
        step_index=nxt,
        weight=ctx.spec.steps[nxt].weight,
        step_started_at=None,
        phase=Phase.PROGRESSING,
    )
    ctx.event("Normal", "StepPromoted", f"{why}: to step {nxt + 1} ({ctx.spec.steps[nxt].weight}%)")


def _promote_full_done(ctx: _Ctx, message: str) -> None:
    ctx.update(
        phase=Phase.PROMOTED,
        weight=100,
        step_index=len(ctx.spec.steps) - 1,
        promoted_at=rfc3339(ctx.obs.now),
    )
    ctx.update(message=f"promoted: all {ctx.st.replicas.target} replicas free-threaded")
    ctx.event("Normal", "Promoted", message)


def _rollback(ctx: _Ctx, reason: RollbackReason, message: str) -> None:
    now = rfc3339(ctx.obs.now)
    ctx.update(
        phase=Phase.ROLLED_BACK,
        weight=0,
        step_started_at=None,
        rollback=api.RollbackStatus(reason=reason, message=message, time=now),
        message=f"rolled back ({reason.value}): {message}",
    )
    ctx.event("Warning", "RolledBack", f"{reason.value}: {message}")


# ----------------------------------------------------------------------- guardrails


def _observe_guardrails(ctx: _Ctx, now: str) -> None:
    # While Pending (before step 1 of this revision) free-threaded pods, if any, are left over
    # from the previous revision or attempt: they are shown but neither acted on nor counted.
    active = ctx.st.phase in (Phase.PROGRESSING, Phase.PAUSED)
    g = ctx.spec.guardrails

    # GIL / mode integrity.
    pods = ctx.obs.pods
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
    _cond(ctx, "ModeIntegrity", *integrity)
    if active and len(enabled) > g.gil_fallback.max_pods:
        msg = (
            f"{len(enabled)} free-threaded pod(s) run with the GIL on (maxPods "
            f"{g.gil_fallback.max_pods})"
            + (f"; modules: {', '.join(modules)}" if modules else "")
            + f"; pods: {culprits}"
        )
        _guard_act(ctx, g.gil_fallback.action, RollbackReason.GIL_FALLBACK, msg)

    # Race budget over a sliding window.
    budget = g.race_budget
    cutoff = ctx.obs.now.timestamp() - budget.window_seconds
    known = {(i.pod, i.time) for i in ctx.st.races.recent}
    merged = list(ctx.st.races.recent)
    seen = set(known)
    # Pending, or Failed = blocked by the dependency gate before step 1: not this revision's.
    incoming = ctx.obs.incidents if ctx.st.phase not in (Phase.PENDING, Phase.FAILED) else ()
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
        (i for i in merged if parse_time(i.time).timestamp() > cutoff), key=lambda i: i.time
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
    )
    ctx.update(races=races)
    if len(recent) > budget.max_incidents:
        _cond(
            ctx,
            "RaceBudget",
            "False",
            "BudgetExceeded",
            f"{len(recent)} incidents in {budget.window} (budget {budget.max_incidents})",
        )
        if active:
            codes = sorted({str(i.exit_code) for i in recent if i.exit_code is not None})
            msg = (
                f"{len(recent)} free-threaded incidents in {budget.window} exceed the budget of "
                f"{budget.max_incidents}" + (f" (exit codes {', '.join(codes)})" if codes else "")
            )
            _guard_act(ctx, budget.action, RollbackReason.RACE_BUDGET, msg)
    else:
        _cond(
            ctx,
            "RaceBudget",
            "True",
            "WithinBudget",
            f"{len(recent)} of {budget.max_incidents} incidents in {budget.window}",
        )


def _guard_act(ctx: _Ctx, action: api.GuardAction, reason: RollbackReason, msg: str) -> None:
    if ctx.st.phase == Phase.ROLLED_BACK:
        return  # another guardrail already rolled back in this reconcile: one rollback, one reason
    if action == api.GuardAction.ROLLBACK:
        _rollback(ctx, reason, msg)
        return
    # Several holds may overlap: each is named in the message, each is announced once.
    held = ctx.st.phase == Phase.PAUSED and ctx.st.message.startswith("paused (")
    if held and f"paused ({reason.value})" in ctx.st.message:
        return
    prefix = f"{ctx.st.message}; " if held else ""
    ctx.update(phase=Phase.PAUSED, message=f"{prefix}paused ({reason.value}): {msg}")
    ctx.event("Warning", "GuardrailPaused", f"{reason.value}: {msg}")


# ------------------------------------------------------------------------- analysis


def _observe_analysis(ctx: _Ctx, now: str) -> None:
    analysis = ctx.spec.analysis
    if analysis is None or not analysis.metrics:
        _cond(ctx, "AnalysisHealthy", "True", "NoAnalysis", "no metrics configured")
        return
    rnd = ctx.obs.analysis
    st = ctx.st.analysis
    if rnd is not None and rnd.time != st.last_round and ctx.st.phase == Phase.PENDING:
        # A round that finished before step 1 of this revision measured the previous
        # revision's pods: mark it seen so it never counts for this one.
        st = st.model_copy(update={"last_round": rnd.time})
        ctx.update(analysis=st)
    if (
        rnd is not None
        and rnd.time != st.last_round
        and ctx.st.phase
        in (
            Phase.PROGRESSING,
            Phase.PAUSED,
        )
    ):
        failed = [r for r in rnd.results if r.phase == "Failed"]
        inconclusive = [r for r in rnd.results if r.phase == "Inconclusive"]
        failed_rounds = st.failed_rounds + (1 if failed else 0)
        inconclusive_rounds = st.inconclusive_rounds + 1 if inconclusive else 0
        st = api.AnalysisStatus(
            failed_rounds=failed_rounds,
            inconclusive_rounds=inconclusive_rounds,
            last_round=rnd.time,
            metrics=list(rnd.results),
        )
        ctx.update(analysis=st)
        if failed:
            detail = _detail(failed)
            ctx.event(
                "Warning",
                "AnalysisFailed",
                f"round failed ({failed_rounds}/{analysis.failure_limit} tolerated): {detail}",
            )
            if failed_rounds > analysis.failure_limit:
                _rollback(
                    ctx,
                    RollbackReason.ANALYSIS_FAILED,
                    f"{failed_rounds} failed analysis rounds (failureLimit "
                    f"{analysis.failure_limit}); last: {detail}",
                )
        elif inconclusive:
            detail = _detail(inconclusive)
            if analysis.on_inconclusive == api.OnInconclusive.ROLLBACK:
                _rollback(ctx, RollbackReason.ANALYSIS_INCONCLUSIVE, f"no usable data: {detail}")
            # With Pause, the hold starts in _advance once the step's pause is over: before
            # that the step cannot advance anyway, and the first round of a step often finds
            # no series yet for its new pods (a hold + Warning on every healthy rollout).
        elif ctx.st.phase == Phase.PAUSED and ctx.st.message.startswith(
            "paused (AnalysisInconclusive)"
        ):
            other = ctx.st.message.find("; paused (")
            if other >= 0:  # a guardrail hold came on top: it stays until resumed
                ctx.update(message=ctx.st.message[other + 2 :])
                ctx.event("Normal", "AnalysisResumed", "analysis data is back; still held")
            else:
                ctx.update(phase=Phase.PROGRESSING, message="analysis data is back: resuming")
                ctx.event("Normal", "AnalysisResumed", "analysis data is back: resuming")

    results = ctx.st.analysis.metrics
    if not results:
        _cond(ctx, "AnalysisHealthy", "Unknown", "NoRoundYet", "waiting for the first round")
    elif any(r.phase == "Failed" for r in results):
        bad = ", ".join(r.name for r in results if r.phase == "Failed")
        _cond(ctx, "AnalysisHealthy", "False", "MetricsFailed", f"failed: {bad}")
    elif any(r.phase == "Inconclusive" for r in results):
        bad = ", ".join(r.name for r in results if r.phase == "Inconclusive")
        _cond(ctx, "AnalysisHealthy", "Unknown", "Inconclusive", f"no usable data: {bad}")
    else:
        _cond(ctx, "AnalysisHealthy", "True", "MetricsSuccessful", "all metrics successful")


def _detail(results: list[api.MetricResult]) -> str:
    """What a set of metric results says, for a message or an Event."""
    return "; ".join(f"{r.name}: {r.message}" for r in results)


def _analysis_ok_since(ctx: _Ctx, since: str) -> bool:
    analysis = ctx.spec.analysis
    if analysis is None or not analysis.metrics:
        return True
    st = ctx.st.analysis
    if st.last_round is None or parse_time(st.last_round) < parse_time(since):
        return False
    names = {m.name for m in analysis.metrics}
    ok = {r.name for r in st.metrics if r.phase == "Successful"}
    return names <= ok


# ---------------------------------------------------------------------------- steps


def _desired(ctx: _Ctx) -> tuple[int, int]:
    n = ctx.st.replicas.target
    phase = ctx.st.phase
    if phase == Phase.PROMOTED:
        return 0, n
    if phase in (Phase.ROLLED_BACK, Phase.PENDING, Phase.FAILED) or ctx.st.step_index is None:
        return n, 0
    return split(n, ctx.spec.steps[ctx.st.step_index].weight)


def _advance(ctx: _Ctx, now: str) -> None:
    obs = ctx.obs
    assert obs.target is not None
    n = ctx.st.replicas.target
    twin = obs.twin or Workload(0, 0)

    if ctx.st.phase == Phase.PENDING:
        gate = ctx.spec.guardrails.dependency_gate
        if gate is not None and gate.modules and not _preflight_settled(ctx):
            return
        if ctx.spec.paused:
            ctx.update(message="paused by spec.paused before step 1")
            return
        if obs.target.ready >= n and obs.target.replicas >= n:
            first = ctx.spec.steps[0]
            ctx.update(
                phase=Phase.PROGRESSING,
                step_index=0,
                weight=first.weight,
                step_started_at=None,
                races=ctx.st.races.model_copy(update={"since": now}),
                message=f"step 1/{len(ctx.spec.steps)}: scaling free-threaded to {first.weight}%",
            )
            ctx.event("Normal", "StepStarted", f"step 1 ({first.weight}%)")
        else:
            ctx.update(message=f"waiting for {n} Ready standard replicas before step 1")
            return

    if ctx.st.phase not in (Phase.PROGRESSING, Phase.PAUSED) or ctx.st.step_index is None:
        return
    idx = ctx.st.step_index
    step = ctx.spec.steps[idx]
    std_d, ft_d = split(n, step.weight)
    reached = twin.ready >= ft_d and twin.replicas == ft_d and obs.target.replicas == std_d
    total = len(ctx.spec.steps)
    if not reached:
        if not ctx.spec.paused and ctx.st.phase == Phase.PROGRESSING:
            ctx.update(
                message=f"step {idx + 1}/{total} ({step.weight}%): scaling to {std_d} standard "
                f"+ {ft_d} free-threaded"
            )
        return
    if ctx.st.step_started_at is None:
        ctx.update(step_started_at=now)
        ctx.event(
            "Normal",
            "StepReached",
            f"step {idx + 1}/{total} ({step.weight}%): {ft_d} free-threaded Ready",
        )
    if ctx.spec.paused:
        # A guardrail or inconclusive-analysis hold keeps its own message (it is how that hold
        # is recognised on the next reconcile).
        if not (ctx.st.phase == Phase.PAUSED and ctx.st.message.startswith("paused (")):
            ctx.update(
                phase=Phase.PAUSED, message=f"paused by spec.paused at step {idx + 1}/{total}"
            )
        return
    if ctx.st.phase == Phase.PAUSED and not ctx.st.message.startswith("paused by spec.paused"):
        return  # a guardrail or inconclusive analysis holds the step
    started = ctx.st.step_started_at
    assert started is not None
    pause = step.pause.seconds
    if pause is None:
        ctx.update(
            phase=Phase.PAUSED,
            message=f"step {idx + 1}/{total} ({step.weight}%) reached: waiting for "
            "`kubectl ftr promote`",
        )
        return
    elapsed = obs.now.timestamp() - parse_time(started).timestamp()
    if elapsed < pause:
        ctx.update(
            phase=Phase.PROGRESSING,
            message=f"step {idx + 1}/{total} ({step.weight}%): pausing "
            f"{format_duration(pause)} from {started}",
        )
        ctx.requeue.append(pause - elapsed)
        return
    if not _analysis_ok_since(ctx, started):
        inconclusive = [r for r in ctx.st.analysis.metrics if r.phase == "Inconclusive"]
        if inconclusive and ctx.spec.analysis is not None:
            detail = _detail(inconclusive)
            ctx.update(phase=Phase.PAUSED, message=f"paused (AnalysisInconclusive): {detail}")
            ctx.event("Warning", "AnalysisInconclusive", f"holding the step: {detail}")
            return
        ctx.update(
            phase=Phase.PROGRESSING,
            message=f"step {idx + 1}/{total} ({step.weight}%): waiting for a successful "
            "analysis round",
        )
        return
    if idx == total - 1:
        _promote_full_done(ctx, f"step {total}/{total} (100%) complete")
        return
    nxt = idx + 1
    ctx.update(
        step_index=nxt,
        weight=ctx.spec.steps[nxt].weight,
        step_started_at=None,
        phase=Phase.PROGRESSING,
        message=f"step {nxt + 1}/{total} ({ctx.spec.steps[nxt].weight}%): scaling",
    )
    ctx.event("Normal", "StepStarted", f"step {nxt + 1} ({ctx.spec.steps[nxt].weight}%)")
    _advance(ctx, now)


def _preflight_settled(ctx: _Ctx) -> bool:
    """Whether the dependency gate lets the rollout start; runs the Job when needed."""
    gate = ctx.spec.guardrails.dependency_gate
    assert gate is not None
    pf = ctx.obs.preflight or ctx.st.preflight
    image = ctx.spec.free_threaded.image
    if pf is None or pf.image != image:
        ctx.run_preflight = True
        ctx.requeue.append(2.0)
        ctx.update(message=f"dependency gate: checking {', '.join(gate.modules)} in {image}")
        return False
    if pf != ctx.st.preflight:
        ctx.update(preflight=pf)
        if pf.phase in ("Passed", "Warned"):
            ctx.event("Normal", "PreflightPassed", pf.message)
        elif pf.phase == "Failed":
            ctx.event("Warning", "DependencyGate", pf.message)
    if pf.phase in ("Pending", "Running"):
        ctx.run_preflight = True
        ctx.requeue.append(2.0)
        ctx.update(message=f"dependency gate: {pf.message or 'running'}")
        return False
    if pf.phase == "Failed" and gate.action == api.GateAction.BLOCK:
        msg = f"blocked by the dependency gate: {pf.message}"
        ctx.update(phase=Phase.FAILED, message=msg)
        _cond(ctx, "Progressing", "False", "DependencyGate", msg)
        return False
    return True


# --------------------------------------------------------------------------- finish


def _finish(ctx: _Ctx, touch_replicas: bool = True) -> Result:
    obs = ctx.obs
    target_set: int | None = None
    twin_set: int | None = None
    st = ctx.st
    # Failed here means blocked by the dependency gate (spec/target failures return early or
    # recover first): like a rollback, standard back to N, free-threaded down as it is Ready.
    if touch_replicas and obs.target is not None:
        n = st.replicas.target
        std_d, ft_d = _desired(ctx)
        twin = obs.twin or Workload(0, 0)
        target_set = _target_set(ctx)
        # Never lower the free-threaded track below what Ready standard pods stand in for.
        twin_set = max(ft_d, min(twin.replicas, n - obs.target.ready))
        st = st.model_copy(
            update={
                "replicas": st.replicas.model_copy(
                    update={
                        "standard": target_set,
                        "free_threaded": twin_set,
                        "standard_ready": obs.target.ready,
                        "free_threaded_ready": twin.ready,
                        "ready": obs.target.ready + twin.ready,
                    }
                )
            }
        )
        ctx.st = st
        ready = obs.target.ready + twin.ready
        if ready >= n:
            _cond(ctx, "Available", "True", "CapacityMet", f"{ready}/{n} replicas Ready")
        else:
            _cond(ctx, "Available", "False", "CapacityLow", f"{ready}/{n} replicas Ready")
        if target_set != std_d or twin_set != ft_d:
            ctx.requeue.append(5.0)
    _progressing_condition(ctx)
    ctx.update(observed_generation=obs.generation)
    requeue = min(ctx.requeue) if ctx.requeue else None
    return Result(
        status=ctx.st,
        target_replicas=target_set,
        twin_replicas=twin_set,
        events=tuple(ctx.events),
        clear_action=obs.action is not None,
        set_paused=ctx.set_paused,
        requeue_after=requeue,
        run_preflight=ctx.run_preflight,
    )


def _target_set(ctx: _Ctx) -> int:
    """Standard replicas to write: never below what Ready free-threaded pods stand in for."""
    assert ctx.obs.target is not None
    std_d, _ = _desired(ctx)
    twin_ready = ctx.obs.twin.ready if ctx.obs.twin is not None else 0
    n = ctx.st.replicas.target
    return max(std_d, min(ctx.obs.target.replicas, n - twin_ready))


def _progressing_condition(ctx: _Ctx) -> None:
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
    _cond(ctx, "Progressing", status, reason, ctx.st.message)


# ------------------------------------------------------------------------ conditions


def _cond(ctx: _Ctx, type_: str, status: str, reason: str, message: str) -> None:
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
