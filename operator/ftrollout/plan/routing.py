"""Traffic routing with Gateway API: HTTPRoute edits that are idempotent and undone exactly.

Two layers, both pure:

- Route edits (`apply`, `restore`, `route_weight`): an HTTPRoute `spec` as observed, what the
  operator recorded earlier (`status.trafficRouting.routes[].rules`) -> the new spec and the new
  record. `apply` always starts from `restore` (the user's route, rebuilt from the record), so
  applying twice gives the same route, restoring gives the user's route back byte for byte, and
  rules the user added meanwhile are kept (they carry no free-threaded backend, so nothing
  touches them). A rule is told apart from the user's by its backendRef to the operator's
  free-threaded Service; it is matched to its record by a fingerprint of the rule without its
  backendRefs, then by order (a user who edited the rule's matches in place).

- The weight (`desired_weight`) and what it means for replicas (`capacity_floor`): the weight
  sent to the routes is the share of free-threaded capacity that is Ready, never more than the
  step's weight, and it is lowered only as far as Ready standard pods take; promotion is 100
  and anything else (rollback, pending, failed, routing removed from the spec) restores the
  routes. Each track keeps the replicas for the traffic the routes
  send it *as observed*: the free-threaded track is not lowered while the route still sends to
  it (so a rollback restores the route first, then scales down), and the standard track is not
  lowered while it still receives traffic (so a promotion moves the route to 100 first).

- Routing removed from the spec while this revision's steps ran with it (`removed`,
  `hold_removed`): the stable Service selects only the standard pods, so the replica split
  (which assumes a Service selecting both tracks) would lower the pods that now take every
  request. The standard track stays at N, nothing is promoted, and the rollout holds until
  routing is back or it is rolled back; after promotion the routes are left on the
  free-threaded Service.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ftrollout.model import api
from ftrollout.model.api import Phase
from ftrollout.plan.conditions import cond, held_by_guardrail
from ftrollout.plan.context import Ctx
from ftrollout.plan.twin import twin_name

Rule = dict[str, Any]
Ref = dict[str, Any]

REASON_ROUTING_ERROR = "RoutingError"
REASON_ROUTING_REMOVED = "RoutingRemoved"
CONDITION = "TrafficRouted"
# The hold in status.message: a `paused (...)` hold (replicas.held_by_guardrail)
HOLD = "paused (TrafficRoutingRemoved)"
_HOLD_PHASES = (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTED)


class RoutingError(ValueError):
    """A route the operator cannot split (it has no rule sending to the stable Service)."""


@dataclass(frozen=True)
class Services:
    """The two Services the routes send to, in the routes' namespace."""

    stable: str
    free_threaded: str
    # (Service, rollout): other rollouts' free-threaded Services in the namespace
    others: tuple[tuple[str, str], ...] = ()


def ft_service_name(target: str) -> str:
    """The operator-owned Service selecting the free-threaded pods (named like the twin)."""
    return twin_name(target)


# -------------------------------------------------------------------------- route edits


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def fingerprint(rule: Rule) -> str:
    """Which rule this is, whatever its backendRefs (the part the operator changes)."""
    rest = {k: v for k, v in rule.items() if k != "backendRefs"}
    return hashlib.sha256(_canonical(rest).encode()).hexdigest()[:16]


def _is_service(ref: Ref, name: str) -> bool:
    # A backendRef with a namespace is another namespace's Service (a ReferenceGrant): not ours.
    return (
        ref.get("name") == name
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") in ("", "core")
        and "namespace" not in ref
    )


def _has_ft(rule: Rule, svc: Services) -> bool:
    return any(_is_service(r, svc.free_threaded) for r in rule.get("backendRefs") or [])


def _has_stable(rule: Rule, svc: Services) -> bool:
    return any(_is_service(r, svc.stable) for r in rule.get("backendRefs") or [])


def restore(
    spec: dict[str, Any],
    records: list[api.RuleRecord],
    svc: Services,
    matches: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The route as the user had it: added rules removed, changed rules' backendRefs back.

    `matches` (the spec's) recognises the added rule when the record is missing.
    """
    added_matches = [_with_defaults(m) for m in matches or []]
    rules: list[Rule] = list(spec.get("rules") or [])
    ours = [i for i, rule in enumerate(rules) if _has_ft(rule, svc)]
    if not ours:
        return spec
    unused = list(range(len(records)))
    assigned: dict[int, api.RuleRecord] = {}
    for i in ours:  # the same rule: same fingerprint
        fp = fingerprint(rules[i])
        j = next((j for j in unused if records[j].rule == fp), None)
        if j is not None:
            unused.remove(j)
            assigned[i] = records[j]
    for i in ours:  # a rule edited in place (its matches, filters): by order
        if i not in assigned and unused:
            assigned[i] = records[unused.pop(0)]
    out: list[Rule] = []
    for i, rule in enumerate(rules):
        if i not in ours:
            out.append(rule)
            continue
        record = assigned.get(i)
        if record is not None and record.added:
            continue
        if record is not None:
            out.append({**rule, "backendRefs": json.loads(record.backend_refs)})
            continue
        # No record (the status was lost): the rule the operator adds goes; elsewhere the
        # free-threaded backend is taken out and the rest kept.
        if added_matches and rule.get("matches") == added_matches:
            continue
        refs = [r for r in rule.get("backendRefs") or [] if not _is_service(r, svc.free_threaded)]
        if refs:
            out.append({**rule, "backendRefs": _unzero(refs)})
    new = dict(spec)
    new["rules"] = out
    return new


def _unzero(refs: list[Ref]) -> list[Ref]:
    """A lone backend left at weight 0 (a promoted split) would get no traffic at all."""
    if len(refs) == 1 and refs[0].get("weight") == 0:
        return [{k: v for k, v in refs[0].items() if k != "weight"}]
    return refs


def _split_refs(refs: list[Ref], svc: Services, weight: int) -> list[Ref]:
    """backendRefs with each stable backend split: stable 100 - w, free-threaded w.

    Alone, the stable backend gets exactly 100 - w and the free-threaded one w. Beside other
    backends, every weight is scaled by 100 and the stable share is divided between the two,
    so the other backends keep their share of the rule exactly.
    """
    if len(refs) == 1:
        (stable,) = refs
        return [{**stable, "weight": 100 - weight}, _ft_ref(stable, svc, weight)]
    out: list[Ref] = []
    for ref in refs:
        own = int(ref.get("weight", 1))
        if _is_service(ref, svc.stable):
            out.append({**ref, "weight": own * (100 - weight)})
            out.append(_ft_ref(ref, svc, own * weight))
        else:
            out.append({**ref, "weight": own * 100})
    return out


def _ft_ref(stable: Ref, svc: Services, weight: int) -> Ref:
    # Same port and per-backend filters as the stable backend: the free-threaded Service has
    # the stable Service's ports.
    return {**copy.deepcopy(stable), "name": svc.free_threaded, "weight": weight}


def _with_defaults(match: dict[str, Any]) -> dict[str, Any]:
    """A match as the apiserver stores it (Gateway API's defaults filled in): the added rule's
    fingerprint is then the same before and after the write."""
    out = {k: v for k, v in match.items() if v not in ([], None)}
    out.setdefault("path", {"type": "PathPrefix", "value": "/"})
    return out


def apply(
    spec: dict[str, Any],
    records: list[api.RuleRecord],
    svc: Services,
    weight: int,
    matches: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[api.RuleRecord]]:
    """The route with free-threaded weight `weight` (0 restores it), and the new record.

    Raises RoutingError when no rule of the route sends to the stable Service.
    """
    base = restore(spec, records, svc, matches)
    if weight <= 0:
        return base, []
    rules: list[Rule] = list(base.get("rules") or [])
    source, stable = next(
        (
            (rule, r)
            for rule in rules
            for r in rule.get("backendRefs") or []
            if _is_service(r, svc.stable)
        ),
        ({}, None),
    )
    if stable is None:
        raise RoutingError(f"no rule sends to the stable Service {svc.stable!r}")
    new = dict(base)
    if matches:
        # The matched requests went through the first rule sending to the stable Service: its
        # filters and timeouts, and the backend's port and filters, apply to both shares.
        template = {k: v for k, v in stable.items() if k != "weight"}
        added: Rule = {
            "matches": [_with_defaults(m) for m in matches],
            **{k: copy.deepcopy(source[k]) for k in RULE_SETTINGS if k in source},
            "backendRefs": _split_refs([template], svc, weight),
        }
        _check_prefix_rewrite(added)
        new["rules"] = [added, *rules]
        _check_limits(new)
        return new, [api.RuleRecord(rule=fingerprint(added), added=True)]
    out: list[Rule] = []
    made: list[api.RuleRecord] = []
    for rule in rules:
        refs = rule.get("backendRefs") or []
        if not _has_stable(rule, svc):
            out.append(rule)
            continue
        _check_not_shared(rule, svc)
        made.append(api.RuleRecord(rule=fingerprint(rule), backend_refs=_canonical(refs)))
        out.append({**rule, "backendRefs": _split_refs(refs, svc, weight)})
    new["rules"] = out
    _check_limits(new)
    return new, made


# What a rule carries besides its matches and backendRefs (Gateway API v1 HTTPRouteRule).
RULE_SETTINGS = ("filters", "timeouts", "retry", "sessionPersistence")


def _check_prefix_rewrite(rule: Rule) -> None:
    """Gateway API accepts a ReplacePrefixMatch rewrite or redirect only in a rule whose
    matches are all PathPrefix: the rule's copied filter would make the route rejected."""
    refs = [rule, *(rule.get("backendRefs") or [])]
    filters = [f for r in refs for f in r.get("filters") or []]
    paths = [
        ((f.get("urlRewrite") or f.get("requestRedirect") or {}).get("path") or {}).get("type")
        for f in filters
    ]
    types = {(m.get("path") or {}).get("type") for m in rule.get("matches") or []}
    if "ReplacePrefixMatch" in paths and types != {"PathPrefix"}:
        raise RoutingError(
            "the rule sending to the stable Service rewrites with ReplacePrefixMatch, which "
            "Gateway API allows only with PathPrefix matches: give every "
            "spec.trafficRouting.gatewayAPI.matches entry a PathPrefix path"
        )


def _check_not_shared(rule: Rule, svc: Services) -> None:
    """Two rollouts splitting one rule would each undo the other's edit at every reconcile:
    the rule another rollout splits already is refused, naming it."""
    for ref in rule.get("backendRefs") or []:
        for service, rollout in svc.others:
            if _is_service(ref, service):
                raise RoutingError(
                    f"a rule sending to {svc.stable!r} is split by rollout {rollout!r} already "
                    f"(backendRef {service!r}): two rollouts cannot split one rule; give each "
                    "Service its own rule, or use spec.trafficRouting.gatewayAPI.matches"
                )


# Gateway API v1 (HTTPRoute CRD validation): the apiserver rejects a route past these.
MAX_RULES = 16
MAX_BACKEND_REFS = 16
MAX_WEIGHT = 1_000_000


def _check_limits(spec: dict[str, Any]) -> None:
    """Raise RoutingError naming the limit a split route would pass (the write would be
    rejected with 422 at every reconcile while the step waits)."""
    rules = spec.get("rules") or []
    if len(rules) > MAX_RULES:
        raise RoutingError(
            f"the split needs {len(rules)} rules, Gateway API allows {MAX_RULES} rules per "
            "HTTPRoute: remove a rule, or leave out spec.trafficRouting.gatewayAPI.matches "
            "(the added rule)"
        )
    for i, rule in enumerate(rules):
        refs = rule.get("backendRefs") or []
        if len(refs) > MAX_BACKEND_REFS:
            raise RoutingError(
                f"rule {i} needs {len(refs)} backendRefs with the free-threaded Service, "
                f"Gateway API allows {MAX_BACKEND_REFS} backendRefs per rule"
            )
        heaviest = max((int(r.get("weight", 1)) for r in refs), default=0)
        if heaviest > MAX_WEIGHT:
            raise RoutingError(
                f"rule {i}: its backendRef weights are scaled by 100 to split the stable one, "
                f"which gives {heaviest}, above Gateway API's maximum {MAX_WEIGHT}: use smaller "
                "weights in that rule (their ratios are what counts)"
            )


def rule_weights(spec: dict[str, Any] | None, svc: Services) -> list[int]:
    """Free-threaded weight (%) of every rule with the free-threaded backend."""
    out = []
    for rule in (spec or {}).get("rules") or []:
        if not _has_ft(rule, svc):
            continue
        refs = rule.get("backendRefs") or []
        ft = sum(int(r.get("weight", 1)) for r in refs if _is_service(r, svc.free_threaded))
        st = sum(int(r.get("weight", 1)) for r in refs if _is_service(r, svc.stable))
        if ft + st:  # a rule whose stable backend the user set to weight 0 carries nothing
            out.append(round(100 * ft / (ft + st)))
    return out


# ------------------------------------------------------------------------ the planner


def gateway(ctx: Ctx) -> api.GatewayAPIRouting | None:
    routing = ctx.spec.traffic_routing
    return routing.gateway_api if routing is not None else None


def services(ctx: Ctx) -> Services:
    gw = gateway(ctx)
    ft = ft_service_name(ctx.spec.target_ref.name)
    stable = gw.stable_service if gw is not None else _stable_beside(ctx, ft)
    return Services(stable=stable, free_threaded=ft, others=ctx.obs.other_ft_services)


def _stable_beside(ctx: Ctx, ft: str) -> str:
    """The stable Service with the spec gone: the backend the free-threaded one was put right
    after (`_split_refs`). Without it every split rule would read as 100 % free-threaded."""
    for route in ctx.obs.routes:
        for rule in (route.spec or {}).get("rules") or []:
            refs = rule.get("backendRefs") or []
            for before, ref in pairwise(refs):
                if _is_service(ref, ft) and not _is_service(before, ft):
                    return str(before.get("name", ""))
    return ""


def routing_on(ctx: Ctx) -> bool:
    """Routing decides the split (spec), or routes still carry the operator's edits (status)."""
    return gateway(ctx) is not None or _recorded(ctx.st)


def restoring(ctx: Ctx) -> bool:
    """Routing is off in the spec and routes still carry the operator's edits."""
    return gateway(ctx) is None and _recorded(ctx.st)


def _recorded(st: api.RolloutStatus) -> bool:
    return st.traffic_routing is not None and bool(st.traffic_routing.routes)


def observed_weights(ctx: Ctx) -> list[int]:
    """Free-threaded weight of every managed rule as observed; [0] when none."""
    svc = services(ctx)
    out = [w for r in ctx.obs.routes for w in rule_weights(r.spec, svc)]
    return out or [0]


def removed(ctx: Ctx) -> bool:
    """spec.trafficRouting is gone while this revision's steps ran with it.

    status.trafficRouting is the record: it is kept from step 1 for as long as the revision
    runs, and dropped before step 1, after a rollback and at a new revision or retry (from
    then on the replica split is the rule, and the Service must select both tracks).
    """
    return (
        gateway(ctx) is None and ctx.st.traffic_routing is not None and ctx.st.phase in _HOLD_PHASES
    )


def removed_mid_rollout(ctx: Ctx) -> bool:
    """Routing removed at a step: a promotion would take the standard pods away."""
    return removed(ctx) and ctx.st.phase != Phase.PROMOTED


def removed_why(ctx: Ctx) -> str:
    n = ctx.st.replicas.target
    if ctx.st.phase == Phase.PROMOTED:
        return (
            "spec.trafficRouting was removed after promotion: the routes still send every "
            f"request to {services(ctx).free_threaded} and are left so (restored, they would send "
            "it to the stable Service, which selects only the standard pods, and there are none "
            "now); re-add spec.trafficRouting, or `kubectl ftr rollback` (the routes go back "
            f"to the stable Service once {n} standard pods are Ready)"
        )
    if any(r.spec is not None and _standard_short(ctx, r.spec, 0) for r in ctx.obs.routes):
        std_ready = ctx.obs.target.ready if ctx.obs.target is not None else 0
        return (
            "spec.trafficRouting was removed mid-rollout: the routes go back to the stable "
            "Service, which selects only the standard pods, and the restore waits for Ready "
            f"standard pods ({std_ready} of {n} Ready: the free-threaded pods keep their share "
            f"until then); then the standard pods serve every request and the standard track "
            f"stays at {n}; the rollout holds and cannot be promoted. Re-add "
            "spec.trafficRouting to carry on, or `kubectl ftr rollback`"
        )
    return (
        "spec.trafficRouting was removed mid-rollout: the routes are restored and the stable "
        "Service selects only the standard pods, so they serve every request and the "
        f"standard track stays at {n} (the free-threaded pods get none); the rollout holds "
        "and cannot be promoted. Re-add spec.trafficRouting to carry on, or `kubectl ftr "
        "rollback`"
    )


def hold_removed(ctx: Ctx) -> None:
    """Hold the rollout while routing is removed (see `removed`); lift the hold once it is back.

    The hold is a `paused (...)` hold like a guardrail's: the share in force is kept, `resume`
    cannot lift it (`actions.handle_action` refuses it, and promote), and it is announced once.
    """
    st = ctx.st
    if gateway(ctx) is not None:
        if st.phase == Phase.PAUSED and HOLD in st.message:
            rest = _without_hold(st.message)
            if rest:
                ctx.update(message=rest)
            else:
                ctx.update(phase=Phase.PROGRESSING, message="spec.trafficRouting is back: resuming")
            ctx.event("Normal", "TrafficRoutingRestored", "spec.trafficRouting is back")
        return
    if not removed(ctx):
        if st.traffic_routing is not None and not st.traffic_routing.routes:
            _forget(ctx)
        return
    ctx.routing_removed = True
    why = removed_why(ctx)
    old = next((c for c in st.conditions if c.type == CONDITION), None)
    if old is None or old.reason != REASON_ROUTING_REMOVED:
        ctx.event("Warning", "TrafficRoutingRemoved", why)
    _condition(ctx, "False", REASON_ROUTING_REMOVED, why)
    # `; ` separates holds in the message: the hold's own text has none.
    hold = f"{HOLD}: {why.replace('; ', ', ')}"
    if st.phase == Phase.PROMOTED:
        return
    if HOLD in st.message:
        if st.phase == Phase.PAUSED and hold not in st.message:
            # The restore waited for standard pods and is done (or the counts moved).
            rest = _without_hold(st.message)
            ctx.update(message=f"{rest}; {hold}" if rest else hold)
        return
    held = st.phase == Phase.PAUSED and st.message.startswith("paused (")
    prefix = f"{st.message}; " if held else ""
    ctx.update(phase=Phase.PAUSED, message=f"{prefix}{hold}")


def _without_hold(message: str) -> str:
    """status.message without the routing hold (other holds, joined by `; `, stay)."""
    parts = message.split("; paused (")
    parts = [parts[0], *(f"paused ({p}" for p in parts[1:])]
    return "; ".join(p for p in parts if not p.startswith(HOLD))


def _forget(ctx: Ctx) -> None:
    ctx.update(
        traffic_routing=None,
        conditions=[c for c in ctx.st.conditions if c.type != CONDITION],
    )


def capacity_floor(ctx: Ctx) -> tuple[int, int]:
    """(standard, free-threaded) replicas each track keeps for the traffic it receives now.

    From the routes as observed, every rule that sends to either Service counted: a rule left
    on the stable Service alone (all rules but the added one with matches, a rule the user
    added, a route restored) means the standard track still takes a full share.
    """
    if not routing_on(ctx):
        return 0, 0
    n = ctx.st.replicas.target
    svc = services(ctx)
    shares = [s for r in ctx.obs.routes for s in _rule_shares(r.spec, svc)]
    if any(r.spec is None for r in ctx.obs.routes):
        shares.append(0)
    low, high = (min(shares), max(shares)) if shares else (0, 0)
    std = math.ceil(n * (100 - low) / 100)
    if ctx.st.phase == Phase.PROMOTED and ctx.obs.target is not None:
        # Promoted, the floor holds standard pods until the routes are seen at 100 but starts
        # none: a route reverted by someone else (GitOps) is split again in this reconcile,
        # and N pods started for it would be stopped at the next.
        std = min(std, ctx.obs.target.replicas)
    return std, math.ceil(n * high / 100)


def _rule_shares(spec: dict[str, Any] | None, svc: Services) -> list[int]:
    stable_only = [
        0
        for rule in (spec or {}).get("rules") or []
        if _has_stable(rule, svc) and not _has_ft(rule, svc)
    ]
    return rule_weights(spec, svc) + stable_only


def target_weight(ctx: Ctx) -> int:
    """The weight the phase and step ask for, before readiness."""
    if gateway(ctx) is None:
        return 0
    phase = ctx.st.phase
    if phase == Phase.PROMOTED:
        return 100
    if phase in (Phase.PROGRESSING, Phase.PAUSED) and ctx.st.step_index is not None:
        if held_by_guardrail(ctx.st) and ctx.st.weight is not None:
            # The share in force, like the replicas: an edit of spec.steps applies on resume,
            # not while the free-threaded pods are under suspicion.
            return ctx.st.weight
        return ctx.spec.steps[ctx.st.step_index].weight
    return 0


def desired_weight(ctx: Ctx) -> int:
    """Traffic moves only to Ready pods, on both tracks.

    The free-threaded share is at most 100 * Ready free-threaded / N (the upper bound).
    Lowering it sends the rest to the standard track, so the weight is lowered only as far as
    100 - 100 * Ready standard / N (the lower bound): after promotion (standard at 0 or a few
    warm replicas) a rollback moves traffic back as standard pods become Ready. The lower
    bound never raises the weight past the step's or the route's.

    When the bounds conflict (pods lost on one track and too few Ready on the other: a
    free-threaded pod crashed while a standard pod is unReady, an HPA raised N, the warm
    standard pod left after promotion went unReady), no weight keeps both tracks whole: the
    one whose short track has more Ready pods per share is taken (`_better_lowered`), so a
    track with 0 Ready pods gets no share while the other has Ready pods.
    """
    n = ctx.st.replicas.target
    if n <= 0:
        return 0
    ft_ready = ctx.obs.twin.ready if ctx.obs.twin is not None else 0
    std_ready = ctx.obs.target.ready if ctx.obs.target is not None else 0
    ft_cap = math.floor(100 * min(ft_ready, n) / n)
    low = 100 - math.floor(100 * min(std_ready, n) / n)
    target = target_weight(ctx)
    weight = min(target, ft_cap)
    if weight >= low:
        return weight
    held = min(low, max(_current(ctx), target))
    if held <= weight:
        return weight
    if held <= ft_cap or not _better_lowered(ctx, held, weight):
        return held
    return weight


def _better_lowered(ctx: Ctx, now: int, weight: int) -> bool:
    """Lowering from `now` to `weight` leaves the short track more Ready pods per share.

    At `weight` the standard track takes 100 - weight, at `now` the free-threaded track takes
    `now`: standard Ready / standard needed is compared with free-threaded Ready /
    free-threaded needed (a tie lowers: the stable Service is where a rollback ends).
    """
    n = ctx.st.replicas.target
    std_need = math.ceil(n * (100 - weight) / 100)
    ft_need = math.ceil(n * now / 100)
    std_ready = ctx.obs.target.ready if ctx.obs.target is not None else 0
    ft_ready = ctx.obs.twin.ready if ctx.obs.twin is not None else 0
    return std_ready * ft_need >= ft_ready * std_need


def _current(ctx: Ctx) -> int:
    """The weight in force: the record's, or the routes' as observed when the status lost it
    (a promoted route at 100 is not restored at once onto a stable Service with no pods)."""
    st = ctx.st.traffic_routing
    return st.weight if st is not None else max(observed_weights(ctx))


def problem(ctx: Ctx) -> str | None:
    """Why the routes cannot be split now (None: they can)."""
    gw = gateway(ctx)
    if gw is None:
        return None
    if ctx.obs.routing_error is not None:
        return ctx.obs.routing_error
    seen = {r.name: r.spec for r in ctx.obs.routes}
    svc = services(ctx)
    for ref in gw.http_routes:
        spec = seen.get(ref.name)
        if spec is None:
            return f"HTTPRoute {ref.name!r} not found in this namespace"
        try:
            records = _records_of(ctx.st, ref.name)
            apply(spec, records, svc, 1, _matches(ctx, records))
        except RoutingError as exc:
            return f"HTTPRoute {ref.name!r}: {exc}"
    return None


def _matches(ctx: Ctx, records: list[api.RuleRecord]) -> list[dict[str, Any]]:
    """The spec's matches, or none: every rule is split.

    Promoted: the standard track goes to 0, so every rule moves, not only the matching ones.
    Leaving a promotion (rollback, failure) every rule still carries the split, and it goes
    back rule by rule as the standard pods become Ready: the route keeps splitting every rule.
    """
    gw = gateway(ctx)
    if gw is None or ctx.st.phase == Phase.PROMOTED:
        return []
    leaving = ctx.st.phase not in (Phase.PROGRESSING, Phase.PAUSED)
    if leaving and records and not any(r.added for r in records):
        return []
    return [api.dump(m) for m in gw.matches]


def _records_of(st: api.RolloutStatus, route: str) -> list[api.RuleRecord]:
    if st.traffic_routing is None:
        return []
    return next((list(r.rules) for r in st.traffic_routing.routes if r.name == route), [])


def route_names(spec: api.RolloutSpec | None, st: api.RolloutStatus) -> list[str]:
    """Routes to read: those in the spec and those the status says carry the operator's edits."""
    names = []
    if spec is not None and spec.traffic_routing is not None:
        gw = spec.traffic_routing.gateway_api
        names = [r.name for r in gw.http_routes] if gw is not None else []
    if st.traffic_routing is not None:
        names += [r.name for r in st.traffic_routing.routes if r.name not in names]
    return names


def reached(ctx: Ctx, weight: int) -> bool:
    """Every managed route carries the step's weight (routing off: always)."""
    if gateway(ctx) is None:
        return True
    return observed_weights(ctx) == [weight] * len(observed_weights(ctx)) and all(
        r.spec is not None for r in ctx.obs.routes
    )


def plan_routes(ctx: Ctx) -> list[tuple[str, dict[str, Any]]]:
    """The route writes of this reconcile, and status.trafficRouting to go with them.

    Routes the spec no longer names are restored and forgotten. Nothing is written to a route
    that cannot be split (the condition says why); restoring is always allowed.
    """
    if not routing_on(ctx):
        return []
    if ctx.routing_removed and ctx.st.phase == Phase.PROMOTED:
        return []  # left on the free-threaded pods (`removed_why`); the record stays
    gw = gateway(ctx)
    svc = services(ctx)
    weight = desired_weight(ctx)
    why = problem(ctx)
    wanted = {r.name for r in gw.http_routes} if gw is not None else set()
    writes: list[tuple[str, dict[str, Any]]] = []
    kept: list[api.RouteRecord] = []
    deferred = False
    for seen in ctx.obs.routes:
        records = _records_of(ctx.st, seen.name)
        matches = _matches(ctx, records)
        if seen.spec is None:
            if records and seen.name in wanted:
                kept.append(api.RouteRecord(name=seen.name, rules=records))
            continue
        w = weight if seen.name in wanted and why is None else 0
        if why is not None and seen.name in wanted and weight > 0:
            # Hold what is there: an error never moves traffic, in either direction.
            if records:
                kept.append(api.RouteRecord(name=seen.name, rules=records))
            continue
        if _standard_short(ctx, seen.spec, w):
            # Back to the stable Service only as its Ready pods allow (after promotion it
            # has none): the route is held and the free-threaded pods with it.
            if records:
                kept.append(api.RouteRecord(name=seen.name, rules=records))
            deferred = True
            continue
        try:
            new, made = apply(seen.spec, records, svc, w, matches)
        except RoutingError:
            new, made = restore(seen.spec, records, svc, matches), []
        changed = new != seen.spec
        if changed:
            writes.append((seen.name, new))
        # The status is written before the route: a restore keeps its record until the route
        # is seen restored, so a failed route write can still be undone exactly.
        rules = made or (records if changed else [])
        if rules:
            kept.append(api.RouteRecord(name=seen.name, rules=rules))
    std_ready = ctx.obs.target.ready if ctx.obs.target is not None else 0
    if why is not None:
        old = next((c for c in ctx.st.conditions if c.type == CONDITION), None)
        if old is None or (old.status, old.message) != ("False", why):
            ctx.event("Warning", REASON_ROUTING_ERROR, f"traffic routing: {why}")
        _condition(ctx, "False", REASON_ROUTING_ERROR, why)
    elif deferred and gw is not None:
        _condition(
            ctx,
            "True",
            "WeightSet",
            f"free-threaded weight {_current(ctx)}% on the routes: lowered to {weight}% once "
            f"the standard track has the Ready pods for it ({std_ready} of "
            f"{ctx.st.replicas.target} now)",
        )
    elif gw is not None:
        _condition(ctx, "True", "WeightSet", f"free-threaded weight {weight}% on the routes")
    if writes:
        ctx.requeue.append(1.0)  # the next look reads the routes back
    if deferred:
        weight = _current(ctx)
        ctx.requeue.append(5.0)
    if gw is None and not kept and not ctx.routing_removed:
        _forget(ctx)
    else:
        ctx.update(
            traffic_routing=api.TrafficRoutingStatus(
                weight=weight if why is None else _current(ctx),
                service=svc.free_threaded,
                routes=kept,
            )
        )
    return writes


def _standard_short(ctx: Ctx, spec: dict[str, Any], weight: int) -> bool:
    """Lowering this route to `weight` would leave its requests fewer Ready pods per share than
    they have now: the standard pods Ready are short of the share they would take, and the
    free-threaded pods serve theirs better (crashing free-threaded pods do not hold it)."""
    now = max(rule_weights(spec, services(ctx)) or [0])
    if weight >= now or ctx.obs.target is None:
        return False
    n = ctx.st.replicas.target
    std_need = math.ceil(n * (100 - weight) / 100)
    return ctx.obs.target.ready < std_need and not _better_lowered(ctx, now, weight)


def _condition(ctx: Ctx, status: str, reason: str, message: str) -> None:
    cond(ctx, CONDITION, status, reason, message)
