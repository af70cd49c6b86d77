"""The dependency gate (ftrollout/plan/preflight.py): preflight before step 1, Block or Warn."""

from __future__ import annotations

import pytest
from planfixtures import at_step, cond, make_spec, pause_elapsed, reached, step_checked
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan.preflight import gate_key

# ---------------------------------------------------------------------- dependency gate


def gated_spec(action: str = "Block") -> api.RolloutSpec:
    raw = api.dump(make_spec())
    raw["guardrails"]["dependencyGate"] = {"modules": ["numpy", "orjson"], "action": action}
    return api.parse_spec(raw)


def preflight(phase: str, image: str = "registry.example/app:2.0-py3.14t") -> api.PreflightStatus:
    return api.PreflightStatus(
        phase=phase,
        image=image,
        checked=gate_key(image, ["numpy", "orjson"]),
        free_threading_build=True,
        message=f"preflight {phase.lower()}",
        time="2026-01-01T00:00:00Z",
    )


def test_dependency_gate_runs_the_preflight_before_step_1() -> None:
    sim = Sim(gated_spec(), n=10)
    res = sim.step()
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    assert res.status.step_index is None
    assert not res.twin_replicas
    assert "numpy, orjson" in res.status.message
    res = sim.step(preflight=preflight("Running"))
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    res = sim.step(preflight=preflight("Passed"))
    assert not res.run_preflight
    assert res.status.phase == Phase.PROGRESSING
    assert res.twin_replicas == 1
    assert "PreflightPassed" in sim.events(res)
    assert res.status.preflight is not None
    assert res.status.preflight.phase == "Passed"
    # The result is kept in status (the version contract): no preflight again.
    assert not sim.step().run_preflight


@pytest.mark.parametrize(
    ("action", "phase"), [("Block", Phase.FAILED), ("Warn", Phase.PROGRESSING)]
)
def test_dependency_gate_failure_blocks_or_warns(action: str, phase: Phase) -> None:
    sim = Sim(gated_spec(action), n=10)
    sim.step()
    res = sim.step(preflight=preflight("Failed"))
    assert res.status.phase == phase
    assert [(e.type, e.reason) for e in res.events if e.reason == "DependencyGate"] == [
        ("Warning", "DependencyGate")
    ]
    if action == "Block":
        c = cond(res.status, "Progressing")
        assert (c.status, c.reason) == ("False", "DependencyGate")
        assert "preflight failed" in c.message
        assert sim.ft.replicas == 0
        ready = cond(res.status, "Ready")
        assert (ready.status, ready.reason) == ("False", "DependencyGate")
        # Holds, and says so once.
        sim.run(3)
        assert sim.status.phase == Phase.FAILED
        assert sim.all_events().count("DependencyGate") == 1


def test_dependency_gate_block_on_a_new_revision_returns_to_standard() -> None:
    """Blocked new revision mid-rollout: the standard track goes back to N and the twin to 0,
    as for a rollback (capacity kept throughout)."""
    sim = at_step(Sim(gated_spec(), n=10, lag=2), 0, preflight=preflight("Passed"))
    pause_elapsed(sim, 301)
    sim.until(reached(1))
    assert sim.replicas == (5, 5)
    sim.revision = "rev2"
    spec2 = api.dump(sim.spec)
    spec2["freeThreaded"]["image"] = "registry.example/app:2.1-py3.14t"
    sim.spec = api.parse_spec(spec2)
    res = step_checked(sim, 10)
    assert res.run_preflight
    failed = preflight("Failed", image="registry.example/app:2.1-py3.14t")
    for _ in range(6):
        res = step_checked(sim, 10, preflight=failed)
    assert sim.status.phase == Phase.FAILED
    assert sim.replicas == (10, 0)


def keyed(phase: str, spec: api.RolloutSpec, attempt: int = 0) -> api.PreflightStatus:
    """A verdict as the shell reports it: for this spec's image and modules, and attempt."""
    gate = spec.guardrails.dependency_gate
    assert gate is not None
    return preflight(phase, spec.free_threaded.image).model_copy(
        update={"checked": gate_key(spec.free_threaded.image, gate.modules), "attempt": attempt}
    )


def test_a_verdict_for_other_modules_is_not_reused() -> None:
    spec = gated_spec()
    sim = Sim(spec, n=10)
    sim.step()
    old = keyed("Passed", spec)
    raw = api.dump(spec)
    raw["guardrails"]["dependencyGate"]["modules"].append("lxml")
    sim.spec = api.parse_spec(raw)  # same image, one more module
    res = sim.step(preflight=old)
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    res = sim.step(preflight=keyed("Passed", sim.spec))
    assert res.status.phase == Phase.PROGRESSING


def test_retry_after_a_gate_failure_runs_the_preflight_again() -> None:
    spec = gated_spec()
    sim = Sim(spec, n=10)
    sim.step()
    failed = keyed("Failed", spec)
    sim.step(preflight=failed)
    assert sim.status.phase == Phase.FAILED
    # The shell still holds the old verdict in memory: it must not decide the retry.
    res = sim.step(action="retry", preflight=failed)
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    assert res.status.preflight is not None
    assert res.status.preflight.attempt == 1
    res = sim.step(preflight=failed)
    assert res.run_preflight
    assert res.status.phase == Phase.PENDING
    res = sim.step(preflight=keyed("Passed", spec, attempt=1))
    assert res.status.phase == Phase.PROGRESSING


def _gated(modules: list[str]) -> api.RolloutSpec:
    raw = api.dump(make_spec(((10, "1s"), (50, "1s"), (100, "1s"))))
    raw["guardrails"]["dependencyGate"] = {"modules": modules, "action": "Block"}
    return api.parse_spec(raw)


def _passed(modules: list[str], phase: str = "Passed") -> api.PreflightStatus:
    image = "registry.example/app:2.0-py3.14t"
    return api.PreflightStatus(
        phase=phase, image=image, checked=gate_key(image, modules),  # type: ignore[arg-type]
        free_threading_build=True, message="ok", time="2026-01-01T00:00:00Z",
    )  # fmt: skip


def test_a_module_added_mid_rollout_is_checked_before_more_free_threaded_pods() -> None:
    """dependencyGate.modules edited once step 1 started: the step is held and the gate runs
    for the new list; a failed verdict (Block) takes the rollout back to standard."""
    sim = Sim(_gated(["numpy"]), n=10)
    at_step(sim, 0, preflight=_passed(["numpy"]))
    sim.spec = _gated(["numpy", "lxml"])
    ran = False
    for _ in range(30):
        res = sim.step(5.0, preflight=_passed(["numpy"]))
        ran = ran or res.run_preflight
    assert ran
    assert sim.status.weight == 10
    for _ in range(5):
        sim.step(5.0, preflight=_passed(["numpy", "lxml"], "Failed"))
    assert sim.status.phase == Phase.FAILED
    assert sim.ft.replicas == 0
