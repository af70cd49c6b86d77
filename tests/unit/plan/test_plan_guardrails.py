"""Guardrails (ftrollout/plan/guardrails.py): GIL fallback, race budget, overlapping breaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from planfixtures import at_step, cond, make_spec, pause_elapsed, reached, step_checked
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase, RollbackReason
from ftrollout.plan import PodGil
from ftrollout.plan.guardrails import count_probe_incidents

# ---------------------------------------------------------------------- GIL fallback


GIL_CASES: list[tuple[str, tuple[PodGil, ...], tuple[int, int, int, int], list[str], str, str]] = [
    # name, pods, (pods, disabled, enabled, unknown), fallbackModules, summary, ModeIntegrity
    ("no pods", (), (0, 0, 0, 0), [], "-", "Unknown"),
    ("all off", (PodGil("a", False), PodGil("b", False)), (2, 2, 0, 0), [], "off", "True"),
    (
        "one unknown",
        (PodGil("a", False), PodGil("b", None)),
        (2, 1, 0, 1),
        [],
        "off 1/2",
        "Unknown",
    ),
    (
        "numpy",
        (PodGil("a", False), PodGil("b", True, modules=("numpy",))),
        (2, 1, 1, 0),
        ["numpy"],
        "ON(1)",
        "False",
    ),
    (
        "not a free-threading build",
        (PodGil("a", False, build=False),),
        (1, 0, 1, 0),
        [],
        "ON(1)",
        "False",
    ),
    (
        "two modules, sorted, deduplicated",
        (
            PodGil("a", True, modules=("orjson", "numpy")),
            PodGil("b", True, modules=("numpy",)),
        ),
        (2, 0, 2, 0),
        ["numpy", "orjson"],
        "ON(2)",
        "False",
    ),
]


@pytest.mark.parametrize(
    ("name", "pods", "counts", "modules", "summary", "integrity"),
    GIL_CASES,
    ids=[c[0] for c in GIL_CASES],
)
def test_gil_status_and_mode_integrity(
    name: str,
    pods: tuple[PodGil, ...],
    counts: tuple[int, int, int, int],
    modules: list[str],
    summary: str,
    integrity: str,
) -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 5, "action": "Rollback"})), 0)
    sim.pods = pods
    st = sim.step().status
    assert (st.gil.pods, st.gil.disabled, st.gil.enabled, st.gil.unknown) == counts
    assert st.gil.fallback_modules == modules
    assert st.gil.summary == summary
    assert cond(st, "ModeIntegrity").status == integrity
    assert st.phase == Phase.PROGRESSING  # within maxPods


def test_gil_fallback_beyond_max_pods_rolls_back_naming_module_and_pod() -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 1, "action": "Rollback"}), n=10), 0)
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    sim.pods = (PodGil("app-ft-abc", True, modules=("numpy",)),)
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING  # 1 pod allowed
    sim.pods = (
        PodGil("app-ft-abc", True, modules=("numpy",)),
        PodGil("app-ft-def", True, modules=("numpy",)),
    )
    res = step_checked(sim, 10)
    st = res.status
    assert st.phase == Phase.ROLLED_BACK
    assert st.rollback is not None
    assert st.rollback.reason == RollbackReason.GIL_FALLBACK
    assert "numpy" in st.rollback.message
    assert "app-ft-abc" in st.rollback.message
    assert "maxPods 1" in st.rollback.message
    assert res.target_replicas == 10
    rb = [e for e in res.events if e.reason == "RolledBack"]
    assert len(rb) == 1
    assert rb[0].type == "Warning"
    assert "GILFallback" in rb[0].message
    mi = cond(st, "ModeIntegrity")
    assert (mi.status, mi.reason) == ("False", "GILFallback")
    assert "numpy" in mi.message


def test_not_a_free_threading_build_counts_as_fallback() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.pods = (PodGil("app-ft-0", enabled=False, build=False),)
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.GIL_FALLBACK
    assert "not a free-threading build" in res.status.rollback.message


def test_unknown_gil_state_never_triggers_the_guardrail() -> None:
    sim = at_step(Sim(make_spec()), 0)
    sim.pods = (PodGil("app-ft-0", enabled=None),)
    sim.run(3)
    assert sim.status.phase == Phase.PROGRESSING
    assert cond(sim.status, "ModeIntegrity").status == "Unknown"


def test_gil_fallback_with_pause_action_holds_the_step() -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Pause"})), 0)
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    res = sim.step()
    assert res.status.phase == Phase.PAUSED
    assert "GILFallback" in res.status.message
    assert [e.reason for e in res.events] == ["GuardrailPaused"]
    assert res.status.rollback is None
    pause_elapsed(sim, 3600)
    sim.run(5)
    assert sim.status.phase == Phase.PAUSED
    assert sim.status.step_index == 0
    assert sim.replicas == (9, 1)
    assert sim.all_events().count("GuardrailPaused") == 1


def test_resume_lifts_a_guardrail_pause_once_the_breach_is_gone() -> None:
    """Decision: a guardrail Pause is lifted by `kubectl ftr resume` (like Argo's resume after
    a paused analysis); it does not lift itself. If the breach persists the guardrail pauses
    again at once."""
    sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Pause"})), 0)
    sim.pods = (PodGil("app-ft-0", True),)
    sim.step()
    sim.pods = (PodGil("app-ft-0", False),)
    pause_elapsed(sim, 3600)
    sim.run(3)
    assert sim.status.phase == Phase.PAUSED  # no self-resume
    sim.pods = (PodGil("app-ft-0", True),)
    sim.action = "resume"
    res = sim.step()
    assert res.status.phase == Phase.PAUSED  # breach still there: held again
    assert "GuardrailPaused" in sim.events(res)
    sim.pods = (PodGil("app-ft-0", False),)
    sim.action = "resume"
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.step_index == 1


# ---------------------------------------------------------------------- race budget


@pytest.mark.parametrize(
    ("max_incidents", "codes", "rolled_back"),
    [
        (3, (139, 139, 134), False),
        (3, (139, 139, 134, 139), True),
        (0, (134,), True),
        (1, (139,), False),
        (1, (139, 134), True),
    ],
)
def test_race_budget(max_incidents: int, codes: tuple[int, ...], rolled_back: bool) -> None:
    races = {"maxIncidents": max_incidents, "window": "1h", "action": "Rollback"}
    sim = at_step(Sim(make_spec(races=races)), 0)
    sim.now += timedelta(seconds=60 * len(codes))  # the crashes below happen in this attempt
    for i, code in enumerate(codes):
        sim.incident(pod=f"app-ft-{i}", exit_code=code, ago=60 * i)
    res = sim.step()
    st = res.status
    assert st.races.incidents == len(codes)
    assert st.races.budget == max_incidents
    assert st.races.window == "1h"
    assert st.races.summary == f"{len(codes)}/{max_incidents}"
    assert len(st.races.recent) == len(codes)
    assert sim.events(res).count("RaceIncident") == len(codes)
    rc = cond(st, "RaceBudget")
    if rolled_back:
        assert st.phase == Phase.ROLLED_BACK
        assert st.rollback is not None
        assert st.rollback.reason == RollbackReason.RACE_BUDGET
        assert f"{len(codes)} free-threaded incidents in 1h" in st.rollback.message
        assert f"budget of {max_incidents}" in st.rollback.message
        for code in set(codes):
            assert str(code) in st.rollback.message
        assert (rc.status, rc.reason) == ("False", "BudgetExceeded")
    else:
        assert st.phase == Phase.PROGRESSING
        assert (rc.status, rc.reason) == ("True", "WithinBudget")


def test_incidents_older_than_the_window_do_not_count() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 1, "window": "10m"})), 0)
    sim.now += timedelta(seconds=60)
    sim.incident(pod="a", ago=3600)
    sim.incident(pod="b", ago=601)
    sim.incident(pod="c", ago=30)
    res = sim.step()
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.races.incidents == 1
    assert [i.pod for i in res.status.races.recent] == ["c"]


def test_incidents_slide_out_of_the_window() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 5, "window": "10m"})), 0)
    sim.incident(pod="a")
    res = sim.step()
    assert res.status.races.incidents == 1
    assert res.requeue_after is not None
    assert res.requeue_after <= 600
    sim.incidents = ()  # the shell passes only what it sees now; status remembers the rest
    sim.step(advance=300)
    assert sim.status.races.incidents == 1
    sim.step(advance=400)
    sim.step()
    assert sim.status.races.incidents == 0
    assert sim.status.races.recent == []


def test_the_same_incident_seen_twice_counts_once() -> None:
    sim = at_step(Sim(make_spec(races={"maxIncidents": 1, "window": "1h"})), 0)
    inc = sim.incident(pod="app-ft-0", exit_code=139)
    sim.incidents = (inc, inc)
    res = sim.step()
    assert res.status.races.incidents == 1
    assert sim.events(res).count("RaceIncident") == 1
    for _ in range(3):
        res = sim.step()
        assert res.status.races.incidents == 1
        assert "RaceIncident" not in sim.events(res)
    assert sim.status.phase == Phase.PROGRESSING


def test_race_budget_with_pause_action() -> None:
    races = {"maxIncidents": 0, "window": "1h", "action": "Pause"}
    sim = at_step(Sim(make_spec(races=races)), 0)
    sim.incident(pod="app-ft-0", exit_code=134)
    res = sim.step()
    assert res.status.phase == Phase.PAUSED
    assert "RaceBudget" in res.status.message
    assert "GuardrailPaused" in sim.events(res)
    pause_elapsed(sim, 3600)
    sim.run(3)
    assert sim.status.step_index == 0


def test_race_window_survives_an_operator_restart() -> None:
    """recent incidents are kept in status: a restart (fresh observation without the old
    crashes) still counts them."""
    sim = at_step(Sim(make_spec(races={"maxIncidents": 1, "window": "1h"})), 0)
    sim.incident(pod="a")
    sim.step()
    sim.incidents = ()
    sim.status = api.parse_status(api.dump(sim.status))
    sim.incident(pod="b")
    res = sim.step()
    assert res.status.phase == Phase.ROLLED_BACK


# ---------------------------------------------------------------------- overlapping signals


def test_two_pause_guardrails_each_announce_once() -> None:
    spec = make_spec(
        gil={"maxPods": 0, "action": "Pause"},
        races={"maxIncidents": 0, "window": "1h", "action": "Pause"},
    )
    sim = at_step(Sim(spec), 0)
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    sim.incident(pod="app-ft-0")
    sim.run(5)
    assert sim.status.phase == Phase.PAUSED
    assert sim.all_events().count("GuardrailPaused") == 2
    assert "paused (GILFallback)" in sim.status.message
    assert "paused (RaceBudget)" in sim.status.message


def test_two_guardrails_breached_at_once_roll_back_once_with_the_first_reason() -> None:
    """Decision: mode integrity is checked first, so a reconcile that sees both a GIL fallback
    and a blown race budget records GILFallback; one RolledBack event, not two."""
    sim = at_step(Sim(make_spec(races={"maxIncidents": 0, "window": "1h"})), 0)
    sim.pods = (PodGil("app-ft-0", True),)
    sim.incident(pod="app-ft-0")
    res = sim.step()
    assert sim.events(res).count("RolledBack") == 1
    assert res.status.rollback is not None
    assert res.status.rollback.reason == RollbackReason.GIL_FALLBACK


def test_leftover_pods_do_not_trip_guardrails_of_a_new_revision() -> None:
    """While Pending (standard returning to N after a new revision) the free-threaded pods are
    the previous revision's: their GIL state is shown but neither acted on nor counted, so a
    fixed image is not rolled back for its predecessor's faults."""
    spec = make_spec(
        gil={"maxPods": 0, "action": "Pause"}, races={"maxIncidents": 0, "window": "1h"}
    )
    sim = at_step(Sim(spec, n=10, lag=3), 0)
    sim.revision = "rev2"
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    sim.incident(pod="app-ft-0", exit_code=139)
    res = sim.step()
    assert res.status.phase == Phase.PENDING
    assert res.status.gil.enabled == 1  # shown
    assert res.status.races.incidents == 0  # not counted
    sim.pods = ()
    sim.incidents = ()
    sim.until(reached(0))
    assert sim.status.phase == Phase.PROGRESSING
    assert sim.status.races.incidents == 0
    assert sim.status.rollback is None


@pytest.mark.parametrize(
    ("pod", "counts"),
    [
        (PodGil("app-ft-new", True, revision="rev1"), True),
        (PodGil("app-ft-dying", True, revision="rev1", terminating=True), False),
        (PodGil("app-ft-old", True, revision="rev0"), False),
        (PodGil("app-ft-starting", True, revision="rev1", running=False), False),
        (PodGil("app-ft-old-build", False, build=False, revision="rev0"), False),
    ],
    ids=["current", "terminating", "earlier-revision", "not-running", "earlier-build"],
)
def test_only_running_pods_of_the_current_revision_count_for_the_gil_guardrail(
    pod: PodGil, counts: bool
) -> None:
    sim = at_step(Sim(make_spec(gil={"maxPods": 0, "action": "Rollback"})), 0)
    sim.pods = (PodGil("app-ft-ok", False, revision="rev1"), pod)
    res = sim.step()
    if counts:
        assert res.status.phase == Phase.ROLLED_BACK
        assert pod.pod in cond(res.status, "ModeIntegrity").message
    else:
        assert res.status.phase == Phase.PROGRESSING
        assert (res.status.gil.pods, res.status.gil.enabled) == (1, 0)
        assert res.status.gil.summary == "off"
        assert cond(res.status, "ModeIntegrity").status == "True"


# ------------------------------------------------------------ probe incident counters

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
POD = "app-ft-6d9f-abcde"


def counted(
    readings: list[float],
    baseline: list[api.ProbeCounter] | None = None,
    cap: int = 4,
) -> tuple[list[api.ProbeCounter], int]:
    """Feed one pod's counter readings, one observation each; return the baseline and how many
    incidents were found in all."""
    base = list(baseline or [])
    total = 0
    for i, v in enumerate(readings):
        base, new = count_probe_incidents(
            base, {POD: v}, [POD], T0 + timedelta(seconds=5 * i), cap=cap, keep_seconds=3600
        )
        total += len(new)
    return base, total


PROBE_CASES: list[tuple[str, list[float], list[api.ProbeCounter], int]] = [
    # name, readings, baseline from status, incidents counted
    ("one incident", [0, 1], [], 1),
    ("replica lag 0,1,0,1 is one incident", [0, 1, 0, 1], [], 1),
    ("lag then a real second incident", [0, 1, 0, 1, 2], [], 2),
    ("process restart resets to 0: not new", [3, 0, 0], [], 3),
    (
        "operator restart: the stored baseline is not counted again",
        [2, 2],
        [api.ProbeCounter(pod=POD, count=2, time="2026-01-01T11:59:00Z")],
        0,
    ),
    (
        "operator restart, then one more",
        [2, 3],
        [api.ProbeCounter(pod=POD, count=2, time="2026-01-01T11:59:00Z")],
        1,
    ),
    ("huge value is capped", [1e18], [], 4),
    ("infinite value is capped", [float("inf")], [], 4),
    ("NaN is no reading", [float("nan")], [], 0),
]


@pytest.mark.parametrize(
    ("name", "readings", "baseline", "expected"), PROBE_CASES, ids=[c[0] for c in PROBE_CASES]
)
def test_probe_counter_increases_are_counted_once(
    name: str, readings: list[float], baseline: list[api.ProbeCounter], expected: int
) -> None:
    base, total = counted(readings, baseline)
    assert total == expected, name
    if readings and all(v == v for v in readings):  # not NaN
        assert base[0].count == min(int(min(max(readings), 2**53)), 2**53)


def test_probe_incidents_have_distinct_times_and_the_baseline_fits_the_crd() -> None:
    base, new = count_probe_incidents([], {POD: 1e300}, [POD], T0, cap=4, keep_seconds=3600)
    assert len({i.time for i in new}) == 4
    assert all(i.source == "Probe" and i.pod == POD for i in new)
    assert base[0].count <= 2**63 - 1
    api.RolloutStatus.model_validate(
        api.dump(api.RolloutStatus(races=api.RaceStatus(probe_counters=base, recent=new)))
    )


def test_baselines_of_gone_pods_are_dropped_after_the_window_only_when_pods_are_known() -> None:
    old = api.ProbeCounter(pod="gone", count=5, time="2026-01-01T10:00:00Z")
    fresh = api.ProbeCounter(pod="gone-lately", count=1, time="2026-01-01T11:30:00Z")
    base, _ = count_probe_incidents([old, fresh], {}, [POD], T0, cap=4, keep_seconds=3600)
    assert [c.pod for c in base] == ["gone-lately"]
    # No pods known (an operator just started, the cache is empty): nothing is dropped.
    base, _ = count_probe_incidents([old, fresh], {}, [], T0, cap=4, keep_seconds=3600)
    assert [c.pod for c in base] == ["gone", "gone-lately"]


def test_probe_incidents_survive_an_operator_restart_through_status() -> None:
    spec = make_spec(races={"maxIncidents": 1, "window": "1h", "action": "Rollback"})
    sim = at_step(Sim(spec), 0)
    pod = sim.ft_pods()[0].pod
    sim.step(probe_counts=((pod, 1.0),))
    assert sim.status.races.incidents == 1
    assert sim.status.phase == Phase.PROGRESSING
    # A new operator process: only the status is left; Prometheus still says 1.
    restarted = Sim(spec, status=sim.status, now=sim.now)
    restarted.std, restarted.ft = sim.std, sim.ft
    for _ in range(3):
        restarted.step(probe_counts=((pod, 1.0),), pods=sim.ft_pods())
    assert restarted.status.races.incidents == 1
    assert restarted.status.phase == Phase.PROGRESSING


@pytest.mark.parametrize(
    "steps",
    [
        ((100, None),),  # trimmed below the current step
        ((10, "1s"), (90, "1h"), (100, None)),  # the held step's weight edited
    ],
)
def test_a_guardrail_hold_keeps_the_free_threaded_share_when_steps_are_edited(
    steps: tuple[tuple[int, str | None], ...],
) -> None:
    """A hold (race budget, action Pause) keeps the weight in force (status.weight): an edit of
    spec.steps applies once the rollout is resumed, not while it is held for crashes."""
    races = {"maxIncidents": 0, "window": "1h", "action": "Pause"}
    sim = at_step(Sim(make_spec(((10, "1s"), (50, "1h"), (100, None)), races=races)), 1)
    sim.incident()
    sim.step()
    assert sim.status.phase == Phase.PAUSED
    assert "RaceBudget" in sim.status.message
    before = (sim.std.replicas, sim.ft.replicas)
    sim.spec = make_spec(steps, races=races)
    for _ in range(10):
        sim.step()
    assert sim.status.phase == Phase.PAUSED
    assert (sim.std.replicas, sim.ft.replicas) == before
    assert sim.status.weight == 50
    pause_elapsed(sim, 3700)  # the crash leaves the window: a resume is not held again
    sim.incidents = ()
    sim.action = "resume"
    for _ in range(10):
        sim.step()
    assert sim.status.weight == sim.spec.steps[sim.status.step_index or 0].weight
    assert sim.ft.replicas > before[1]
