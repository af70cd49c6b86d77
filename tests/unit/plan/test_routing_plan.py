"""The planner with traffic routing: what the route and both tracks look like, in order.

Traffic moves only to Ready free-threaded pods; a rollback restores the route before the
free-threaded pods go; promotion moves the route to 100 before the standard pods go; the
standard track stays at N until promotion; ready capacity never drops below N.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from planfixtures import cond, make_spec, pause_elapsed
from simcluster import Sim

from ftrollout.model import api
from ftrollout.plan import Observation, PodGil, Result
from ftrollout.plan.routing import Services, rule_weights
from ftrollout.plan.types import RouteObservation

SVC = Services(stable="app", free_threaded="app-ft")
USER_ROUTE: dict[str, Any] = {
    "parentRefs": [{"name": "gw"}],
    "rules": [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": "app", "port": 8080}],
        }
    ],
}


def routed_spec(matches: list[dict[str, Any]] | None = None, **kw: Any) -> api.RolloutSpec:
    raw = api.dump(make_spec(**kw))
    raw["trafficRouting"] = {
        "gatewayAPI": {
            "httpRoutes": [{"name": "web"}],
            "stableService": "app",
            "matches": matches or [],
        }
    }
    return api.parse_spec(raw)


@dataclass
class RoutedSim(Sim):
    route: dict[str, Any] | None = field(default_factory=lambda: copy.deepcopy(USER_ROUTE))
    route_writes: int = 0
    fail_route_writes: bool = False
    # (route weights, ft ready, std ready) after every applied result
    trace: list[tuple[list[int], int, int]] = field(default_factory=list)

    def observe(self, **extra: object) -> Observation:
        extra.setdefault("routes", (RouteObservation("web", copy.deepcopy(self.route)),))
        return super().observe(**extra)

    def apply(self, res: Result) -> None:
        super().apply(res)
        for name, spec in res.route_writes:
            assert name == "web"
            if not self.fail_route_writes:
                self.route = copy.deepcopy(spec)
                self.route_writes += 1
        self.trace.append((self.weights, self.ft.ready, self.std.ready))

    @property
    def weights(self) -> list[int]:
        return rule_weights(self.route, SVC) or [0]


def check_invariants(sim: RoutedSim, n: int = 10) -> None:
    for weights, ft_ready, std_ready in sim.trace:
        # Traffic only to Ready pods, and each track has what its traffic needs.
        assert ft_ready >= math.ceil(n * max(weights) / 100), sim.trace
        assert std_ready >= math.ceil(n * (100 - min(weights)) / 100), sim.trace
        assert ft_ready + std_ready >= n


def run_to(sim: RoutedSim, idx: int) -> None:
    for _ in range(100):
        sim.step(1.0)
        if sim.status.step_index == idx and sim.status.step_started_at is not None:
            return
    raise AssertionError(sim.status.message)


def test_the_route_follows_the_steps_and_standard_stays_at_n() -> None:
    sim = RoutedSim(routed_spec(), lag=2)
    run_to(sim, 0)
    assert sim.weights == [10]
    assert (sim.std.replicas, sim.ft.replicas) == (10, 1)  # not lowered to 9
    pause_elapsed(sim, 300)
    run_to(sim, 1)
    assert sim.weights == [50]
    assert (sim.std.replicas, sim.ft.replicas) == (10, 5)
    st = sim.status.traffic_routing
    assert st is not None
    assert st.weight == 50
    assert st.service == "app-ft"
    assert cond(sim.status, "TrafficRouted").status == "True"
    check_invariants(sim)


def test_weight_rises_only_with_ready_free_threaded_pods() -> None:
    sim = RoutedSim(routed_spec(steps=((50, "5m"), (100, None))), lag=3)
    seen: list[tuple[int, int]] = []
    for _ in range(12):
        sim.step(1.0)
        seen.append((sim.weights[0], sim.ft.ready))
    # 0 until a pod is Ready, then 10 % per Ready pod up to the step's 50 %.
    assert all(w <= 10 * ready for w, ready in seen)
    assert seen[-1] == (50, 5)
    check_invariants(sim)


def test_rollback_restores_the_route_first_then_scales_down() -> None:
    sim = RoutedSim(routed_spec())
    run_to(sim, 0)
    pause_elapsed(sim, 300)
    run_to(sim, 1)
    sim.action = "rollback"
    sim.step(1.0)
    assert sim.route == USER_ROUTE  # restored exactly, in the same reconcile
    assert sim.ft.replicas == 5  # the free-threaded pods stay until the route is seen restored
    sim.step(1.0)
    assert sim.ft.replicas == 0
    assert sim.status.phase == api.Phase.ROLLED_BACK
    assert sim.status.traffic_routing is not None
    assert sim.status.traffic_routing.routes == []
    check_invariants(sim)


def test_a_failed_route_write_holds_the_free_threaded_pods() -> None:
    sim = RoutedSim(routed_spec())
    run_to(sim, 0)
    sim.fail_route_writes = True
    sim.action = "rollback"
    for _ in range(5):
        sim.step(1.0)
    assert sim.weights == [10]
    assert sim.ft.replicas == 1  # still taking 10 % of requests: not scaled away
    # Its record is kept until the route is seen restored.
    st = sim.status.traffic_routing
    assert st is not None
    assert st.routes
    sim.fail_route_writes = False
    sim.run(3)
    assert sim.route == USER_ROUTE
    assert sim.ft.replicas == 0


def test_promotion_moves_the_route_to_100_before_the_standard_track_goes() -> None:
    sim = RoutedSim(routed_spec(steps=((10, None), (100, None))), lag=2)
    run_to(sim, 0)
    sim.action = "promote-full"
    for _ in range(20):
        sim.step(1.0)
    assert sim.status.phase == api.Phase.PROMOTED
    assert sim.weights == [100]
    assert (sim.std.replicas, sim.ft.replicas) == (0, 10)
    check_invariants(sim)


def test_matches_route_only_matching_requests_then_everything_at_promotion() -> None:
    matches = [{"path": {"type": "PathPrefix", "value": "/catalog"}, "method": "GET"}]
    sim = RoutedSim(routed_spec(matches=matches, steps=((25, None), (100, None))))
    run_to(sim, 0)
    assert sim.route is not None
    rules = sim.route["rules"]
    assert len(rules) == 2
    assert rules[0]["matches"] == matches
    assert rules[1] == USER_ROUTE["rules"][0]
    sim.run(3)
    assert len(sim.route["rules"]) == 2  # never duplicated
    sim.action = "promote-full"
    for _ in range(20):
        sim.step(1.0)
    assert sim.status.phase == api.Phase.PROMOTED
    assert sim.route["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {"name": "app", "port": 8080, "weight": 0},
                {"name": "app-ft", "port": 8080, "weight": 100},
            ],
        }
    ]
    check_invariants(sim)


def test_a_user_rule_added_mid_rollout_is_kept_and_split() -> None:
    sim = RoutedSim(routed_spec())
    run_to(sim, 0)
    assert sim.route is not None
    new_rule = {"matches": [{"path": {"type": "Exact", "value": "/new"}}], "backendRefs": [
        {"name": "app", "port": 8080}
    ]}  # fmt: skip
    sim.route["rules"].append(copy.deepcopy(new_rule))
    sim.run(2)
    assert sim.route["rules"][1]["backendRefs"][1] == {"name": "app-ft", "port": 8080, "weight": 10}
    sim.action = "rollback"
    sim.run(2)
    assert sim.route == {**USER_ROUTE, "rules": [*USER_ROUTE["rules"], new_rule]}


def test_a_missing_route_holds_the_rollout_before_step_1_with_a_condition() -> None:
    sim = RoutedSim(routed_spec(), route=None)
    sim.run(3)
    assert sim.status.phase == api.Phase.PENDING
    assert sim.ft.replicas == 0
    c = cond(sim.status, "TrafficRouted")
    assert c.status == "False"
    assert "'web' not found" in c.message
    assert "waiting for traffic routing" in sim.status.message
    sim.route = copy.deepcopy(USER_ROUTE)
    run_to(sim, 0)
    assert sim.weights == [10]


def test_a_shell_routing_error_never_moves_traffic() -> None:
    sim = RoutedSim(routed_spec())
    run_to(sim, 0)
    before = copy.deepcopy(sim.route)
    pause_elapsed(sim, 300)
    for _ in range(5):
        sim.step(1.0, routing_error="Service 'app' selects the free-threaded pods too")
    assert sim.route == before
    assert cond(sim.status, "TrafficRouted").reason == "RoutingError"


def removed(sim: RoutedSim) -> None:
    """`spec.trafficRouting` deleted from the rollout (kubectl edit, a GitOps change)."""
    sim.spec = sim.spec.model_copy(update={"traffic_routing": None})


def warnings(sim: RoutedSim, reason: str) -> list[str]:
    return [e.message for r in sim.history for e in r.events if e.reason == reason]


def at_half(sim: RoutedSim) -> None:
    run_to(sim, 0)
    pause_elapsed(sim, 300)
    run_to(sim, 1)
    assert sim.weights == [50]
    assert (sim.std.replicas, sim.ft.replicas) == (10, 5)


def test_routing_removed_before_step_1_is_the_replica_split() -> None:
    sim = RoutedSim(routed_spec(), route=None)
    sim.run(2)
    assert sim.status.phase == api.Phase.PENDING
    sim.route = copy.deepcopy(USER_ROUTE)
    removed(sim)
    run_to(sim, 0)
    assert sim.route == USER_ROUTE
    assert (sim.std.replicas, sim.ft.replicas) == (9, 1)
    assert sim.status.traffic_routing is None
    assert not warnings(sim, "TrafficRoutingRemoved")


def test_routing_removed_mid_rollout_restores_the_route_and_holds_the_standard_track() -> None:
    """The stable Service selects only standard pods: once the route is restored they serve
    every request, so the standard track stays at N and the rollout holds."""
    sim = RoutedSim(routed_spec())
    at_half(sim)
    removed(sim)
    sim.run(5)
    assert sim.route == USER_ROUTE
    assert (sim.std.replicas, sim.std.ready) == (10, 10)  # not lowered to the replica split
    assert sim.ft.replicas == 5  # kept: re-adding routing carries on where it was
    assert sim.status.phase == api.Phase.PAUSED
    assert "spec.trafficRouting" in sim.status.message
    c = cond(sim.status, "TrafficRouted")
    assert (c.status, c.reason) == ("False", "RoutingRemoved")
    assert "selects only the standard pods" in c.message
    (warning,) = warnings(sim, "TrafficRoutingRemoved")  # once, not at every reconcile
    assert "spec.trafficRouting" in warning
    assert "kubectl ftr rollback" in warning
    assert sim.status.traffic_routing is not None  # routing is still this revision's
    assert sim.status.traffic_routing.routes == []
    # Nothing moves however long it waits: the pause is over, the next step is not taken.
    pause_elapsed(sim, 3600)
    sim.run(3)
    assert (sim.status.step_index, sim.std.replicas) == (1, 10)
    check_invariants(sim)


def test_promote_after_routing_was_removed_keeps_the_standard_track() -> None:
    """A promotion would take the standard track to 0: the stable Service, which the routes
    now send everything to, would have no endpoints."""
    sim = RoutedSim(routed_spec(steps=((50, "1m"), (100, None))))
    run_to(sim, 0)
    removed(sim)
    sim.run(2)
    for action in ("promote-full", "promote", "resume"):
        sim.action = action
        sim.run(4)
        assert sim.status.phase == api.Phase.PAUSED, action
        assert sim.status.promoted_at is None
        assert (sim.std.replicas, sim.std.ready) == (10, 10), action
    ignored = warnings(sim, "ActionIgnored")
    assert len(ignored) == 3
    assert all("spec.trafficRouting" in m for m in ignored)
    check_invariants(sim)


def test_routing_added_back_carries_on_from_the_step() -> None:
    sim = RoutedSim(routed_spec())
    at_half(sim)
    spec = sim.spec
    removed(sim)
    sim.run(3)
    assert sim.route == USER_ROUTE
    sim.spec = spec
    sim.run(3)
    assert sim.weights == [50]
    assert sim.status.phase == api.Phase.PROGRESSING
    assert (sim.status.step_index, sim.std.replicas, sim.ft.replicas) == (1, 10, 5)
    assert cond(sim.status, "TrafficRouted").status == "True"
    check_invariants(sim)


def test_rollback_after_routing_was_removed_ends_the_hold() -> None:
    sim = RoutedSim(routed_spec())
    at_half(sim)
    removed(sim)
    sim.run(3)
    sim.action = "rollback"
    sim.run(3)
    assert sim.status.phase == api.Phase.ROLLED_BACK
    assert (sim.std.replicas, sim.ft.replicas) == (10, 0)
    assert sim.status.traffic_routing is None
    check_invariants(sim)


def test_routing_removed_after_promotion_leaves_the_routes_on_the_free_threaded_pods() -> None:
    """Promoted: the routes send everything to <target>-ft and the standard track is at 0.
    Restoring them would send every request to a stable Service without a Ready pod."""
    sim = RoutedSim(routed_spec(steps=((10, None), (100, None))))
    run_to(sim, 0)
    sim.action = "promote-full"
    sim.until(lambda s: s.status.phase == api.Phase.PROMOTED and s.std.replicas == 0)
    sim.run(2)
    removed(sim)
    sim.run(5)
    assert sim.weights == [100]
    assert (sim.ft.replicas, sim.ft.ready) == (10, 10)
    assert sim.status.phase == api.Phase.PROMOTED
    c = cond(sim.status, "TrafficRouted")
    assert (c.status, c.reason) == ("False", "RoutingRemoved")
    (warning,) = warnings(sim, "TrafficRoutingRemoved")
    assert "spec.trafficRouting" in warning
    st = sim.status.traffic_routing
    assert st is not None
    assert st.routes  # the record stays: the routes are still the operator's edit
    check_invariants(sim)


def test_without_routing_nothing_changes() -> None:
    sim = RoutedSim(make_spec(), route=None)
    run_to(sim, 0)
    assert (sim.std.replicas, sim.ft.replicas) == (9, 1)
    assert sim.status.traffic_routing is None
    assert all(not r.route_writes for r in sim.history)


def promoted(sim: RoutedSim) -> None:
    run_to(sim, 0)
    sim.action = "promote-full"
    sim.until(lambda s: s.status.phase == api.Phase.PROMOTED and s.std.replicas == 0)
    sim.run(2)
    assert sim.weights == [100]
    sim.trace.clear()


def test_rollback_after_promotion_restores_the_route_once_the_standard_pods_are_ready() -> None:
    """Promoted, the standard track is at 0: the route goes back to the stable Service only once
    N standard pods are Ready, and the free-threaded pods stay until then."""
    sim = RoutedSim(routed_spec(steps=((10, None), (100, None))), lag=3)
    promoted(sim)
    sim.action = "rollback"
    sim.run(10)
    assert sim.status.phase == api.Phase.ROLLED_BACK
    assert sim.route == USER_ROUTE
    assert (sim.std.replicas, sim.ft.replicas) == (10, 0)
    assert sim.trace[0][0] == [100]  # not restored while the standard pods are starting
    check_invariants(sim)


def test_a_new_revision_after_promotion_restores_the_route_once_the_standard_pods_are_ready() -> (
    None
):
    sim = RoutedSim(routed_spec(steps=((10, "1h"), (100, None))), lag=3)
    promoted(sim)
    sim.revision = "rev2"
    run_to(sim, 0)
    assert sim.weights == [10]
    check_invariants(sim)


def test_routing_added_back_keeps_a_guardrail_hold_that_came_meanwhile() -> None:
    sim = RoutedSim(routed_spec(gil={"maxPods": 0, "action": "Pause"}))
    at_half(sim)
    spec = sim.spec
    removed(sim)
    sim.run(2)
    sim.pods = (PodGil("app-ft-0", True, modules=("numpy",)),)
    sim.run(2)
    assert "TrafficRoutingRemoved" in sim.status.message
    assert "GILFallback" in sim.status.message
    sim.spec = spec
    sim.run(3)
    assert sim.status.phase == api.Phase.PAUSED
    assert sim.status.message.startswith("paused (GILFallback)")
    assert "TrafficRoutingRemoved" not in sim.status.message
    assert (sim.std.replicas, sim.ft.replicas) == (10, 5)
    check_invariants(sim)


def test_rollback_after_routing_was_removed_after_promotion() -> None:
    sim = RoutedSim(routed_spec(steps=((10, None), (100, None))), lag=3)
    promoted(sim)
    removed(sim)
    sim.run(2)
    (warning,) = warnings(sim, "TrafficRoutingRemoved")
    assert "kubectl ftr rollback" in warning
    sim.action = "rollback"
    sim.run(10)
    assert sim.status.phase == api.Phase.ROLLED_BACK
    assert sim.route == USER_ROUTE
    assert (sim.std.replicas, sim.ft.replicas) == (10, 0)
    assert sim.status.traffic_routing is None
    check_invariants(sim)


def test_routing_removed_reads_the_route_weights_without_the_spec() -> None:
    """The stable Service's name is gone with the spec: the route's weights are still read
    right (the stable backend is the one the free-threaded backend was put beside), so the
    twin is not raised to N for the moment before the route is seen restored."""
    sim = RoutedSim(routed_spec())
    at_half(sim)
    sim.writes.clear()
    removed(sim)
    sim.run(3)
    assert sim.route == USER_ROUTE
    assert [w for w in sim.writes if w[0] in ("twin", "target")] == []


def test_a_new_revision_after_routing_was_removed_is_the_replica_split() -> None:
    """Promoted, routing removed (the routes left on the free-threaded pods), then a new
    revision: the routes go back once N standard pods are Ready, and only then does step 1
    start, as a replica split (the routing of the old revision does not hold the new one)."""
    sim = RoutedSim(routed_spec(steps=((10, "1h"), (100, None))), lag=3)
    promoted(sim)
    removed(sim)
    sim.run(2)
    sim.revision = "rev2"
    sim.until(lambda s: s.route == USER_ROUTE)
    assert sim.status.phase == api.Phase.PENDING
    check_invariants(sim)  # the route went back only to N Ready standard pods
    run_to(sim, 0)
    assert sim.status.phase == api.Phase.PROGRESSING
    assert (sim.std.replicas, sim.ft.replicas) == (9, 1)
    assert sim.status.traffic_routing is None


def promoted_sim(matches: list[dict[str, Any]] | None = None) -> RoutedSim:
    sim = RoutedSim(routed_spec(matches=matches, steps=((10, None), (100, None))), lag=2)
    for _ in range(5):
        sim.step(1.0)
    sim.action = "promote-full"
    for _ in range(20):
        sim.step(1.0)
    assert sim.status.phase == api.Phase.PROMOTED
    assert sim.weights == [100]
    assert (sim.std.replicas, sim.std.ready) == (0, 0)
    return sim


def test_a_twin_pod_lost_after_promotion_keeps_the_route_off_the_empty_standard_track() -> None:
    sim = promoted_sim()
    sim.ft.ready -= 1  # a free-threaded pod crashes or is evicted
    sim.step(1.0)
    assert sim.weights == [100], (sim.weights, sim.std)


def test_the_twin_scaled_up_after_promotion_keeps_the_route_off_the_empty_standard_track() -> None:
    sim = promoted_sim()
    sim.ft.scale(20)  # an HPA on the twin after promotion
    for _ in range(4):
        sim.step(1.0)
        assert sim.weights == [100], (sim.weights, sim.std, sim.ft)


@pytest.mark.parametrize("matches", [[], [{"path": {"type": "PathPrefix", "value": "/c"}}]])
def test_rollback_after_promotion_moves_traffic_only_to_ready_standard_pods(
    matches: list[dict[str, Any]],
) -> None:
    sim = promoted_sim(matches)
    sim.action = "rollback"
    for _ in range(12):
        sim.step(1.0)
        assert sim.route is not None
        # every rule, split or left on the stable Service alone (free-threaded share 0)
        shares = [
            w for rule in sim.route["rules"] for w in rule_weights({"rules": [rule]}, SVC) or [0]
        ]
        # the share the route sends to the standard pods is backed by Ready standard pods
        low, high = min(shares), max(shares)
        assert sim.std.ready * 100 >= (100 - low) * 10, (sim.status.phase, shares, sim.std)
        assert sim.ft.ready * 100 >= high * 10, (sim.status.phase, shares, sim.ft)
    assert sim.status.phase == api.Phase.ROLLED_BACK
    assert sim.route == USER_ROUTE
    assert (sim.std.replicas, sim.ft.replicas) == (10, 0)


def _guarded_spec(steps: tuple[tuple[int, str | None], ...]) -> api.RolloutSpec:
    races = {"maxIncidents": 0, "window": "1h", "action": "Pause"}
    raw = api.dump(make_spec(steps=steps, races=races))
    raw["trafficRouting"] = {
        "gatewayAPI": {"httpRoutes": [{"name": "web"}], "stableService": "app"}
    }
    return api.parse_spec(raw)


def test_a_step_edited_during_a_guardrail_hold_does_not_move_the_route() -> None:
    sim = RoutedSim(_guarded_spec(((10, "1h"), (100, None))), n=3)
    for _ in range(6):
        sim.step(1.0)
    assert sim.weights == [10]
    sim.incident(pod="app-ft-0", exit_code=134)
    sim.step(1.0)
    assert sim.status.phase == api.Phase.PAUSED
    assert sim.status.message.startswith("paused (")
    sim.spec = _guarded_spec(((30, "1h"), (100, None)))
    sim.generation += 1
    for _ in range(3):
        sim.step(1.0)
    assert sim.status.phase == api.Phase.PAUSED
    assert sim.weights == [10], (sim.weights, sim.status.weight, sim.ft)


def test_a_route_past_gateway_api_limits_is_never_written_and_the_condition_says_why() -> None:
    full: dict[str, Any] = {
        "parentRefs": [{"name": "gw"}],
        "rules": [
            {
                "matches": [{"path": {"type": "Exact", "value": f"/p{i}"}}],
                "backendRefs": [{"name": "app", "port": 8080}],
            }
            for i in range(16)
        ],
    }
    matches = [{"path": {"type": "PathPrefix", "value": "/catalog"}}]
    sim = RoutedSim(routed_spec(matches=matches), route=copy.deepcopy(full))
    sim.run(3)
    assert sim.route == full
    assert sim.status.phase == api.Phase.PENDING
    c = cond(sim.status, "TrafficRouted")
    assert c.status == "False"
    assert "16 rules" in c.message
    assert "RoutingError" in sim.all_events()


def test_a_rule_split_by_another_rollout_is_never_written() -> None:
    shared: dict[str, Any] = {
        "rules": [
            {
                "backendRefs": [
                    {"name": "app", "port": 8080, "weight": 90},
                    {"name": "other-ft", "port": 8080, "weight": 10},
                    {"name": "other", "port": 8080, "weight": 100},
                ]
            }
        ]
    }
    sim = RoutedSim(routed_spec(), route=copy.deepcopy(shared))
    for _ in range(3):
        sim.step(1.0, other_ft_services=(("other-ft", "other"),))
    assert sim.route == shared
    assert sim.status.phase == api.Phase.PENDING
    c = cond(sim.status, "TrafficRouted")
    assert c.status == "False"
    assert "'other'" in c.message


def test_a_route_reverted_after_promotion_is_split_again_without_starting_standard_pods() -> None:
    sim = promoted_sim()
    sim.route = copy.deepcopy(USER_ROUTE)  # Argo CD self-heal / Flux re-applies Git's route
    sim.step(1.0)
    assert sim.weights == [100]  # written back at once
    assert sim.std.replicas == 0, sim.std


# The bounds conflict (crashed pods on one track, too few Ready on the other): the weight
# goes to the track with more Ready pods per share, never to a track with 0 Ready.


def _pin(sim: RoutedSim, std_ready: int, ft_ready: int) -> None:
    # pods that never become Ready again within the test (crash loop / stuck)
    sim.std.ready, sim.std.pending = std_ready, [10_000] * (sim.std.replicas - std_ready)
    sim.ft.ready, sim.ft.pending = ft_ready, [10_000] * (sim.ft.replicas - ft_ready)


def test_a_crashed_twin_loses_its_share_while_one_standard_pod_is_unready() -> None:
    sim = RoutedSim(routed_spec(steps=((10, "1h"), (100, None))))
    run_to(sim, 0)
    assert sim.weights == [10]
    assert sim.ft.ready == 1
    for _ in range(5):
        _pin(sim, std_ready=9, ft_ready=0)  # the only free-threaded pod crashes
        sim.step(1.0)
    # 10 % of requests go to <target>-ft, which has no Ready endpoint; 9 standard pods are Ready
    assert sim.weights == [0], (sim.weights, sim.std, sim.ft)


def test_rollback_for_crashes_after_promotion_moves_traffic_off_the_crashed_twin() -> None:
    """Promoted, then rolled back because the free-threaded pods crash-loop (RaceBudget):
    6 of 10 standard pods are Ready, none free-threaded: the route must not keep 40 % on
    <target>-ft."""
    sim = RoutedSim(routed_spec(steps=((10, None), (100, None))), lag=2)
    for _ in range(5):
        sim.step(1.0)
    sim.action = "promote-full"
    sim.until(lambda s: s.status.phase == api.Phase.PROMOTED and s.std.replicas == 0)
    sim.run(2)
    sim.action = "rollback"
    sim.step(1.0)
    for std_ready in (2, 4, 6, 6, 6):
        _pin(sim, std_ready=std_ready, ft_ready=0)
        sim.step(1.0)
    assert sim.status.phase == api.Phase.ROLLED_BACK
    # every request sent to <target>-ft fails (no endpoints); standard has 6 Ready pods
    assert sim.weights == [0], (sim.weights, sim.std, sim.ft)


def test_hpa_raising_n_then_a_crashed_twin_moves_its_share_to_the_standard_pods() -> None:
    """spec.replicas 10 -> 20 (an HPA on the rollout) at a 10 % step, then the free-threaded
    pod crashes: the lower bound 100 - 100*10/20 = 50 must not pin the route at 10 % on zero
    Ready pods while 10 standard pods are Ready."""
    sim = RoutedSim(routed_spec(steps=((10, "1h"), (100, None))))
    run_to(sim, 0)
    sim.spec = sim.spec.model_copy(update={"replicas": 20})
    for _ in range(3):
        _pin(sim, std_ready=10, ft_ready=0)
        sim.step(1.0)
    assert sim.status.replicas.target == 20
    assert sim.weights == [0], (sim.weights, sim.std, sim.ft)


def test_a_warm_standard_pod_lost_after_promotion_moves_its_share_back() -> None:
    """The mirror case: promoted, route at 90 (a free-threaded pod was down, the one warm
    standard pod took 10 %), then that standard pod goes unReady: the upper bound
    floor(100 * 9 / 10) = 90 must not keep 10 % on a stable Service with 0 Ready pods."""
    sim = RoutedSim(routed_spec(steps=((10, None), (100, None))))
    run_to(sim, 0)
    sim.action = "promote-full"
    sim.until(lambda s: s.status.phase == api.Phase.PROMOTED and s.weights == [100])
    _pin(sim, std_ready=min(sim.std.ready, sim.std.replicas), ft_ready=9)
    sim.step(1.0)
    for _ in range(3):
        _pin(sim, std_ready=0, ft_ready=9)
        sim.step(1.0)
    assert sim.weights == [100], (sim.weights, sim.std, sim.ft)


def test_lost_status_after_promotion_keeps_the_route_on_the_ready_pods() -> None:
    sim = promoted_sim()
    assert (sim.std.replicas, sim.std.ready, sim.ft.ready) == (0, 0, 10)
    sim.status = api.RolloutStatus()  # lost: the shell parses it as unreadable / empty
    sim.trace.clear()
    sim.step(1.0, twin_service_replicas=10)
    assert sim.status.replicas.target == 10  # N recovered from the twin's annotation
    # not restored onto the stable Service, which has 0 Ready pods
    assert sim.weights == [100], (sim.weights, sim.route, sim.std, sim.ft)
    # then the rollout starts over: the route leaves the twin only as standard pods are Ready
    run_to(sim, 0)
    assert sim.weights == [10]
    check_invariants(sim)


def test_routing_removed_while_standard_pods_are_unready_says_the_restore_waits() -> None:
    """The restore is deferred while the standard pods are short: the hold says so, with the
    counts, and says the routes are restored only once they are."""
    sim = RoutedSim(routed_spec())
    at_half(sim)
    _pin(sim, std_ready=4, ft_ready=5)
    removed(sim)
    sim.step(1.0)
    assert sim.weights == [50]  # deferred: the stable Service has 4 Ready pods of 10
    for text in (sim.status.message, cond(sim.status, "TrafficRouted").message):
        assert "restored" not in text, text
        assert "waits for Ready standard pods (4 of 10 Ready" in text, text
    _pin(sim, std_ready=10, ft_ready=5)
    sim.run(3)
    assert sim.route == USER_ROUTE
    for text in (sim.status.message, cond(sim.status, "TrafficRouted").message):
        assert "the routes are restored" in text, text
    assert sim.status.phase == api.Phase.PAUSED
