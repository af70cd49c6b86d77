"""Fresh baseline (ftrollout/plan/baseline.py): the twin's size at every step, extra capacity,
removed at promotion and rollback, never someone else's Deployment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from planfixtures import DESIGN_STEPS, StepDef, at_step, make_spec, pause_elapsed, step_checked
from simcluster import Sim

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan import Result, Workload
from ftrollout.plan.baseline import baseline_manifest, baseline_name
from ftrollout.plan.twin import split, twin_manifest
from ftrollout.plan.types import Claim, Ownership

ME = "web"


def with_baseline(
    steps: tuple[StepDef, ...] = DESIGN_STEPS, baseline: dict[str, Any] | None = None
) -> api.RolloutSpec:
    raw = api.dump(make_spec(steps))
    raw["analysis"] = {"baseline": {} if baseline is None else baseline}
    return api.parse_spec(raw)


def ownership(baseline: tuple[str, str] | None) -> Ownership:
    return Ownership(
        rollout=ME,
        uid="uid-me",
        claims=(Claim(ME, "2030-01-01T00:00:00Z"),),
        twin="app-ft",
        twin_controller=("FreeThreadedRollout/web", "uid-me"),
        baseline_controller=baseline,
    )


OURS = ("FreeThreadedRollout/web", "uid-me")


def at_step1(sim: Sim) -> Sim:
    """Step 1 (50 % of the DESIGN steps) reached: past step 0's timed pause."""
    at_step(sim, 0)
    pause_elapsed(sim, 600)
    return at_step(sim, 1)


def test_baseline_is_the_twins_step_size_at_every_step_then_removed_at_promotion() -> None:
    n = 10
    sim = Sim(with_baseline(((10, "1m"), (50, "1m"), (100, None))), n=n, lag=2)
    first = sim.step()
    assert first.baseline_replicas == 1  # created with the twin's first step
    seen: set[tuple[int, int]] = set()
    for _ in range(300):
        res = step_checked(sim, n, advance=10.0)
        st = res.status
        if st.phase == Phase.PROMOTED:
            break
        if st.phase == Phase.PAUSED and st.step_index == 2:
            sim.action = "promote"
            continue
        assert st.phase in (Phase.PROGRESSING, Phase.PAUSED)
        assert st.step_index is not None
        weight = sim.spec.steps[st.step_index].weight
        assert res.baseline_replicas == split(n, weight)[1]
        seen.add((weight, res.baseline_replicas))
    else:
        raise AssertionError(f"not promoted: {sim.status.message}")
    assert {w for w, _ in seen} == {10, 50, 100}
    assert res.baseline_replicas == 0  # removed at promotion
    assert sim.step().baseline_replicas == 0


def test_baseline_never_changes_either_track() -> None:
    """The capacity rule ignores it: replicas written are the same with and without it, call
    by call, through steps, promotion and a later outside scale."""
    runs = []
    for spec in (make_spec(((30, "1m"), (100, "1m"))), with_baseline(((30, "1m"), (100, "1m")))):
        sim = Sim(spec, n=7, lag=3)
        out = []
        for i in range(60):
            if i == 30:
                sim.scale_target(sim.std.replicas + 2)
            res = step_checked(sim, 7, advance=10.0) if i < 30 else sim.step(10.0)
            out.append((res.target_replicas, res.twin_replicas, res.status.replicas))
        runs.append(out)
    assert runs[0] == runs[1]


def test_baseline_off_or_disabled_is_never_wanted() -> None:
    for spec in (make_spec(), with_baseline(baseline={"enabled": False})):
        sim = at_step1(Sim(spec))
        assert sim.history
        assert all(r.baseline_replicas == 0 for r in sim.history)


@pytest.mark.parametrize("how", ["rollback", "gil"])
def test_baseline_removed_at_rollback(how: str) -> None:
    sim = at_step1(Sim(with_baseline()))
    assert sim.history[-1].baseline_replicas == 5
    if how == "rollback":
        sim.action = "rollback"
        res = sim.step()
    else:
        res = sim.step(pods=sim.ft_pods(enabled=True))
    assert res.status.phase == Phase.ROLLED_BACK
    assert res.baseline_replicas == 0


def test_paused_keeps_the_steps_baseline() -> None:
    sim = at_step(Sim(with_baseline()), 0)
    sim.action = "pause"
    sim.step()
    pause_elapsed(sim, 3600)
    res = sim.step()
    assert res.status.phase == Phase.PAUSED
    assert res.baseline_replicas == 1


def test_removed_when_the_spec_turns_it_off_mid_rollout() -> None:
    sim = at_step1(Sim(with_baseline()))
    sim.spec = with_baseline(baseline={"enabled": False})
    res = sim.step(baseline=Workload(5, 5), ownership=ownership(OURS))
    assert res.status.phase == Phase.PROGRESSING
    assert res.baseline_replicas == 0


# What the shell observes while the rollout's own baseline runs at step 1.
RUNNING = {"baseline": Workload(5, 5), "ownership": ownership(OURS)}


def _fail_on_spec(sim: Sim) -> Result:
    sim.spec_error = api.SpecError("spec.analysis.prometheus.address", "not in the allow-list")
    # Without a readable spec the shell observes no ownership: it checks the uid itself.
    return sim.step(baseline=Workload(5, 5), ownership=None)


def _fail_on_missing_target(sim: Sim) -> Result:
    sim.target_exists = False
    return sim.step(**RUNNING)


def _fail_on_target_changed(sim: Sim) -> Result:
    raw = api.dump(sim.spec)
    raw["targetRef"]["name"] = "other"
    sim.spec = api.parse_spec(raw)
    return sim.step(**RUNNING)  # the baseline of the target it holds


def _fail_on_twin_not_owned(sim: Sim) -> Result:
    own = ownership(OURS)
    foreign_twin = Ownership(**{**own.__dict__, "twin_controller": ("Helm/x", "uid-x")})
    return sim.step(baseline=Workload(5, 5), ownership=foreign_twin, twin_owned=False)


@pytest.mark.parametrize(
    ("fail", "reason"),
    [
        (_fail_on_spec, "InvalidSpec"),
        (_fail_on_target_changed, "TargetChanged"),
        (_fail_on_twin_not_owned, "TwinNotOwned"),
    ],
)
def test_baseline_removed_when_the_rollout_fails_early(
    fail: Callable[[Sim], Result], reason: str
) -> None:
    """README: the baseline is deleted in Failed. A Failed that returns before the steps (the
    spec, the target, the twin) leaves both tracks as they are, but not the extra baseline pods
    taking a share of the Service's traffic; the shell deletes only a baseline it controls."""
    sim = at_step1(Sim(with_baseline()))
    assert sim.history[-1].baseline_replicas == 5
    res = fail(sim)
    assert res.status.phase == Phase.FAILED
    assert next(c for c in res.status.conditions if c.type == "Progressing").reason == reason
    assert (res.target_replicas, res.twin_replicas) == (None, None)
    assert res.baseline_replicas == 0


def test_without_the_target_the_baseline_is_kept_until_the_twin_serves_n() -> None:
    """The target gone (or being deleted): the Service's Ready pods are the twin's and the
    baseline's standard ones. Removing the baseline then left 5 of N = 10 Ready at step 1
    (review of h-b): it stays until the twin alone is Ready at N, then goes as in any Failed."""
    sim = at_step1(Sim(with_baseline()))
    assert sim.history[-1].baseline_replicas == 5
    res = _fail_on_missing_target(sim)
    assert res.status.phase == Phase.FAILED
    assert next(c for c in res.status.conditions if c.type == "Progressing").reason == (
        "TargetNotFound"
    )
    n = res.status.replicas.target
    assert res.status.replicas.free_threaded_ready < n
    assert (res.target_replicas, res.twin_replicas, res.baseline_replicas) == (None, None, None)
    # Someone scales the twin to N: the baseline is no longer needed for capacity.
    res = sim.step(twin=Workload(n, n), **RUNNING)
    assert res.status.phase == Phase.FAILED
    assert res.baseline_replicas == 0
    # Ready below N again (a pod lost): nothing is created either.
    res = sim.step(twin=Workload(n, n - 1), baseline=None, ownership=ownership(None))
    assert res.baseline_replicas is None


@pytest.mark.parametrize(
    "controller", [None, ("Helm/x", "uid-x"), ("FreeThreadedRollout/web", "old")]
)
def test_a_foreign_baseline_fails_the_rollout_and_touches_nothing(
    controller: tuple[str, str] | None,
) -> None:
    sim = at_step(Sim(with_baseline()), 0)
    before = sim.replicas
    res = sim.step(baseline=Workload(3, 3), ownership=ownership(controller))
    assert res.status.phase == Phase.FAILED
    assert (res.target_replicas, res.twin_replicas, res.baseline_replicas) == (None, None, None)
    assert sim.replicas == before
    assert "app-baseline" in res.status.message
    assert sim.events(res) == ["BaselineNotOwned"]
    # The name is free again (deleted by its owner): carried on from status.
    res = sim.step(ownership=ownership(None))
    assert res.status.phase == Phase.PROGRESSING
    assert res.baseline_replicas == 1


def test_own_baseline_or_baseline_off_is_no_conflict() -> None:
    sim = at_step(Sim(with_baseline()), 0)
    assert sim.step(baseline=Workload(1, 1), ownership=ownership(OURS)).status.phase == (
        Phase.PROGRESSING
    )
    sim = at_step(Sim(make_spec()), 0)
    foreign = sim.step(baseline=Workload(1, 1), ownership=ownership(("Helm/x", "uid-x")))
    assert foreign.status.phase == Phase.PROGRESSING


def test_a_foreign_baseline_after_promotion_is_ignored() -> None:
    sim = Sim(with_baseline(((100, None),)), n=2)
    sim.until(lambda s: s.status.phase == Phase.PAUSED)
    sim.action = "promote"
    sim.until(lambda s: s.status.phase == Phase.PROMOTED)
    res = sim.step(baseline=Workload(2, 2), ownership=ownership(("Helm/x", "uid-x")))
    assert res.status.phase == Phase.PROMOTED
    assert res.baseline_replicas == 0  # the shell deletes only its own: see the KMock tests


TARGET: dict[str, Any] = {
    "metadata": {"name": "app", "namespace": "ns", "labels": {"team": "a"}},
    "spec": {
        "replicas": 4,
        "selector": {"matchLabels": {"app": "app"}},
        "strategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": {"app": "app"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
        },
    },
}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_manifest_is_the_standard_template_owned_by_the_rollout() -> None:
    m = baseline_manifest(
        rollout_name=ME, rollout_uid="uid-me", target=TARGET, revision="r1", replicas=2
    )
    assert m["metadata"]["name"] == baseline_name("app") == "app-baseline"
    assert m["spec"]["replicas"] == 2
    assert m["spec"]["strategy"] == {"type": "RollingUpdate"}
    (owner,) = m["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"], owner["kind"]) == (
        "uid-me",
        True,
        "FreeThreadedRollout",
    )
    template = m["spec"]["template"]
    assert template["spec"] == TARGET["spec"]["template"]["spec"]  # the standard image as is
    labels = template["metadata"]["labels"]
    assert labels == {
        "app": "app",
        "freethreaded.dev/track": "baseline",
        "freethreaded.dev/rollout": ME,
    }
    assert TARGET["spec"]["template"]["metadata"]["labels"] == {"app": "app"}  # not mutated
    # It serves the Service (the target's labels) and its selector takes only its own pods.
    twin = twin_manifest(
        rollout_name=ME,
        rollout_uid="uid-me",
        target=TARGET,
        spec=make_spec().free_threaded,
        revision="r1",
        replicas=1,
    )
    twin_labels = twin["spec"]["template"]["metadata"]["labels"]
    target_labels = TARGET["spec"]["template"]["metadata"]["labels"]
    assert _matches(TARGET["spec"]["selector"], labels)
    assert _matches(m["spec"]["selector"], labels)
    assert not _matches(m["spec"]["selector"], target_labels)
    assert not _matches(m["spec"]["selector"], twin_labels)
    assert not _matches(twin["spec"]["selector"], labels)
