"""Property tests of the planner: random clusters, steps, Ready lag, people and failures.

A hypothesis `RuleBasedStateMachine` drives the simulator (`simcluster.Sim`: scale-down instant,
scale-up Ready after `lag` reconciles, the worst case for capacity) with random sequences of time
passing, one-shot actions, GIL fallbacks, crashes, analysis rounds, new revisions, spec.paused,
and outside interference (kubectl scale, twin deleted, target missing, invalid spec). After
every reconcile it checks what users rely on:

- ready capacity (standard Ready + free-threaded Ready) never drops below N because of the
  operator; with no outside interference it never drops below N at all; until promotion the
  standard track is asked for at least N - ready free-threaded (lost capacity is restored);
- someone else's scale in any phase is the new N, never written back (RolledBack, Failed,
  Promoted included);
- replica counts written are within 0..N on each track;
- phase is always a valid Phase, and a Progressing/Paused rollout is at a real step whose weight
  status reports;
- RolledBack stays RolledBack until `retry` or a new revision;
- Promoted is reached only from the last step (reached) or through `promote-full`;
- a second reconcile on the same observation changes nothing and emits nothing;
- a user's request seen twice (its removal failed, the operator restarted) is applied once;
- while the Deployment named like the twin is someone else's (no controller, another rollout,
  another controller; with or without this rollout's label) no replica count, baseline, route
  or preflight Job is written and nothing is adopted; once it is gone (or ours again) the
  rollout carries on;
- another rollout on the same target never stops the one that holds the twin (or, with no
  twin, the older one): its every decision is the one it makes alone, guardrails included;
  the other side (no twin, an older rollout claims the target) touches nothing;
- and at the end, from any state, a healthy world plus the documented actions reach Promoted
  (no dead ends).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from planfixtures import NO_PAUSE, step_raw
from simcluster import Sim, Track

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan import ACTIONS, Observation, PodGil, Result, plan
from ftrollout.plan.ownership import REASON_TARGET_CLAIMED, REASON_TWIN_NOT_OWNED
from ftrollout.plan.preflight import gate_key
from ftrollout.plan.twin import split
from ftrollout.plan.types import Claim, Ownership

PAUSES = (None, NO_PAUSE, "0s", "10s", "1m", "5m")
RESULT_PHASES = ("Successful", "Successful", "Failed", "Inconclusive")

# This rollout (Sim's clock starts 2026-01-01) and others that may target the same Deployment.
ME = Claim("canary", "2026-01-01T00:00:00Z")
UID = "uid-canary"
OURS = ("FreeThreadedRollout/canary", UID)
EARLIER = Claim("early", "2025-06-01T00:00:00Z")
LATER = Claim("late", "2026-03-01T00:00:00Z")
# Someone else's Deployment named like the twin: (controller ownerReference, carries this
# rollout's label). None of them may be adopted.
FOREIGN: tuple[tuple[tuple[str, str] | None, bool], ...] = (
    (None, False),  # made by hand or by a tool that sets no ownerReference
    (("FreeThreadedRollout/other", "uid-other"), False),  # another rollout's twin
    (("FreeThreadedRollout/other", "uid-other"), True),  # ... even with our label
    (("FreeThreadedRollout/canary", "uid-old"), False),  # an earlier `canary`, not labelled
    (("Application/app", "uid-argo"), True),  # a non-rollout controller
    (("Application/app", "uid-argo"), False),
)


@st.composite
def step_defs(draw: st.DrawFn) -> list[tuple[int, str | None]]:
    weights = draw(st.lists(st.integers(1, 99), max_size=4, unique=True).map(sorted))
    return [(w, draw(st.sampled_from(PAUSES))) for w in [*weights, 100]]


@st.composite
def specs(draw: st.DrawFn) -> api.RolloutSpec:
    raw: dict[str, Any] = {
        "targetRef": {"name": "app"},
        "freeThreaded": {"image": "registry.example/app:2.0-py3.14t"},
        "steps": [step_raw(w, d) for w, d in draw(step_defs())],
        "guardrails": {
            "gilFallback": {
                "maxPods": draw(st.integers(0, 2)),
                "action": draw(st.sampled_from(["Rollback", "Pause"])),
            },
            "raceBudget": {
                "maxIncidents": draw(st.integers(0, 3)),
                "window": draw(st.sampled_from(["1m", "10m", "1h"])),
                "action": draw(st.sampled_from(["Rollback", "Pause"])),
            },
        },
        "paused": draw(st.booleans()),
    }
    if draw(st.booleans()):
        raw["guardrails"]["dependencyGate"] = {
            "modules": ["numpy"],
            "action": draw(st.sampled_from(["Block", "Warn"])),
        }
    metrics = draw(st.integers(0, 2))
    if metrics:
        raw["analysis"] = {
            "failureLimit": draw(st.integers(0, 3)),
            "onInconclusive": draw(st.sampled_from(["Pause", "Rollback"])),
            "metrics": [
                {"name": f"m{i}", "query": "up", "threshold": {"max": 1}} for i in range(metrics)
            ],
        }
    return api.parse_spec(raw)


def _reached_last(spec: api.RolloutSpec, obs: Observation, n: int) -> bool:
    std, ft = split(n, spec.steps[-1].weight)
    return (
        obs.target is not None
        and obs.twin is not None
        and obs.target.replicas == std
        and obs.twin.replicas == ft
        and obs.twin.ready >= ft
    )


def _preflight(sim: Sim, phase: str) -> api.PreflightStatus:
    """A verdict as the shell reports it: for the spec's image and modules, on the attempt the
    status asks for (a `retry` asks for a new one)."""
    image = sim.spec.free_threaded.image
    gate = sim.spec.guardrails.dependency_gate
    checked = gate_key(image, gate.modules if gate is not None else [])
    held = sim.status.preflight
    return api.PreflightStatus(
        phase=phase,
        image=image,
        checked=checked,
        attempt=held.attempt if held is not None and held.checked == checked else 0,
        message=f"preflight {phase}",
        time="2026-01-01T00:00:00Z",
    )


def _touches_nothing(res: Result) -> bool:
    return (
        res.target_replicas is None
        and res.twin_replicas is None
        and res.baseline_replicas is None
        and not res.adopt_twin
        and not res.route_writes
        and not res.run_preflight
    )


def _reason(status: api.RolloutStatus) -> str | None:
    return next((c.reason for c in status.conditions if c.type == "Progressing"), None)


def _actions(res: Result) -> tuple[object, ...]:
    """What the shell does with a plan besides writing its status and Events."""
    return (
        res.target_replicas,
        res.twin_replicas,
        res.baseline_replicas,
        res.clear_action,
        res.set_paused,
        res.run_preflight,
        res.adopt_twin,
        res.route_writes,
    )


def _diff(a: api.RolloutStatus, b: api.RolloutStatus) -> str:
    wa, wb = api.dump(a), api.dump(b)
    keys = sorted(k for k in set(wa) | set(wb) if wa.get(k) != wb.get(k))
    return "second reconcile changed status: " + "; ".join(
        f"{k}: {wa.get(k)!r} -> {wb.get(k)!r}" for k in keys
    )


class RolloutMachine(RuleBasedStateMachine):
    sim: Sim
    disrupted: bool  # someone other than the operator removed capacity
    was_rolled_back: bool
    revisions: int
    # The Deployment named like the twin is someone else's: (controller, labelled); and whether
    # it is this rollout's former twin (its ownerReference edited) rather than another object.
    foreign: tuple[tuple[str, str] | None, bool] | None
    foreign_was_ours: bool
    rivals: tuple[Claim, ...]  # other rollouts targeting the same Deployment

    @initialize(
        spec=specs(),
        n=st.integers(1, 30),
        lag=st.integers(1, 4),
    )
    def start(self, spec: api.RolloutSpec, n: int, lag: int) -> None:
        self.sim = Sim(spec, n=n, lag=lag, on_apply=self.check_result)
        self.disrupted = False
        self.was_rolled_back = False
        self.revisions = 1
        self.foreign = None
        self.foreign_was_ours = False
        self.rivals = ()
        self.own()
        self.sim.step()

    def own(self) -> None:
        """What the shell reports of ownership, from the model's state."""
        controller, labelled = self.foreign if self.foreign is not None else (OURS, True)
        self.sim.ownership = Ownership(
            rollout=ME.name,
            uid=UID,
            claims=(ME, *self.rivals),
            twin="app-ft",
            twin_controller=controller,
            target="app",
        )
        self.sim.twin_owned = labelled

    def check_ownership(self, sim: Sim, obs: Observation, res: Result) -> None:
        st_ = res.status
        usable = obs.target is not None and obs.spec_error is None
        if self.foreign is not None:
            # Someone else's Deployment: nothing is scaled, created, adopted or routed.
            assert obs.twin is not None
            assert _touches_nothing(res), f"touched a foreign twin {self.foreign}: {res}"
            assert st_.phase == Phase.FAILED
            if usable:
                assert _reason(st_) in (REASON_TWIN_NOT_OWNED, REASON_TARGET_CLAIMED), st_.message
                if _reason(st_) == REASON_TWIN_NOT_OWNED:
                    assert "'app-ft'" in st_.message  # names the object in the way
            return
        if not self.rivals:
            return
        older = any(c.created < ME.created for c in self.rivals)
        if obs.twin is None and older:
            # No twin to hold: the older rollout rolls the target, this one keeps out.
            assert _touches_nothing(res), f"newer rollout touched the target: {res}"
            assert st_.phase == Phase.FAILED
            if usable:
                assert _reason(st_) == REASON_TARGET_CLAIMED
                assert f"{EARLIER.name!r}" in st_.message
            return
        # This rollout holds the target (its twin, or first to claim it): the others change
        # nothing it decides, so its guardrails still act.
        own = obs.ownership
        assert own is not None
        alone = plan(
            sim.last_spec, sim.last_status, replace(obs, ownership=replace(own, claims=(ME,)))
        )
        assert res == alone, (
            f"the holder decided otherwise because of {self.rivals}: {res} != {alone}"
        )
        assert _reason(st_) != REASON_TARGET_CLAIMED, st_.message

    # ------------------------------------------------------------------ checks per reconcile

    def check_result(self, sim: Sim, obs: Observation, res: Result) -> None:
        st_ = res.status
        prev = sim.last_status
        n = st_.replicas.target
        assert st_.phase in set(Phase)
        self.check_ownership(sim, obs, res)

        # Capacity: the operator never removes Ready capacity below N.
        before = (obs.target.ready if obs.target else 0) + (obs.twin.ready if obs.twin else 0)
        assert sim.ready >= min(n, before), (
            f"operator lowered ready capacity {before} -> {sim.ready} (N={n}): {res}"
        )
        if not self.disrupted and sim.history:
            assert sim.ready >= n, f"ready {sim.ready} < N={n}: std={sim.std} ft={sim.ft}"

        # Ready capacity is restored: until promotion the standard track covers every
        # free-threaded pod that is not Ready (it was never raised again once lowered).
        if res.target_replicas is not None and st_.phase != Phase.PROMOTED:
            ft_ready = obs.twin.ready if obs.twin is not None else 0
            assert res.target_replicas >= n - ft_ready, (
                f"standard {res.target_replicas} < N - ftReady = {n} - {ft_ready} in {st_.phase}"
            )

        # N is the target's replicas when the revision began, unless someone scaled it.
        if not self.disrupted and st_.revision is not None:
            assert n == sim.n, f"N drifted {sim.n} -> {n} without kubectl scale"
        if res.target_replicas is not None:
            available = next(c for c in st_.conditions if c.type == "Available")
            assert (available.status == "True") == (before >= n)

        # A timed pause asks to be woken up at its end (nothing else may happen meanwhile).
        if (
            st_.phase == Phase.PROGRESSING
            and st_.step_index is not None
            and st_.step_started_at is not None
        ):
            step = sim.last_spec.steps[st_.step_index]
            pause = None if step.waits_for_promote else step.hold_seconds
            std_d, ft_d = split(n, step.weight)
            reached = (
                obs.target is not None
                and obs.twin is not None
                and (obs.target.replicas, obs.twin.replicas) == (std_d, ft_d)
                and obs.twin.ready >= ft_d
            )
            if pause is not None and reached:
                started = datetime.fromisoformat(st_.step_started_at.replace("Z", "+00:00"))
                left = pause - (obs.now - started).total_seconds()
                if left > 0:
                    assert res.requeue_after is not None
                    assert res.requeue_after <= left + 1e-6

        # Writes within 0..N per track.
        for value in (res.target_replicas, res.twin_replicas):
            if value is not None:
                assert 0 <= value <= n, f"replicas {value} outside 0..{n}"
        if obs.target is None or obs.spec_error is not None:
            assert (res.target_replicas, res.twin_replicas) == (None, None)

        # A step in force is a real step and status says which.
        if st_.phase == Phase.PROGRESSING:
            assert st_.step_index is not None
        if st_.phase in (Phase.PROGRESSING, Phase.PAUSED) and st_.step_index is not None:
            assert st_.weight == sim.spec.steps[st_.step_index].weight
        if st_.phase == Phase.PROMOTED:
            assert st_.weight == 100
            assert st_.step_index == len(sim.spec.steps) - 1
        if st_.phase == Phase.ROLLED_BACK:
            assert st_.rollback is not None
            assert st_.weight == 0

        # RolledBack is sticky until retry or a new revision.
        restarted = obs.action == "retry" or (
            prev.revision is not None and obs.revision is not None and obs.revision != prev.revision
        )
        if restarted:
            self.was_rolled_back = False
        if self.was_rolled_back:
            assert st_.phase in (Phase.ROLLED_BACK, Phase.FAILED), (
                f"left RolledBack for {st_.phase} without retry/new revision"
            )
            assert st_.rollback is not None
        if st_.phase == Phase.ROLLED_BACK:
            self.was_rolled_back = True

        # Promoted only from the reached last step or through promote-full.
        if st_.phase == Phase.PROMOTED and prev.phase != Phase.PROMOTED:
            last = len(sim.spec.steps) - 1
            assert (
                obs.action == "promote-full"
                or (prev.step_index == last and prev.step_started_at is not None)
                or _reached_last(sim.spec, obs, n)
                # back from a transient failure (invalid spec, target gone) of a promotion
                or (prev.phase == Phase.FAILED and prev.promoted_at is not None)
            ), f"promoted from {prev.phase} step {prev.step_index} without the last step"

        # Converged (nothing to write): the same observation again changes nothing, says nothing.
        live_target = obs.target.replicas if obs.target else None
        live_twin = obs.twin.replicas if obs.twin else None
        # Exception: the reconcile that starts step 1 evaluated guardrails while still Pending;
        # incidents start counting on the next one.
        starts = prev.phase in (Phase.PENDING, Phase.FAILED, None) and st_.phase not in (
            Phase.PENDING,
            Phase.FAILED,
        )
        if (
            res.target_replicas in (None, live_target)
            and res.twin_replicas in (None, live_twin)
            and not (starts and obs.incidents)
        ):
            # The request included: it is recorded as applied, so seeing it again is a no-op.
            again = plan(sim.last_spec, st_, obs)
            assert again.events == (), f"second reconcile emitted {again.events}"
            assert again.status == st_, _diff(st_, again.status)
            assert (again.target_replicas, again.twin_replicas) == (
                res.target_replicas,
                res.twin_replicas,
            )
            self.check_quiet_until_due(sim, obs, st_, again)

    def check_quiet_until_due(
        self, sim: Sim, obs: Observation, status: api.RolloutStatus, again: Result
    ) -> None:
        """A converged plan says when time alone would change it (`requeue_after`): before
        then, or ever if it asks for nothing, the same world later plans the same. The shell
        skips the plan on an unchanged world on this promise (shell.reconcile's memo)."""
        if again.requeue_after is not None and again.requeue_after < 2.0:
            return  # `max(1.0, left)`: within the last second the deadline may have passed
        # Halfway, and the last second before it is due: the memo answers until then.
        due = again.requeue_after
        for wait in (86_400.0,) if due is None else (due / 2, due - 1.0):
            later = plan(sim.last_spec, status, replace(obs, now=obs.now + timedelta(seconds=wait)))
            assert later.events == (), f"{wait:.0f}s later, unannounced events {later.events}"
            assert later.status == status, f"{wait:.0f}s later: " + _diff(status, later.status)
            # Every action a skipped plan would have taken, not only the tracks' sizes.
            assert _actions(later) == _actions(again), f"{wait:.0f}s later"
            if due is None:
                assert later.requeue_after is None, f"{wait:.0f}s later: {later.requeue_after}"

    @invariant()
    def conditions_follow_conventions(self) -> None:
        status = self.sim.status
        types = [c.type for c in status.conditions]
        assert len(types) == len(set(types))
        assert "Progressing" in types or status.phase is None

    # ------------------------------------------------------------------ the world moves

    @rule(seconds=st.integers(1, 400))
    def time_passes(self, seconds: int) -> None:
        self.sim.step(advance=seconds)

    @rule(times=st.integers(1, 6))
    def reconcile_quickly(self, times: int) -> None:
        self.sim.run(times)

    @rule(action=st.sampled_from([*ACTIONS, "bogus"]))
    def user_action(self, action: str) -> None:
        self.sim.action = action
        res = self.sim.step()
        assert res.clear_action

    @rule(action=st.sampled_from([*ACTIONS, "promote@req-1", "bogus"]), restart=st.booleans())
    def action_delivered_twice(self, action: str, restart: bool) -> None:
        """Exactly once: the annotation's removal failed (or the operator died before it), so
        the request is seen again, possibly by a restarted operator. The second delivery does
        nothing that a reconcile without any request would not do."""
        sim = self.sim
        sim.action = action
        sim.step()
        if restart:
            sim.status = api.parse_status(api.dump(sim.status))
        recorded = sim.status.last_action
        quiet = plan(sim.spec, sim.status, sim.observe(action=None))
        sim.redeliver()
        again = sim.step(advance=0)
        assert again.clear_action
        assert again.events == quiet.events, [e.reason for e in again.events]
        assert (again.target_replicas, again.twin_replicas, again.set_paused) == (
            quiet.target_replicas,
            quiet.twin_replicas,
            quiet.set_paused,
        )
        assert again.status.model_copy(update={"last_action": None}) == quiet.status.model_copy(
            update={"last_action": None}
        ), _diff(quiet.status, again.status)
        assert again.status.last_action == recorded

    @rule(code=st.sampled_from([139, 134]), pod=st.integers(0, 5), ago=st.integers(0, 7200))
    def crash(self, code: int, pod: int, ago: int) -> None:
        self.sim.incident(pod=f"app-ft-{pod}", exit_code=code, ago=ago)
        self.sim.step()

    @rule()
    def crashes_forgotten_by_the_shell(self) -> None:
        self.sim.incidents = ()
        self.sim.step()

    @rule(
        states=st.lists(
            st.sampled_from([True, False, None]) | st.just("nobuild"), min_size=0, max_size=4
        )
    )
    def gil_report(self, states: list[bool | str | None]) -> None:
        pods = []
        for i, s in enumerate(states[: self.sim.ft.ready]):
            if s == "nobuild":
                pods.append(PodGil(f"app-ft-{i}", enabled=False, build=False))
            else:
                assert s is None or isinstance(s, bool)
                pods.append(PodGil(f"app-ft-{i}", enabled=s, modules=("numpy",) if s else ()))
        self.sim.pods = tuple(pods)
        self.sim.step()

    @rule(data=st.data())
    def analysis_round(self, data: st.DataObject) -> None:
        analysis = self.sim.spec.analysis
        count = len(analysis.metrics) if analysis else 1
        phases = data.draw(st.lists(st.sampled_from(RESULT_PHASES), min_size=count, max_size=count))
        self.sim.analysis_round(*phases)
        self.sim.step()

    @rule()
    def new_revision(self) -> None:
        self.revisions += 1
        self.sim.revision = f"rev{self.revisions}"
        # Shell contract: pods and incidents are those of the current revision's twin pods;
        # the old revision's crashes are not this revision's.
        self.sim.pods = ()
        self.sim.incidents = ()
        self.sim.step()

    @rule()
    def toggle_spec_paused(self) -> None:
        self.sim.spec = self.sim.spec.model_copy(update={"paused": not self.sim.spec.paused})
        self.sim.generation += 1
        self.sim.step()

    @rule(n=st.integers(1, 30))
    def kubectl_scale_target(self, n: int) -> None:
        if self.sim.target_exists:
            self.disrupted = True
            self.sim.scale_target(n)
        self.sim.step()

    @rule(n=st.integers(1, 30), twin=st.booleans())
    def someone_else_scales_in_any_phase(self, n: int, twin: bool) -> None:
        """A person or an autoscaler scales the target (or, after promotion, the twin) in
        whatever phase the rollout is in: in RolledBack/Failed the standard track is the whole
        service and in Promoted the twin is, so the new value is the new N and the operator
        never writes the old N back (it was: a rollback pinned the target at the old N)."""
        sim = self.sim
        before = sim.status
        if not sim.target_exists or sim.spec_error is not None:
            sim.step()
            return
        self.disrupted = True
        settled_promoted = (
            before.phase == Phase.PROMOTED
            and sim.replicas == (0, before.replicas.target)
            and sim.ft.ready >= before.replicas.target
        )
        if twin and sim.twin_exists:
            sim.scale_twin(n)
            follows = settled_promoted
        else:
            sim.scale_target(n)
            follows = settled_promoted or (
                before.phase in (Phase.ROLLED_BACK, Phase.FAILED)
                and sim.history[-1].target_replicas is not None  # not a spec/target failure
                and before.replicas.standard == before.replicas.target
            )
        res = sim.step()
        if follows:
            assert res.status.replicas.target == n, (
                f"{before.phase}: scale to {n} not followed (N={res.status.replicas.target})"
            )
        if before.phase in (Phase.ROLLED_BACK, Phase.FAILED) and res.target_replicas is not None:
            assert res.target_replicas >= n or not follows, (
                f"{before.phase}: target written back to {res.target_replicas} below {n}"
            )

    @rule(k=st.integers(1, 5))
    def free_threaded_pods_go_unready(self, k: int) -> None:
        """Readiness probes fail on k free-threaded pods (they come back `lag` ticks later)."""
        if self.sim.ft.ready:
            self.disrupted = True
            self.sim.ft.ready = max(0, self.sim.ft.ready - k)
        self.sim.step()

    @rule()
    def twin_deleted_by_hand(self) -> None:
        self.disrupted = True
        self.foreign = None  # whoever's it was, the name is free again
        self.own()
        self.sim.delete_twin()
        self.sim.pods = ()
        self.sim.incidents = ()
        self.sim.step()

    @rule(foreign=st.sampled_from(FOREIGN), replaced=st.booleans(), k=st.integers(0, 30))
    def foreign_controller_on_the_twin(
        self, foreign: tuple[tuple[str, str] | None, bool], replaced: bool, k: int
    ) -> None:
        """The Deployment named like the twin is someone else's: this rollout's twin had its
        ownerReference edited, or was replaced by (or, with no twin yet, there appears) another
        Deployment with k Ready pods of its own."""
        sim = self.sim
        if replaced or not sim.twin_exists:
            if sim.twin_exists and sim.ft.ready:
                self.disrupted = True  # our free-threaded pods went with our twin
            sim.twin_exists = True
            sim.ft = Track(k, k)
            sim.pods = ()
            sim.incidents = ()
            self.foreign_was_ours = False
        elif self.foreign is None:
            self.foreign_was_ours = True
        self.foreign = foreign
        self.own()
        before = sim.replicas
        sim.step()
        assert sim.replicas == before

    @precondition(lambda self: self.foreign is not None)
    @rule(deleted=st.booleans())
    def foreign_twin_goes(self, deleted: bool) -> None:
        """The conflict is removed: the foreign Deployment deleted, or (this rollout's former
        twin) its ownerReference put back. The rollout carries on from its status."""
        sim = self.sim
        if deleted or not self.foreign_was_ours:
            self.disrupted = True  # its pods go
            sim.delete_twin()
            sim.pods = ()
            sim.incidents = ()
        self.foreign = None
        self.own()
        older = any(c.created < ME.created for c in self.rivals)
        blocked = not sim.target_exists or sim.spec_error is not None
        res = sim.step()
        if not blocked and not (older and not sim.twin_exists):
            assert res.target_replicas is not None, res.status.message
            assert _reason(res.status) not in (REASON_TWIN_NOT_OWNED, REASON_TARGET_CLAIMED)

    @rule(older=st.booleans())
    def another_rollout_claims_the_target(self, older: bool) -> None:
        """A second rollout is created on the same target (or an existing one has its
        targetRef edited onto it): newer, or older than this one."""
        rival = EARLIER if older else LATER
        if rival not in self.rivals:
            self.rivals = (*self.rivals, rival)
        self.own()
        self.sim.step()

    @precondition(lambda self: bool(self.rivals))
    @rule()
    def the_other_rollouts_are_deleted(self) -> None:
        self.rivals = ()
        self.own()
        self.sim.step()

    @rule()
    def target_flaps(self) -> None:
        self.sim.target_exists = not self.sim.target_exists
        self.sim.step()

    @rule()
    def spec_flaps(self) -> None:
        self.sim.spec_error = (
            None if self.sim.spec_error else api.SpecError("spec.freeThreaded.container", "bad")
        )
        self.sim.step()

    @rule(phase=st.sampled_from(["Pending", "Running", "Passed", "Passed", "Failed"]))
    def preflight_result(self, phase: str) -> None:
        self.sim.preflight = _preflight(self.sim, phase)
        self.sim.step()

    @rule()
    def status_write_lost(self) -> None:
        """The replica writes landed but the status patch did not (crash, conflict); the
        cluster moves on before the next reconcile. That is not someone else's scale."""
        before, was_rolled_back = self.sim.status, self.was_rolled_back
        lost = self.sim.step().status
        self.sim.status = before
        # The lost status never reached the apiserver: a rollback it recorded did not happen
        # as far as the next reconcile can know (it decides again from what it observes).
        self.was_rolled_back = was_rolled_back
        same_step = (lost.phase, lost.step_index) == (before.phase, before.step_index)
        if not same_step:
            # Known limitation (xfail tests in test_plan.py): across a phase change the planner
            # cannot tell its own lost write from kubectl scale, N may change.
            self.disrupted = True
        res = self.sim.step()
        if not self.disrupted:
            assert "TargetScaled" not in [e.reason for e in res.events]
            assert res.status.replicas.target == self.sim.n

    @rule()
    def operator_restart(self) -> None:
        """A new operator process reads status back from the apiserver (wire form)."""
        wire = api.dump(self.sim.status)
        self.sim.status = api.parse_status(wire)
        assert api.dump(self.sim.status) == wire
        self.sim.step()

    @precondition(lambda self: self.sim.status.phase == Phase.PAUSED)
    @rule()
    def promote_while_paused(self) -> None:
        self.sim.action = "promote"
        self.sim.step()

    # ------------------------------------------------------------------ no dead ends

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        # A healthy world: target back, spec valid, no GIL, no crashes, good analysis.
        sim.target_exists = True
        sim.spec_error = None
        if self.foreign is not None and not self.foreign_was_ours:
            self.disrupted = True  # someone deletes their Deployment, its pods go
            sim.delete_twin()
        self.foreign = None
        self.rivals = ()
        self.own()
        sim.pods = ()
        sim.incidents = ()
        # Pods Ready `lag` reconciles of 400 s each after a scale-up are slow, not failing: the
        # progress deadline (10 minutes by default) would roll back every step.
        sim.spec = sim.spec.model_copy(update={"paused": False, "progress_deadline": "24h"})
        sim.preflight = _preflight(sim, "Passed")
        sim.now += timedelta(hours=2)  # past every race window
        for _ in range(300):
            phase = sim.status.phase
            n = sim.status.replicas.target
            if phase == Phase.PROMOTED and sim.replicas == (0, n) and sim.ft.ready >= n:
                break
            if phase in (Phase.ROLLED_BACK, Phase.FAILED):
                sim.action = "retry"
            elif phase == Phase.PAUSED:
                sim.action = "resume" if sim.status.message.startswith("paused (") else "promote"
            if sim.spec.analysis is not None:
                sim.analysis_round(*["Successful"] * len(sim.spec.analysis.metrics))
            sim.preflight = _preflight(sim, "Passed")  # the shell runs the attempt asked for
            sim.step(advance=400)
        else:
            raise AssertionError(
                f"no way to Promoted: phase={sim.status.phase} step={sim.status.step_index} "
                f"msg={sim.status.message!r} std={sim.std} ft={sim.ft}"
            )


TestRolloutMachine = RolloutMachine.TestCase
TestRolloutMachine.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(max_examples=200, deadline=None)
@given(
    spec=specs(),
    n=st.integers(1, 30),
    lag=st.integers(1, 6),
    script=st.lists(
        st.tuples(st.sampled_from([None, None, None, *ACTIONS]), st.integers(0, 400)),
        max_size=40,
    ),
)
def test_random_walk_never_drops_capacity_below_n(
    spec: api.RolloutSpec, n: int, lag: int, script: list[tuple[str | None, int]]
) -> None:
    """Only the operator touches the cluster: ready capacity >= N at every moment, however the
    user drives the rollout and however slowly pods become Ready."""
    worst: list[int] = []

    def track(sim: Sim, obs: Observation, res: Result) -> None:
        worst.append(sim.ready)
        assert sim.ready >= n, f"ready {sim.ready} < {n} after {res}"

    sim = Sim(spec, n=n, lag=lag, on_apply=track)
    for action, seconds in script:
        sim.action = action
        sim.step(advance=seconds)
        assert sim.status.replicas.target == n
    assert all(r >= n for r in worst)


def test_a_pending_gate_verdict_recorded_in_status_still_holds_the_step() -> None:
    """Found by the machine above (Dec 2026): promoted past step 1 while the dependency gate's
    check of the module list was Pending, the first reconcile held the step and recorded the
    Pending verdict; the next one took that record as settled and went on, before the gate had
    passed (and a second reconcile of the same world changed the status)."""
    spec = api.parse_spec(
        {
            "targetRef": {"name": "app"},
            "freeThreaded": {
                "image": "registry.example/app:2.0-py3.14t",
                "probe": {"enabled": False},
            },
            "steps": [{"weight": 1, "pause": {}}, {"weight": 100, "pause": {}}],
            "guardrails": {
                "gilFallback": {"maxPods": 0, "action": "Rollback"},
                "raceBudget": {"maxIncidents": 0, "window": "1m", "action": "Rollback"},
                "dependencyGate": {"modules": ["numpy"], "action": "Block", "timeout": "5m"},
            },
        }
    )
    m = RolloutMachine()
    m.start(spec=spec, n=1, lag=2)
    m.user_action(action="promote")
    m.user_action(action="promote")
    m.preflight_result(phase="Pending")  # asserts a second reconcile changes nothing
    assert m.sim.status.message.startswith("dependency gate"), m.sim.status.message
