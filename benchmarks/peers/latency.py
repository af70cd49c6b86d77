"""The latency phase after the steady window, the same method for every controller, one
rollout at a time and each figure on rollouts of its own: promote request -> canary's
spec.replicas raised, abort / rollback request -> canary scaled to 0 (and stable back to full),
and (ftrollout) a crashed canary pod -> target back to full; times on receipt of the
workload's watch event."""

from __future__ import annotations

import argparse
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from sampling import latency_figure
from scale import Watcher, log, wait

from .common import FT_IMAGE
from .controllers.base import Peer

LATENCY_TIMEOUT = 60.0  # per sample: a sample not done by then counts as not completed


def figure(lat: list[float], count: int, request: str, end: str) -> dict[str, Any]:
    return {"request": request, "end": end, **latency_figure(lat, count)}


class Workloads:
    """The canary and stable workloads of each rollout, read from a watch (Deployments for
    ftrollout, ReplicaSets for Argo), and the receipt time of the first event that meets an
    end condition after a request."""

    def __init__(self, controller: str, watcher: Watcher) -> None:
        self.argo = controller == "argo-rollouts"
        self.watcher = watcher
        self.lock = threading.Lock()
        # rollout -> (kind of workload, condition, key of the end point)
        self.pending: dict[str, list[tuple[str, Callable[[int], bool], str]]] = {}
        self.reached: dict[tuple[str, str], float] = {}
        watcher.on_change.append(self._hook)

    def close(self) -> None:
        self.watcher.on_change.remove(self._hook)

    def _owner(self, name: str, s: dict[str, Any]) -> tuple[str, str] | None:
        """(rollout, 'canary' | 'stable') of a workload event, None for others."""
        if self.argo:
            if not s.get("owner"):
                return None
            return s["owner"], "canary" if s["image"] == FT_IMAGE else "stable"
        if name.endswith("-ft"):
            return name[: -len("-ft")], "canary"
        return name, "stable"

    def _hook(self, name: str, s: dict[str, Any] | None) -> None:
        if s is None:
            return
        who = self._owner(name, s)
        if who is None:
            return
        rollout, kind = who
        with self.lock:
            for want, cond, key in self.pending.get(rollout, []):
                if want == kind and (rollout, key) not in self.reached and cond(s["replicas"]):
                    self.reached[(rollout, key)] = s["seen"]

    def replicas(self, rollout: str, kind: str) -> int | None:
        for name, s in self.watcher.snapshot().items():
            if self._owner(name, s) == (rollout, kind):
                return int(s["replicas"])
        return None

    def expect(self, rollout: str, ends: list[tuple[str, Callable[[int], bool], str]]) -> None:
        with self.lock:
            self.pending[rollout] = ends

    def done(self, rollout: str, keys: list[str]) -> bool:
        with self.lock:
            return all((rollout, k) in self.reached for k in keys)


def one_by_one(
    what: str,
    chosen: list[str],
    request: Callable[[str], None],
    ends: Callable[[str], list[tuple[str, Callable[[int], bool], str]]],
    work: Workloads,
    every: float,
) -> dict[str, list[float]]:
    """Each rollout in turn: note the time, send the request, wait for every end point (or
    LATENCY_TIMEOUT), pause `every` seconds. Latency per end-point key, in request order."""
    out: dict[str, list[float]] = {}
    for i, name in enumerate(chosen):
        e = ends(name)
        keys = [k for _, _, k in e]
        work.expect(name, e)
        t0 = time.monotonic()
        try:
            request(name)
        except Exception as exc:  # one sample lost, not the run
            log(f"    {what} {name}: request failed ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        with contextlib.suppress(TimeoutError):
            wait(
                f"{what} {name}",
                functools.partial(work.done, name, keys),
                LATENCY_TIMEOUT,
                every=15,
            )
        lat = {k: work.reached[(name, k)] - t0 for k in keys if (name, k) in work.reached}
        for k, v in lat.items():
            out.setdefault(k, []).append(v)
        log(
            f"    {what} {i + 1}/{len(chosen)} {name}: "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in lat.items())
            + ("" if len(lat) == len(keys) else f" (not reached in {LATENCY_TIMEOUT:.0f} s)")
        )
        time.sleep(every)
    return out


def latency_phase(
    peer: Peer,
    custom: Any,
    core: Any,
    pods: Watcher,
    work: Workloads,
    targets: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Promote and abort/rollback latency, the same method for both controllers, each on
    rollouts of its own; ftrollout's crash -> rollback as well."""
    controller = peer.name
    k = min(args.latency_samples, len(targets) // 3)
    full = args.replicas
    promoted, requested, crashed = targets[:k], targets[k : 2 * k], targets[2 * k : 3 * k]
    res: dict[str, Any] = {"samples": k, "every_s": args.latency_every}
    log(
        f"latency: {k} rollouts per figure, one at a time, {args.latency_every:g} s apart "
        f"(times on receipt of the {peer.workload} watch event)"
    )

    def up_from(name: str) -> list[tuple[str, Callable[[int], bool], str]]:
        base = work.replicas(name, "canary") or 0
        return [("canary", lambda r: r > base, "canary")]

    def down(name: str) -> list[tuple[str, Callable[[int], bool], str]]:
        ends: list[tuple[str, Callable[[int], bool], str]] = [
            ("canary", lambda r: r == 0, "canary")
        ]
        # Only while the stable is below full (both hold 1 of 2 at 50 %): were it already
        # there, a later event showing it at full would not be the controller's answer.
        if (work.replicas(name, "stable") or 0) < full:
            ends.append(("stable", lambda r: r >= full, "stable"))
        return ends

    stable_low = sum(1 for t in requested if (work.replicas(t, "stable") or 0) < full)
    verb = peer.cli

    log(f"  promote ({verb} promote) -> canary's replicas raised")
    got = one_by_one(
        "promote",
        promoted,
        functools.partial(peer.promote, custom),
        up_from,
        work,
        args.latency_every,
    )
    res["promote"] = figure(got.get("canary", []), k, peer.promote_request, peer.promote_end)
    what = peer.abort_verb
    log(f"  {what} ({verb} {what}) -> canary scaled to 0, stable back to {full}")
    got = one_by_one(
        what, requested, functools.partial(peer.abort, custom), down, work, args.latency_every
    )
    req = peer.abort_request
    res["abort_to_canary_down"] = figure(got.get("canary", []), k, req, "canary's spec.replicas 0")
    res["abort_to_stable_full"] = figure(
        got.get("stable", []), k, req, f"stable's spec.replicas back to {full}"
    )
    # Counted only where the stable was below full at the request.
    res["abort_to_stable_full"]["count"] = stable_low
    if peer.no_crash is not None:
        res["crash"] = {"na": peer.no_crash}
    else:
        log(f"  crash -> rollback: one twin pod crashed (exit 139) -> target back to {full}")
        snap = pods.snapshot()
        got = one_by_one(
            "crash",
            crashed,
            functools.partial(peer.crash, core, snap),
            down,
            work,
            args.latency_every,
        )
        res["crash"] = {
            "to_target_scaled": figure(
                got.get("stable", []), k, "twin pod status: exit 139", f"target back to {full}"
            ),
            "to_twin_down": figure(
                got.get("canary", []), k, "twin pod status: exit 139", "twin's spec.replicas 0"
            ),
        }
    p, a = res["promote"], res["abort_to_canary_down"]
    log(
        f"  {controller}: promote p50 {p['p50_ms']} / p99 {p['p99_ms']} / max {p['max_ms']} ms "
        f"({p['completed']}/{k}); {what} -> canary down p50 {a['p50_ms']} / p99 {a['p99_ms']} / "
        f"max {a['max_ms']} ms ({a['completed']}/{k})"
        + (
            ""
            if "na" in res["crash"]
            else f"; crash -> target back p50 {res['crash']['to_target_scaled']['p50_ms']} / max "
            f"{res['crash']['to_target_scaled']['max_ms']} ms"
        )
    )
    return res
