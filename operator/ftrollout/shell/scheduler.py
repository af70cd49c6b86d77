"""Prometheus I/O: one shared loop for every rollout's analysis and the batched GIL guardrail.

* SLO metrics: each active rollout is analysed every `analysis.interval`, its due times spread
  over the interval (hash of the key), so 1000 rollouts do not query at the same second.
* Guardrails: one query per probe metric name per tick for ALL rollouts on a Prometheus
  (`python_gil_enabled`, `python_freethreading_build`, `python_gil_fallback_total`,
  `python_freethreading_incidents_total`), mapped back to pods through the watch cache.

Queries run in a thread pool, each with a deadline that ends the request at its socket, and a
cap per address on the workers it holds; a slow, dead or hostile Prometheus only makes its own
rounds Inconclusive, it never blocks reconciles or other addresses' queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

import requests

from ftrollout.model import api
from ftrollout.model.durations import parse_duration
from ftrollout.plan import AnalysisRound, parse_time, rfc3339
from ftrollout.plan.metrics import (
    MAX_SAMPLES,
    TRACK_FREE_THREADED,
    TRACK_STANDARD,
    Samples,
    Value,
    comparison_side,
    expand,
    judge,
    judge_samples,
    read_matrix,
    read_vector,
)
from ftrollout.plan.prometheus import (
    GUARD_PARTS,
    GUARD_QUERY,
    REPORTING_QUERY,
    GuardAnswer,
    Trust,
    guard_answer,
    merge_answers,
    reporting_pods,
    trusted_namespaces,
)
from ftrollout.shell.gillog import LOG_INTERVAL, LogScanner
from ftrollout.shell.prometheus_config import PrometheusConfig, session, short_reason
from ftrollout.shell.prometheus_http import AnswerTooLarge, Deadline, get_body, template
from ftrollout.shell.state import GilReading, State, spread, wait_set

log = logging.getLogger("ftrollout.shell.scheduler")
T = TypeVar("T")
TemplateKey = tuple[str, str, tuple[tuple[str, str], ...]]  # address, path, parameters

GUARD_INTERVAL = 5.0  # seconds between batched guardrail queries
# One address holds at most this fraction of the shared workers: a dead, slow or hostile
# Prometheus cannot take them all, and it takes ADDRESS_SHARE of them to hold every worker (the
# operator's own Prometheus has workers of its own).
ADDRESS_SHARE = 4
# Answers parsed at once at the size cap (ParseBudget): the memory a parse takes is bounded by
# this many capped answers, however many workers there are.
PARSE_BUDGET_ANSWERS = 2
MAX_SESSIONS = 256  # per-address sessions kept (connection pools); '*' allows any number
# A round asks only for what is not healthy (plan.prometheus.GUARD_QUERY); the full list of
# reporting pods is asked again when the count or the cached pods change, and at least this often
# (a pod that stopped reporting while another started in the same round is seen by then).
DENSE_SECONDS = 60.0


class QueryError(Exception):
    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large  # the answer passed the size cap


class _Slots:
    """Workers of one pool, counted per address, waited for on the event loop.

    A query waits here, not in the executor's queue: a caller that gives up while waiting
    (its deadline) takes nothing with it, and a query that gets a slot gets a worker at once."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.held: dict[str, int] = {}  # only addresses holding workers: it cannot grow
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    def _free(self, url: str) -> bool:
        return self.used < self.total and self.held.get(url, 0) < self.per_address

    async def acquire(self, url: str) -> None:
        while not self._free(url):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.held[url] = self.held.get(url, 0) + 1
        self.used += 1

    def release(self, url: str) -> None:
        left = self.held[url] - 1
        if left:
            self.held[url] = left
        else:
            del self.held[url]
        self.used -= 1
        # Every waiter looks again, in the order they came: the first whose address is under
        # its cap takes the worker.
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class ParseBudget:
    """Decoded answer bytes being parsed at once, process-wide.

    The size cap bounds an answer's bytes, not the objects they parse into (`[{},{},...]`:
    about 25 times the bytes); without a budget every worker could hold a capped answer's
    objects at the same time. Waiting for the budget counts against the query's deadline."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int, deadline: Deadline) -> Iterator[None]:
        size = min(size, self.total)
        with self._cond:
            while self.used + size > self.total:
                left = deadline.remaining()
                if left <= 0:
                    raise TimeoutError("deadline")
                self._cond.wait(left)
            self.used += size
        try:
            yield
        finally:
            with self._cond:
                self.used -= size
                self._cond.notify_all()


class Prometheus:
    """Prometheus API queries, run in thread pools off the event loop and counted.

    Each query has one deadline for the whole request (connect, TLS, headers, body): when it
    passes, the request is aborted at its socket and the worker thread is free again. The
    operator's own Prometheus (--prometheus-url, the platform's) has workers of its own; the
    other addresses share `workers`, one address at most 1/ADDRESS_SHARE of them, counted until
    the worker is really done, not until the caller gave up. An answer is parsed, and reduced
    by the caller's `shape`, in the worker, within the process-wide ParseBudget: what reaches
    the event loop is the small shaped result."""

    def __init__(
        self, workers: int = 8, config: PrometheusConfig | None = None, own_workers: int = 4
    ) -> None:
        self.config = config or PrometheusConfig()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prom")
        self.own_pool = ThreadPoolExecutor(max_workers=own_workers, thread_name_prefix="prom-own")
        self.per_address = max(1, workers // ADDRESS_SHARE)
        self.slots = _Slots(workers, self.per_address)
        self.own_slots = _Slots(own_workers, own_workers)
        self.budget = ParseBudget(PARSE_BUDGET_ANSWERS * self.config.max_response_bytes)
        # Most recently used last; bounded: with '*' every address a rollout names gets one.
        self.sessions: OrderedDict[str, requests.Session] = OrderedDict()
        # The guardrail's requests as prepared once (prometheus_http.template): they ask the
        # same thing of the same address every round. Filled by the workers, bounded; the
        # oldest is dropped without iterating (another worker may be adding one meanwhile).
        self.templates: OrderedDict[TemplateKey, requests.PreparedRequest] = OrderedDict()
        self._templates_lock = threading.Lock()
        self.queries = 0
        self.errors = 0
        self.on_query: list[Callable[[bool], None]] = []

    def _session(self, url: str) -> requests.Session:
        s = self.sessions.get(url)
        if s is None:
            # No client-side retries (requests' default): the next interval is the retry, and
            # a retry loop against a dead server would only hold a worker longer.
            s = self.sessions[url] = session(self.config, url)
            while len(self.sessions) > MAX_SESSIONS:
                # Not closed: a worker may still be using it; its pool goes with the last use.
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(url)
        return s

    def _get(
        self,
        url: str,
        path: str,
        params: dict[str, str],
        seconds: float,
        shape: Callable[[Any], Any],
        reuse: bool = False,
    ) -> Any:
        s = self._session(url)
        limit = self.config.max_response_bytes
        budget = self.budget
        key = (url, path, tuple(params.items())) if reuse else None
        templates, lock = self.templates, self._templates_lock

        def call(deadline: Deadline) -> Any:
            prepared = None if key is None else templates.get(key)
            if key is not None and prepared is None:
                prepared = template(s, f"{url}{path}", params)
                with lock:
                    templates[key] = prepared
                    while len(templates) > 2 * MAX_SESSIONS:
                        templates.popitem(last=False)
            body = get_body(s, f"{url}{path}", params, seconds, limit, deadline, prepared)
            with budget.hold(len(body), deadline):
                return shape(_parse(body))

        return self._run(url, seconds, call)

    @overload
    async def query(
        self, url: str, promql: str, seconds: float, *, reuse: bool = False
    ) -> list[dict[str, Any]]: ...

    @overload
    async def query(
        self,
        url: str,
        promql: str,
        seconds: float,
        shape: Callable[[list[dict[str, Any]]], T],
        *,
        reuse: bool = False,
    ) -> T: ...

    async def query(
        self,
        url: str,
        promql: str,
        seconds: float,
        shape: Callable[[list[dict[str, Any]]], Any] | None = None,
        *,
        reuse: bool = False,
    ) -> Any:
        """An instant query's result series, or `shape` of them (computed in the worker).
        `reuse`: the request is prepared once and copied after (a query asked every round)."""

        def as_series(out: Any) -> Any:
            series = out if isinstance(out, list) else [{"value": out}] if out is not None else []
            return series if shape is None else shape(series)

        params = {"query": promql, "timeout": f"{seconds:g}s"}
        return await self._get(url, "/api/v1/query", params, seconds, as_series, reuse)

    async def query_range(
        self,
        url: str,
        promql: str,
        start: datetime,
        end: datetime,
        step: float,
        seconds: float,
        shape: Callable[[Any], Any] | None = None,
    ) -> Any:
        """A range query (`/api/v1/query_range`): the MannWhitney judge's samples."""
        params = {
            "query": promql,
            "start": str(round(start.timestamp())),
            "end": str(round(end.timestamp())),
            "step": f"{step:g}s",
            "timeout": f"{seconds:g}s",
        }
        return await self._get(url, "/api/v1/query_range", params, seconds, shape or _same)

    async def _run(self, url: str, seconds: float, call: Callable[[Deadline], Any]) -> Any:
        """One query in the pool, bounded per address and in time, counted for the metrics."""
        self.queries += 1
        loop = asyncio.get_running_loop()
        deadline = Deadline(seconds)
        timer = loop.call_later(seconds, deadline.expire)
        try:
            # The deadline frees the worker at `seconds`; the extra second only covers what a
            # socket shutdown cannot interrupt (a name lookup), whose worker stays counted
            # against the address until it returns.
            out = await asyncio.wait_for(self._in_pool(url, call, deadline), seconds + 1)
        except Exception as exc:
            self.errors += 1
            for hook in self.on_query:
                hook(False)
            # Status code and a short reason only: the body is the server's to choose and
            # would end up in status and Events.
            raise QueryError(
                f"prometheus {url}: {short_reason(exc)}", isinstance(exc, AnswerTooLarge)
            ) from None
        finally:
            timer.cancel()
        for hook in self.on_query:
            hook(True)
        return out

    async def _in_pool(self, url: str, call: Callable[[Deadline], Any], deadline: Deadline) -> Any:
        own = url == self.config.own
        slots, pool = (self.own_slots, self.own_pool) if own else (self.slots, self.pool)
        await slots.acquire(url)
        try:
            deadline.check()  # given up while waiting for a worker: take none
            work = asyncio.get_running_loop().run_in_executor(pool, call, deadline)
        except BaseException:
            slots.release(url)
            raise
        # Released when the worker is done, not when the caller stops waiting (shield): a
        # caller that gave up must not hand the address another worker.
        work.add_done_callback(lambda _: slots.release(url))
        return await asyncio.shield(work)


def _parse(body: bytes) -> Any:
    return json.loads(body)["data"]["result"]


def _same(out: Any) -> Any:
    return out


def sample_step(start: datetime, end: datetime, interval: float) -> float:
    """The range query's resolution: one sample per analysis interval, coarser on long steps
    (at most plan.metrics.MAX_SAMPLES per track; Prometheus also refuses more than 11,000
    points per series). Prometheus answers start, start + step, ... up to end, both ends
    included: MAX_SAMPLES - 1 steps, or an honest answer would read as one to thin."""
    return max(interval, (end - start).total_seconds() / (MAX_SAMPLES - 1))


@dataclass
class AnalysisTarget:
    """What the loop needs to analyse one rollout; refreshed by every reconcile."""

    namespace: str
    name: str
    target: str
    twin: str
    analysis: api.Analysis
    url: str | None
    # status.analysis.lastStandard: what a compare metric is judged against at 100 %.
    last_standard: dict[str, float] = field(default_factory=dict)
    # status.stepStartedAt: where the MannWhitney judge's samples begin (None: not reached).
    step_started_at: str | None = None
    # The fresh baseline's Deployment name (spec.analysis.baseline on); None: compare metrics
    # measure against the standard track.
    baseline: str | None = None
    due: float = 0.0


@dataclass
class Scheduler:
    state: State
    prom: Prometheus = field(default_factory=Prometheus)
    targets: dict[tuple[str, str], AnalysisTarget] = field(default_factory=dict)
    default_url: str | None = None
    # rollout -> (Prometheus URL, namespace) of a rollout whose analysis ended (Promoted): its
    # pods' probe metrics are still read there (the guardrails alert after promotion) until it
    # is deleted or leaves Promoted. Keyed by rollout, not timed: an idle rollout may not
    # reconcile for a long time.
    watched: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    reporting: dict[str, _Reporting] = field(default_factory=dict)  # per address
    # Per address, the last answer read and the listing it was read with: the same again
    # changes no reading (a healthy idle fleet answers the same every round).
    last_read: dict[str, tuple[GuardAnswer, _Reporting]] = field(default_factory=dict)
    pruned_for: frozenset[tuple[str, str]] | None = None  # the cached pods at the last pruning
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a target due sooner
    guarding: bool = False  # a guardrail round is running
    running: set[tuple[str, str]] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    on_result: list[Callable[[str], None]] = field(default_factory=list)
    logs: LogScanner | None = None  # GIL fallback from pod logs, for pods without the probe

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- registration from reconciles
    def register(self, t: AnalysisTarget) -> None:
        key = (t.namespace, t.name)
        old = self.targets.get(key)
        if old is not None and old.analysis == t.analysis and old.url == t.url:
            t.due = old.due
        else:
            t.due = time.monotonic() + _spread(key, t.analysis.interval_seconds)
            self.wake.set()
        self.targets[key] = t

    def watch(self, key: tuple[str, str], url: str | None) -> None:
        """Keep reading the probe metrics of the rollout's namespace from `url` (a promoted
        rollout's own Prometheus: the guardrails alert after promotion); None: stop."""
        if url is None:
            self.watched.pop(key, None)
        else:
            self.watched[key] = (url, key[0])

    def unregister(self, key: tuple[str, str]) -> None:
        self.targets.pop(key, None)

    def forget(self, key: tuple[str, str]) -> None:
        """The rollout is gone: neither analysed nor watched."""
        self.targets.pop(key, None)
        self.watched.pop(key, None)

    # --- the loop
    async def run(self, stop: asyncio.Event | None = None) -> None:
        next_guard = 0.0
        next_logs = 0.0
        while stop is None or not stop.is_set():
            now = time.monotonic()
            soonest = now + GUARD_INTERVAL
            for key, t in list(self.targets.items()):
                if t.due <= now and key not in self.running:
                    t.due = now + t.analysis.interval_seconds
                    self.running.add(key)
                    self._spawn(self._analyse(t))
                # A round still running past its due time is looked at again in half a second.
                soonest = min(soonest, t.due if t.due > now else now + 0.5)
            if now >= next_guard and not self.guarding:
                # One round at a time: a slow address must not get a second query meanwhile.
                next_guard = now + GUARD_INTERVAL
                self.guarding = True
                self._spawn(self._guard())
            if self.logs is not None and now >= next_logs:
                next_logs = now + LOG_INTERVAL
                self._spawn(self.logs.round())
            soonest = min(soonest, next_guard, next_logs if self.logs is not None else soonest)
            # Asleep until something is due or a rollout registers an earlier round: an idle
            # operator wakes once per guardrail round, not twice a second; never more often
            # than that (1000 analysed rollouts have 1000 due times per interval).
            self.wake.clear()
            await self._sleep(max(0.5, soonest - time.monotonic()))

    async def _sleep(self, seconds: float) -> None:
        await wait_set(self.wake, seconds)

    async def _guard(self) -> None:
        try:
            await self.guard_round()
        except Exception:
            log.exception("guardrail round failed")
        finally:
            self.guarding = False
            self.wake.set()

    async def _analyse(self, t: AnalysisTarget) -> None:
        key = (t.namespace, t.name)
        try:
            rnd = await self.analyse(t)
            self.state.analysis[key] = rnd
            self.state.poke(t.namespace, t.name)
        except Exception:
            log.exception("analysis of %s/%s failed", t.namespace, t.name)
        finally:
            self.running.discard(key)

    async def analyse(self, t: AnalysisTarget) -> AnalysisRound:
        cache = self.state.cache
        pods = {
            TRACK_FREE_THREADED: [p.name for p in cache.pods_of(t.namespace, t.twin)],
            TRACK_STANDARD: [p.name for p in cache.pods_of(t.namespace, t.target)],
        }
        side, side_pods = comparison_side(
            pods[TRACK_STANDARD],
            None
            if t.baseline is None
            else [p.name for p in cache.pods_of(t.namespace, t.baseline)],
        )
        pods[side] = list(side_pods)
        timeout = parse_duration(t.analysis.prometheus.timeout)
        now = rfc3339(datetime.now(UTC))

        async def value(metric: api.Metric, track: str) -> Value:
            if not t.url:
                return Value(
                    None,
                    "no Prometheus address: set spec.analysis.prometheus.address or the "
                    "operator's --prometheus-url",
                )
            q = expand(
                metric.query,
                namespace=t.namespace,
                rollout=t.name,
                track=track,
                pods=pods[track],
            )
            try:
                return await self.prom.query(t.url or "", q, timeout, read_vector)
            except QueryError as exc:
                return Value(None, str(exc))

        async def samples(metric: api.Metric, track: str) -> Samples:
            if not t.url:
                return Samples(problem="no Prometheus address")
            if t.step_started_at is None:
                return Samples(problem="the step is not reached yet: nothing to sample")
            q = expand(
                metric.query, namespace=t.namespace, rollout=t.name, track=track, pods=pods[track]
            )
            start, end = parse_time(t.step_started_at), datetime.now(UTC)
            step = sample_step(start, end, t.analysis.interval_seconds)
            try:
                got: Samples = await self.prom.query_range(
                    t.url, q, start, end, step, timeout, shape=read_matrix
                )
                return got
            except QueryError as exc:
                return Samples(problem=str(exc))

        previous = {
            r.name: r for r in (self.state.analysis.get((t.namespace, t.name)) or _NO_ROUND).results
        }

        async def one(metric: api.Metric) -> api.MetricResult:
            if metric.compare is not None:
                if side == TRACK_STANDARD and not pods[TRACK_STANDARD]:
                    # At 100 % there are no standard pods left: compare with the last standard
                    # value measured in this revision rather than never deciding.
                    # From status first: this process may have started after the last
                    # standard pod went.
                    last = previous.get(metric.name)
                    kept = t.last_standard.get(metric.name)
                    if kept is None and last is not None:
                        kept = last.standard
                    baseline = (
                        Value(kept)
                        if kept is not None
                        else Value(None, "no standard pods and no earlier standard value")
                    )
                    return judge(metric, await value(metric, TRACK_FREE_THREADED), baseline, now)
                if metric.compare.judge == "MannWhitney":
                    ft_s, std_s = await asyncio.gather(
                        samples(metric, TRACK_FREE_THREADED), samples(metric, side)
                    )
                    return judge_samples(metric, ft_s, std_s, now, against=side)
                ft, std = await asyncio.gather(
                    value(metric, TRACK_FREE_THREADED), value(metric, side)
                )
                return judge(metric, ft, std, now, against=side)
            return judge(metric, await value(metric, TRACK_FREE_THREADED), None, now)

        metrics = t.analysis.metrics
        # One metric (the usual case) needs no task of its own.
        results = (
            [await one(metrics[0])]
            if len(metrics) == 1
            else await asyncio.gather(*(one(m) for m in metrics))
        )
        for hook in self.on_result:
            for r in results:
                hook(r.phase)
        return AnalysisRound(
            time=now, results=tuple(results), standard_measured=bool(pods[TRACK_STANDARD])
        )

    async def guard_round(self) -> None:
        """The probe metrics of every free-threaded pod on every known Prometheus: one query per
        address answering only what is not healthy, plus the reporting pods when they may have
        changed (`_Reporting`). Addresses are asked side by side: a slow one delays only its
        own readings."""

        registered = {(t.url, t.namespace) for t in self.targets.values() if t.url}
        # A series from a rollout's own Prometheus speaks only for that rollout's namespace:
        # a hostile exporter behind one team's address cannot roll back another team's pods.
        trust = trusted_namespaces(registered | set(self.watched.values()), self.default_url)
        dropped = set(self.last_read) - set(trust)
        for url in set(self.reporting) - set(trust):
            del self.reporting[url]
        for url in dropped:
            del self.last_read[url]
        known = self.state.cache.pod_keys()
        now = time.monotonic()
        # Each address's news is read as it comes: a slow address delays only its own.
        await asyncio.gather(
            *(self._guard_address(url, spaces, known, now) for url, spaces in trust.items())
        )
        if dropped:
            self._apply()
        self._prune(False)

    def _apply(self) -> None:
        changed = self._read()
        self._prune(bool(changed))
        for ns, pod in changed:
            for p in self._pods_named(ns, pod):
                self.state.poke(ns, self.state.cache.rollouts_for_pod(p))

    def _prune(self, force: bool) -> None:
        """Readings and counts of pods gone from the cluster (from the cache now: a pod may
        have come during the round): nothing reads them any more. A pod still known keeps its
        highest count (a lagging Prometheus replica answering 0 is not news); the counted
        baseline lives in the rollout's status."""
        live = self.state.cache.pod_keys()
        if force or live is not self.pruned_for:  # readings are added only for known pods
            self.pruned_for = live
            for pkey in set(self.state.gil) - live:
                del self.state.gil[pkey]
            for pkey in set(self.state.probe_counts) - live:
                del self.state.probe_counts[pkey]

    async def _guard_address(
        self, url: str, spaces: Trust, known: frozenset[tuple[str, str]], now: float
    ) -> None:
        """One address's round; its answer read when it differs from the last one."""
        # Filtered in the worker: the event loop sees the known pods' series only.
        keep = functools.partial(guard_answer, trust=spaces, pods=known)
        try:
            try:
                answer: GuardAnswer = await self.prom.query(
                    url, GUARD_QUERY, 10.0, keep, reuse=True
                )
            except QueryError as exc:
                if not exc.too_large:
                    raise
                parts = await asyncio.gather(
                    *(self.prom.query(url, q, 10.0, keep, reuse=True) for q in GUARD_PARTS.values())
                )
                answer = merge_answers(parts)
        except QueryError as exc:
            log.warning("guardrail query failed: %s", exc)
            return
        seen = self.reporting.get(url)
        if seen is None or seen.stale(answer.reporting, known, spaces, now):
            listing = functools.partial(reporting_pods, trust=spaces, pods=known)
            try:
                pods, count = await self.prom.query(url, REPORTING_QUERY, 10.0, listing, reuse=True)
            except QueryError as exc:
                log.warning("guardrail query failed: %s", exc)
                # The pods that are not healthy still count; which are healthy is not known.
                seen = seen or _Reporting(frozenset(), -1, known, spaces, float("-inf"))
            else:
                seen = self.reporting[url] = _Reporting(pods, count, known, spaces, now)
        last = self.last_read.get(url)
        self.last_read[url] = (answer, seen)
        # A listing again (DENSE_SECONDS) that found the same pods is no news: reading every
        # pod's state again was the idle operator's largest cost at 1000 rollouts.
        if last is None or last[0] != answer or last[1].pods != seen.pods:
            self._apply()

    def _read(self) -> set[tuple[str, str]]:
        """Readings from every address's last answer; the pods whose reading or count changed.

        Two addresses may both speak for a pod (a team's Prometheus and the platform's, one
        lagging the other): the GIL is on if either says so, off if either reports it off and
        none on, and a build is not free-threaded if either says so. So a lagging or a
        hostile (trusted only for its own namespaces) address cannot turn a fallback off."""
        changed: set[tuple[str, str]] = set()
        enabled: dict[tuple[str, str], bool | None] = {}
        builds: dict[tuple[str, str], bool | None] = {}
        modules: dict[tuple[str, str], set[str]] = {}
        for answer, seen in self.last_read.values():
            for s in answer.fallback:
                if s.module:
                    modules.setdefault((s.namespace, s.pod), set()).add(s.module)
            odd = {(s.namespace, s.pod): s.value for s in answer.gil}
            for pkey in seen.pods | set(odd):
                # Not in the answer's GIL part: the value is exactly 0, the GIL is off.
                value = odd.get(pkey, 0.0)
                enabled[pkey] = _either(enabled.get(pkey), None if value is None else value >= 1)
            for s in answer.build:
                pkey = (s.namespace, s.pod)
                build = None if s.value is None else s.value >= 1
                builds[pkey] = build if builds.get(pkey) is not False else False
        for pkey, on in enabled.items():
            reading = GilReading(
                enabled=on,
                modules=tuple(sorted(modules.get(pkey, ()))),
                build=builds.get(pkey),
            )
            if self.state.gil.get(pkey) != reading:
                self.state.gil[pkey] = reading
                changed.add(pkey)
        for answer, _ in self.last_read.values():
            for s in answer.incidents:
                pkey = (s.namespace, s.pod)
                if s.value is None:  # NaN, infinite or no value
                    continue
                # The highest value only: with two Prometheus replicas behind one Service a
                # lagging one answers lower; the planner counts rises against status.
                if s.value > self.state.probe_counts.get(pkey, 0.0):
                    self.state.probe_counts[pkey] = s.value
                    changed.add(pkey)
        return changed

    def _pods_named(self, namespace: str, pod: str) -> list[Any]:
        out = []
        for (ns, _), group in self.state.cache.pods.items():
            if ns == namespace and pod in group:
                out.append(group[pod])
        return out


_NO_ROUND = AnalysisRound(time="", results=())


@dataclass(frozen=True)
class _Reporting:
    """The pods one address last listed as reporting, and what that listing is good for."""

    pods: frozenset[tuple[str, str]]
    count: int  # series in that answer: GUARD_QUERY's `reporting` number, if nothing changed
    known: frozenset[tuple[str, str]]  # the cached pods it was asked for
    trust: Trust  # the namespaces it was filtered for
    at: float  # monotonic time

    def stale(
        self, count: int, known: frozenset[tuple[str, str]], trust: Trust, now: float
    ) -> bool:
        # `is`: the cache builds a new set only when a pod came or went.
        return (
            count != self.count
            or known is not self.known
            or trust != self.trust
            or now - self.at >= DENSE_SECONDS
        )


def _either(a: bool | None, b: bool | None) -> bool | None:
    """Two addresses' GIL readings of one pod: on wins, then off, then not known."""
    if a is True or b is True:
        return True
    if a is False or b is False:
        return False
    return None


def _spread(key: tuple[str, str], interval: float) -> float:
    """A stable offset within the interval, so rollouts' rounds do not all fall together."""
    return spread(key) * min(interval, 30.0)
