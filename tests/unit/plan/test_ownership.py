"""Ownership (ftrollout/plan/ownership.py): a foreign twin and a second rollout touch nothing."""

from __future__ import annotations

import pytest
from planfixtures import at_step, make_spec
from simcluster import Sim

from ftrollout.model.api import Phase
from ftrollout.plan.ownership import first_claim
from ftrollout.plan.types import Claim, Ownership

ME = "web"


def ownership(
    claims: tuple[Claim, ...] = (Claim(ME, "2030-01-01T00:00:00Z"),),
    controller: tuple[str, str] | None = ("FreeThreadedRollout/web", "uid-me"),
) -> Ownership:
    return Ownership(
        rollout=ME, uid="uid-me", claims=claims, twin="web-ft", twin_controller=controller
    )


@pytest.mark.parametrize(
    ("claims", "first"),
    [
        ((Claim("b", "2030-01-01T00:00:00Z"), Claim("a", "2030-01-02T00:00:00Z")), "b"),
        ((Claim("b", "2030-01-01T00:00:00Z"), Claim("a", "2030-01-01T00:00:00Z")), "a"),
        ((Claim("a", ""), Claim("b", "2030-01-01T00:00:00Z")), "b"),  # unknown time: last
    ],
)
def test_the_first_claim_is_the_oldest_then_by_name(claims: tuple[Claim, ...], first: str) -> None:
    assert first_claim(claims) == next(c for c in claims if c.name == first)
    assert first_claim(tuple(reversed(claims))) == first_claim(claims)


@pytest.mark.parametrize(
    "controller", [None, ("FreeThreadedRollout/web", "uid-old"), ("Helm/x", "uid-x")]
)
def test_a_twin_controlled_by_anything_else_fails_the_rollout_and_freezes_replicas(
    controller: tuple[str, str] | None,
) -> None:
    # Without this rollout's label (a labelled twin of an earlier `web` is adopted: below).
    sim = at_step(Sim(make_spec()), 0)
    before = sim.replicas
    res = sim.step(ownership=ownership(controller=controller), twin_owned=False)
    assert res.status.phase == Phase.FAILED
    assert (res.target_replicas, res.twin_replicas) == (None, None)
    assert sim.replicas == before
    assert "web-ft" in res.status.message
    assert sim.events(res) == ["TwinNotOwned"]
    assert sim.events(sim.step(ownership=ownership(controller=controller), twin_owned=False)) == []
    # Ours again (the foreign Deployment went and our twin is back): carried on from status.
    res = sim.step(ownership=ownership())
    assert res.status.phase == Phase.PROGRESSING
    assert res.status.step_index == 0


def test_a_second_rollout_on_the_target_is_failed_naming_the_first() -> None:
    sim = Sim(make_spec())
    claims = (Claim(ME, "2030-01-02T00:00:00Z"), Claim("older", "2030-01-01T00:00:00Z"))
    res = sim.step(ownership=ownership(claims=claims))
    assert res.status.phase == Phase.FAILED
    assert "'older'" in res.status.message
    assert (res.target_replicas, res.twin_replicas) == (None, None)
    assert res.status.replicas.target == 0  # N not taken: the first rollout owns the capacity
    assert sim.events(res) == ["TargetClaimed"]
    # The first is deleted: this one starts from scratch, N from the target.
    res = sim.step(ownership=ownership(claims=claims[:1]))
    assert res.status.phase in (Phase.PENDING, Phase.PROGRESSING)
    assert res.status.replicas.target == sim.n


OLDER = Claim("older", "2030-01-01T00:00:00Z")
ACTIVE = Claim(ME, "2030-02-01T00:00:00Z")


def test_the_rollout_that_owns_the_twin_keeps_rolling_when_an_older_one_joins() -> None:
    """An older rollout whose targetRef is edited to this target does not take it over: the
    rollout controlling the twin keeps its guardrails (here a crash storm rolls back)."""
    sim = at_step(Sim(make_spec(((10, "1s"), (50, "1h"), (100, None)))), 1)
    res = sim.step(ownership=ownership(claims=(ACTIVE,)))
    assert res.status.phase == Phase.PROGRESSING
    for i in range(4):  # budget 3
        sim.incident(pod=f"web-ft-{i}")
    res = sim.step(ownership=ownership(claims=(ACTIVE, OLDER)))
    assert res.status.phase == Phase.ROLLED_BACK, res.status.message


def test_the_newcomer_is_failed_naming_the_rollout_that_owns_the_twin() -> None:
    """The other side: `older` sees the twin controlled by `web` and is the one Failed."""
    fresh = Sim(make_spec(), n=5)
    fresh.twin_exists = True
    fresh.ft.replicas = fresh.ft.ready = 5
    older = Ownership(
        rollout="older",
        uid="uid-older",
        claims=(OLDER, ACTIVE),
        twin="web-ft",
        twin_controller=("FreeThreadedRollout/web", "uid-me"),
    )
    res = fresh.step(ownership=older)
    assert res.status.phase == Phase.FAILED
    assert "'web'" in res.status.message
    assert fresh.events(res) == ["TargetClaimed"]
    assert (res.target_replicas, res.twin_replicas) == (None, None)


@pytest.mark.parametrize(
    ("controller", "label", "named"),
    [
        (("FreeThreadedRollout/other", "uid-other"), None, "'other'"),
        (None, "other", "'other'"),  # the label alone (an ownerReference removed by hand)
    ],
)
def test_a_target_that_is_another_rollouts_twin_is_refused(
    controller: tuple[str, str] | None, label: str | None, named: str
) -> None:
    sim = Sim(make_spec())
    own = Ownership(
        rollout=ME,
        uid="uid-me",
        claims=(ACTIVE,),
        twin="app-ft-ft",
        target="app-ft",
        target_controller=controller,
        target_rollout_label=label,
    )
    res = sim.step(ownership=own)
    assert res.status.phase == Phase.FAILED
    assert named in res.status.message
    assert sim.events(res) == ["TargetIsATwin"]
    assert (res.target_replicas, res.twin_replicas) == (None, None)
    assert res.status.target is None


@pytest.mark.parametrize(
    "controller",
    [
        ("FreeThreadedRollout/web", "uid-old"),  # re-created after its finalizer was removed
        None,  # deleted with --cascade=orphan: the ownerReference is gone, the label stays
    ],
)
def test_a_recreated_rollout_adopts_its_predecessors_twin_and_keeps_n(
    controller: tuple[str, str] | None,
) -> None:
    """A rollout of the same name (so the old one no longer exists) finds the twin it made,
    labelled with its name: it adopts it (like a Deployment its orphaned ReplicaSets) and
    counts it for N, instead of Failing and letting garbage collection halve the service."""
    from datetime import UTC, datetime

    from ftrollout.model import api
    from ftrollout.plan import FIELD_MANAGER, Observation, Workload, plan

    own = Ownership(
        rollout=ME, uid="uid-new", claims=(Claim(ME, "2026-01-01T00:00:00Z"),),
        twin="app-ft", twin_controller=controller,
    )  # fmt: skip
    obs = Observation(
        now=datetime(2026, 1, 1, tzinfo=UTC), generation=1, revision="r",
        target=Workload(5, 5, FIELD_MANAGER), twin=Workload(5, 5), ownership=own,
        twin_owned=True,
    )  # fmt: skip
    res = plan(make_spec(), api.RolloutStatus(), obs)
    assert res.status.phase != Phase.FAILED, res.status.message
    assert res.adopt_twin
    assert res.status.replicas.target == 10
    assert res.target_replicas is not None
    assert res.target_replicas >= 5


def test_a_twin_of_another_name_or_without_the_label_is_never_adopted() -> None:
    sim = Sim(make_spec())
    sim.twin_exists = True
    for controller, label in ((("FreeThreadedRollout/other", "uid-o"), True), (None, False)):
        own = ownership(controller=controller)
        res = sim.step(ownership=own, twin_owned=label)
        assert res.status.phase == Phase.FAILED
        assert not res.adopt_twin
