"""`kubectl ftr`: the kubectl plugin for FreeThreadedRollouts.

    kubectl ftr get [-n NS | -A] [--watch] [-o json|yaml]
    kubectl ftr status NAME [-n NS] [--watch | --wait [--timeout D]] [-o json|yaml]
    kubectl ftr promote NAME [--full] | pause NAME | resume NAME | rollback NAME | retry NAME
        [--wait [--timeout D]]
    kubectl ftr set image NAME IMAGE
    kubectl ftr report NAME [--prometheus-url URL] [-o json]
    kubectl ftr lint -f FILE [--strict] | version [--client] | completion bash|zsh|kubectl

kubectl does not hand its own global flags to plugins, so --kubeconfig, --context and
-n/--namespace are accepted here anywhere on the line (KUBECONFIG is honoured as usual). Actions
only set the annotation `freethreaded.dev/action`; the operator acts once and removes it.

Rendering is pure (`rollouts_table`, `status_view`, `report_view` take dicts and a clock) and
tested without a cluster; every failure is one line on stderr and an exit code (EXIT_*, 1 for
plain errors) that pipelines can tell apart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from io import StringIO
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ftrollout.cli import report
from ftrollout.model import api
from ftrollout.model.durations import parse_duration
from ftrollout.plan.metrics import (
    TRACK_FREE_THREADED,
    TRACK_STANDARD,
    expand,
    read_vector,
    underpowered,
)

ANNOTATION_ACTION = f"{api.GROUP}/action"
ACTIONS = ("promote", "pause", "resume", "rollback", "retry")
PHASE_STYLE = {
    "Pending": "cyan",
    "Progressing": "blue",
    "Paused": "yellow",
    "Promoted": "green",
    "RolledBack": "red",
    "Failed": "bold red",
}
EVENTS_SHOWN = 8
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read


# Exit codes, documented in docs/kubectl-ftr.md; 2 is argparse's usage error.
EXIT_ERROR = 1
EXIT_ROLLED_BACK = 3
EXIT_FAILED = 4
EXIT_TIMEOUT = 5
EXIT_ACTION_IGNORED = 6
EXIT_ACTION_REPLACED = 7
EXIT_CODES = (
    0,
    EXIT_ERROR,
    2,
    EXIT_ROLLED_BACK,
    EXIT_FAILED,
    EXIT_TIMEOUT,
    EXIT_ACTION_IGNORED,
    EXIT_ACTION_REPLACED,
)


class PluginError(Exception):
    """Anything the user should read as one line: no cluster, not found, forbidden ..."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------- formatting helpers


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """kubectl-style age: 42s, 5m, 3h, 2d; '-' when unknown."""
    t = parse_time(value)
    if t is None:
        return "-"
    secs = max(0, int((now - t).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 2 * 3600:
        return f"{secs // 60}m"
    if secs < 48 * 3600:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _status(obj: Mapping[str, Any]) -> api.RolloutStatus:
    return api.parse_status(obj.get("status"))


def _spec(obj: Mapping[str, Any]) -> api.RolloutSpec | None:
    try:
        return api.parse_spec(obj.get("spec"))
    except api.SpecError:
        return None


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def phase_text(phase: str | None) -> Text:
    name = phase or "Pending"
    return Text(name, style=PHASE_STYLE.get(name, ""))


def _step_text(st: api.RolloutStatus, spec: api.RolloutSpec | None) -> str:
    if st.step_index is None:
        return "-"
    total = len(spec.steps) if spec is not None else "?"
    return f"{st.step_index + 1}/{total}"


def _gil_text(g: api.GilStatus) -> str:
    if g.pods == 0:
        return "-"
    if g.enabled:
        return f"ON({g.enabled})"
    if g.unknown:
        return f"off {g.disabled}/{g.pods}, ?{g.unknown}"
    return f"off {g.disabled}/{g.pods}"


def rollout_row(obj: Mapping[str, Any], now: datetime, all_namespaces: bool) -> list[str]:
    meta = _meta(obj)
    spec_raw = obj.get("spec") or {}
    st = _status(obj)
    spec = _spec(obj)
    r = st.replicas
    row = [
        str(meta.get("name", "")),
        str((spec_raw.get("targetRef") or {}).get("name", "")),
        st.phase.value if st.phase is not None else "Pending",
        _step_text(st, spec),
        "-" if st.weight is None else f"{st.weight}%",
        f"{r.standard_ready}/{r.standard}",
        f"{r.free_threaded_ready}/{r.free_threaded}",
        _gil_text(st.gil),
        st.races.summary if st.races.window else "-",
        age(meta.get("creationTimestamp"), now),
    ]
    if all_namespaces:
        row.insert(0, str(meta.get("namespace", "")))
    return row


GET_COLUMNS = [
    "NAME",
    "TARGET",
    "PHASE",
    "STEP",
    "WEIGHT",
    "STANDARD",
    "FREE-THREADED",
    "GIL",
    "RACES",
    "AGE",
]


def rollouts_table(items: Sequence[Mapping[str, Any]], now: datetime, all_namespaces: bool) -> Text:
    """The `kubectl ftr get` table, kubectl style: no borders, 3-space gaps, never truncated."""
    columns = (["NAMESPACE"] if all_namespaces else []) + GET_COLUMNS
    ordered = sorted(items, key=lambda o: (_meta(o).get("namespace", ""), _meta(o).get("name", "")))
    rows = [rollout_row(obj, now, all_namespaces) for obj in ordered]
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    phase_col = columns.index("PHASE")
    out = Text()
    for n, row in enumerate([columns, *rows]):
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            text = cell if last else cell.ljust(widths[i] + 3)
            style = "bold" if n == 0 else ""
            if n > 0 and i == phase_col:
                style = PHASE_STYLE.get(cell, "")
            out.append(text, style=style)
        out.append("\n")
    out.rstrip()
    return out


def _pause_text(step: api.Step) -> str:
    if step.pause is None:
        return "none"
    return step.pause.duration or "until promote"


def steps_table(spec: api.RolloutSpec | None, st: api.RolloutStatus, now: datetime) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for c in ("", "STEP", "WEIGHT", "PAUSE", ""):
        table.add_column(c, no_wrap=True)
    if spec is None:
        return table
    current = st.step_index
    promoted = st.phase == api.Phase.PROMOTED
    for i, step in enumerate(spec.steps):
        if promoted or (current is not None and i < current):
            marker, note = Text("✓", style="green"), ""
        elif current == i:
            marker = Text("▶", style="bold")
            if st.step_started_at:
                note = f"← current, reached {age(st.step_started_at, now)} ago"
            else:
                note = "← current, scaling"
        else:
            marker, note = Text(" "), ""
        table.add_row(marker, str(i + 1), f"{step.weight}%", _pause_text(step), note)
    return table


def _check_text(metric: api.Metric | None) -> str:
    if metric is None:
        return ""
    if metric.compare is not None:
        parts = []
        if metric.compare.max_increase_percent is not None:
            parts.append(f"≤ +{report.fmt_number(metric.compare.max_increase_percent)}%")
        if metric.compare.max_decrease_percent is not None:
            parts.append(f"≥ -{report.fmt_number(metric.compare.max_decrease_percent)}%")
        text = " and ".join(parts) + " vs standard"
        if metric.compare.judge == "MannWhitney":
            text += f" (Mann-Whitney, {report.fmt_number(metric.compare.confidence * 100)}%)"
        return text
    if metric.threshold is not None:
        parts = []
        if metric.threshold.min is not None:
            parts.append(f"min {report.fmt_number(metric.threshold.min)}")
        if metric.threshold.max is not None:
            parts.append(f"max {report.fmt_number(metric.threshold.max)}")
        return ", ".join(parts)
    return ""


RESULT_STYLE = {"Successful": "green", "Failed": "red", "Inconclusive": "yellow"}


def _value_text(value: float | None, samples: int | None) -> str:
    """A track's value; for the MannWhitney judge its median over `samples` samples."""
    shown = "-" if value is None else report.fmt_number(value)
    return shown if samples is None else f"{shown} (median of {samples})"


def analysis_table(spec: api.RolloutSpec | None, st: api.RolloutStatus) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for c in ("METRIC", "RESULT", "FREE-THREADED", "STANDARD", "CHECK", "MESSAGE"):
        table.add_column(c, no_wrap=c != "MESSAGE", overflow="fold")
    metrics = {m.name: m for m in (spec.analysis.metrics if spec and spec.analysis else [])}
    seen = set()
    for res in st.analysis.metrics:
        seen.add(res.name)
        n = res.statistics
        table.add_row(
            res.name,
            Text(res.phase, style=RESULT_STYLE.get(res.phase, "")),
            _value_text(res.free_threaded, None if n is None else n.free_threaded_samples),
            _value_text(res.standard, None if n is None else n.standard_samples),
            _check_text(metrics.get(res.name)),
            res.message,
        )
    for name, metric in metrics.items():
        if name not in seen:
            table.add_row(
                name, Text("-", style="dim"), "-", "-", _check_text(metric), "no round yet"
            )
    return table


@dataclass(frozen=True)
class PodGil:
    enabled: bool | None
    modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodRow:
    name: str
    track: str
    status: str
    ready: str
    restarts: int
    gil: str
    incident: str


def _pod_status(body: Mapping[str, Any]) -> str:
    """kubectl's STATUS: a waiting/terminated container's reason, else the pod phase."""
    status = body.get("status") or {}
    if _meta(body).get("deletionTimestamp"):
        return "Terminating"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        for key in ("waiting", "terminated"):
            reason = (state.get(key) or {}).get("reason")
            if reason:
                return str(reason)
    return str(status.get("phase") or "Unknown")


def pod_rows(
    obj: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    gil: Mapping[str, PodGil] | None,
    now: datetime,
) -> list[PodRow]:
    """One row per pod of the target (standard) and the twin (free-threaded), twin first.

    GIL comes from the probe's metrics in Prometheus (`gil`, None when not queried); the last
    incident from status.races.recent, else a race-like exit (139/134) in the pod's status."""
    from ftrollout.plan.observe import summarize_pod

    target = str(((obj.get("spec") or {}).get("targetRef") or {}).get("name", ""))
    recent: dict[str, api.Incident] = {}
    for incident in _status(obj).races.recent:
        recent[incident.pod] = incident
    rows: list[PodRow] = []
    for body in pods:
        p = summarize_pod(body)
        if p.deployment == f"{target}-ft":
            track = TRACK_FREE_THREADED
        elif p.deployment == target:
            track = TRACK_STANDARD
        else:
            continue
        statuses = (body.get("status") or {}).get("containerStatuses") or []
        ready = sum(1 for cs in statuses if cs.get("ready"))
        restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
        if track == TRACK_STANDARD:
            gil_text = "-"
        elif gil is None or p.name not in gil:
            gil_text = "?"
        else:
            g = gil[p.name]
            gil_text = "?" if g.enabled is None else ("ON" if g.enabled else "off")
            if g.modules:
                gil_text += f" ({', '.join(g.modules)})"
        last_incident = ""
        inc = recent.get(p.name)
        if inc is not None:
            code = f"exit {inc.exit_code}" if inc.exit_code is not None else inc.source.lower()
            last_incident = f"{code}, {age(inc.time, now)} ago"
        elif p.terminations:
            last = max(p.terminations, key=lambda t: t.finished_at)
            last_incident = f"exit {last.exit_code}, {age(last.finished_at, now)} ago"
        rows.append(
            PodRow(p.name, track, _pod_status(body), f"{ready}/{len(statuses)}", restarts,
                   gil_text, last_incident or "-")
        )  # fmt: skip
    order = {TRACK_FREE_THREADED: 0, TRACK_STANDARD: 1}
    return sorted(rows, key=lambda r: (order[r.track], r.name))


def pods_table(rows: Sequence[PodRow]) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for c in ("POD", "TRACK", "STATUS", "READY", "RESTARTS", "GIL", "LAST INCIDENT"):
        table.add_column(c, no_wrap=c != "LAST INCIDENT", overflow="fold")
    for r in rows:
        table.add_row(
            r.name,
            r.track,
            Text(r.status, style="" if r.status == "Running" else "yellow"),
            r.ready,
            Text(str(r.restarts), style="yellow" if r.restarts else ""),
            Text(r.gil, style="red" if r.gil.startswith("ON") else ""),
            Text(r.incident, style="red" if r.incident != "-" else ""),
        )
    return table


def _kv() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def _event_time(ev: Mapping[str, Any]) -> str:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if ev.get(key):
            return str(ev[key])
    return str(_meta(ev).get("creationTimestamp") or "")


def status_view(
    obj: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    now: datetime,
    pods: Sequence[PodRow] | None = None,
    pods_note: str = "",
) -> Group:
    """The readable `kubectl ftr status` view of one rollout."""
    meta = _meta(obj)
    spec = _spec(obj)
    spec_raw = obj.get("spec") or {}
    st = _status(obj)
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    parts: list[RenderableType] = [
        Text.assemble(("FreeThreadedRollout ", "bold"), (f"{namespace}/{name}", "bold cyan"))
    ]

    kv = _kv()
    target = str((spec_raw.get("targetRef") or {}).get("name", "?"))
    kv.add_row("Target", f"deployment/{target} (standard) → deployment/{target}-ft (free-threaded)")
    ft = spec_raw.get("freeThreaded") or {}
    image = str(ft.get("image", "?"))
    if ft.get("container"):
        image += f" (container {ft['container']})"
    kv.add_row("Image", image)
    phase_line = phase_text(st.phase.value if st.phase is not None else None)
    if st.message:
        phase_line.append(f"  {st.message}", style="")
    kv.add_row("Phase", phase_line)
    if spec_raw.get("paused"):
        kv.add_row("Paused", "spec.paused is true (`kubectl ftr resume` to continue)")
    step = _step_text(st, spec)
    weight = "-" if st.weight is None else f"{st.weight}%"
    kv.add_row(
        "Step", f"{step}, weight {weight}" + (f", revision {st.revision}" if st.revision else "")
    )
    r = st.replicas
    kv.add_row(
        "Replicas",
        f"N={r.target}   standard {r.standard_ready}/{r.standard} Ready   "
        f"free-threaded {r.free_threaded_ready}/{r.free_threaded} Ready",
    )
    g = st.gil
    if g.pods == 0:
        gil = "no free-threaded pods yet"
    else:
        gil = f"off in {g.disabled}/{g.pods} free-threaded pods"
        if g.enabled:
            gil += f", ON in {g.enabled} (GIL fallback)"
        if g.unknown:
            gil += f", unknown in {g.unknown}"
    if g.fallback_modules:
        gil += f"; re-enabled by: {', '.join(g.fallback_modules)}"
    kv.add_row("GIL", Text(gil, style="red" if g.enabled else ""))
    races = st.races
    if races.window:
        race_line = f"{races.incidents}/{races.budget} incidents in {races.window}"
        for inc in races.recent[-3:]:
            code = f"exit {inc.exit_code}" if inc.exit_code is not None else inc.source.lower()
            race_line += f"\n{inc.pod}: {code} at {inc.time}"
        kv.add_row("Races", race_line)
    else:
        kv.add_row("Races", "-")
    if st.promoted_at is not None:
        kv.add_row("Promoted", f"{age(st.promoted_at, now)} ago ({st.promoted_at})")
    if st.rollback is not None:
        kv.add_row(
            "Rollback",
            Text(f"{st.rollback.reason.value}: {st.rollback.message} ({st.rollback.time})", "red"),
        )
    pf = st.preflight
    if pf is not None:
        line: str = pf.phase
        if pf.python_version:
            line += f" — {pf.python_version.splitlines()[0]}"
        if pf.free_threading_build is False:
            line += " (NOT a free-threading build)"
        mods = [
            f"{m.name} {m.version or ''}".strip()
            + (" ✓" if m.imported and m.gil_enabled is False else " ✗")
            for m in pf.modules
        ]
        if mods:
            line += "\n" + ", ".join(mods)
        if pf.message:
            line += f"\n{pf.message}"
        kv.add_row("Preflight", line)
    parts.append(kv)

    parts.append(Text("\nSteps", style="bold underline"))
    parts.append(steps_table(spec, st, now))

    if (spec is not None and spec.analysis is not None) or st.analysis.metrics:
        limit = spec.analysis.failure_limit if spec and spec.analysis else "?"
        head = f"\nAnalysis (failed rounds {st.analysis.failed_rounds}, limit {limit}"
        if st.analysis.last_round:
            # Numbers that changed no result are written every --status-refresh only.
            head += f"; values as of {age(st.analysis.last_round, now)} ago"
        parts.append(Text(head + ")", style="bold underline"))
        parts.append(analysis_table(spec, st))

    if pods is not None:
        parts.append(Text("\nPods", style="bold underline"))
        if pods:
            parts.append(pods_table(pods))
        else:
            parts.append(Text("none", style="dim"))
        if pods_note:
            parts.append(Text(pods_note, style="dim"))

    if st.conditions:
        parts.append(Text("\nConditions", style="bold underline"))
        ct = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for col in ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"):
            ct.add_column(col, no_wrap=col != "MESSAGE", overflow="fold")
        for c in st.conditions:
            style = "green" if c.status == "True" else ("red" if c.status == "False" else "yellow")
            ct.add_row(
                c.type,
                Text(c.status, style=style),
                c.reason,
                age(c.last_transition_time, now),
                c.message,
            )
        parts.append(ct)

    parts.append(Text(f"\nEvents (last {EVENTS_SHOWN})", style="bold underline"))
    if events:
        et = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for col in ("AGE", "TYPE", "REASON", "MESSAGE"):
            et.add_column(col, no_wrap=col != "MESSAGE", overflow="fold")
        for ev in sorted(events, key=_event_time)[-EVENTS_SHOWN:]:
            typ = str(ev.get("type", ""))
            et.add_row(
                age(_event_time(ev), now),
                Text(typ, style="yellow" if typ == "Warning" else ""),
                str(ev.get("reason", "")),
                str(ev.get("message", "")),
            )
        parts.append(et)
    else:
        parts.append(Text("none", style="dim"))
    return Group(*parts)


def progress_line(obj: Mapping[str, Any]) -> str:
    """One line of `status --wait`: printed whenever it changes."""
    meta = _meta(obj)
    st = _status(obj)
    r = st.replicas
    line = (
        f"{meta.get('namespace', '')}/{meta.get('name', '')} "
        f"{st.phase.value if st.phase is not None else 'Pending'} "
        f"step {_step_text(st, _spec(obj))} weight {'-' if st.weight is None else st.weight}% "
        f"standard {r.standard_ready}/{r.standard} free-threaded "
        f"{r.free_threaded_ready}/{r.free_threaded} GIL {_gil_text(st.gil)}"
    )
    if st.races.window:
        line += f" races {st.races.summary}"
    line += f": {st.message}" if st.message else ""
    not_ready = _promoted_not_ready(st)
    if not_ready is not None:
        line += f"; not Ready yet ({not_ready.reason}): {not_ready.message}"
    return line


def _ready(st: api.RolloutStatus) -> api.Condition | None:
    return next((c for c in st.conditions if c.type == "Ready"), None)


def _promoted_not_ready(st: api.RolloutStatus) -> api.Condition | None:
    """The Ready condition of a Promoted rollout that has not reached its goal yet (baking,
    free-threaded pods still becoming Ready); None otherwise."""
    ready = _ready(st)
    if st.phase != api.Phase.PROMOTED or ready is None or ready.status == "True":
        return None
    return ready


def wait_outcome(obj: Mapping[str, Any]) -> int | None:
    """The exit code of `status --wait` once the rollout ended; None while it has not.

    Success is the goal the `Ready` condition describes (kstatus, Flux, `kubectl wait`):
    Promoted, every free-threaded replica Ready, and the bake over, since a guardrail can still
    roll back while baking. A phase counts only once the operator has seen the current spec:
    right after `set image` the status still holds the previous revision's Promoted."""
    meta = _meta(obj)
    raw = obj.get("status") or {}
    generation = meta.get("generation")
    if generation is not None and (raw.get("observedGeneration") or 0) < generation:
        return None
    st = _status(obj)
    phase = st.phase
    if phase == api.Phase.PROMOTED:
        # No Ready condition at all: an operator from before it; its Promoted is the end.
        return None if _promoted_not_ready(st) is not None else 0
    if phase == api.Phase.ROLLED_BACK:
        return EXIT_ROLLED_BACK
    if phase == api.Phase.FAILED:
        return EXIT_FAILED
    return None


def outcome_message(obj: Mapping[str, Any], code: int) -> str:
    meta = _meta(obj)
    st = _status(obj)
    what = f"freethreadedrollout {meta.get('namespace', '')}/{meta.get('name', '')}"
    if code == 0:
        return f"{what} promoted"
    if code == EXIT_ROLLED_BACK:
        if st.rollback is not None:
            return f"{what} rolled back ({st.rollback.reason.value}): {st.rollback.message}"
        return f"{what} rolled back: {st.message}"
    if code == EXIT_FAILED:
        return f"{what} failed: {st.message}"
    not_ready = _promoted_not_ready(st)
    if not_ready is not None:
        return f"{what} promoted but not Ready yet ({not_ready.reason}): {not_ready.message}"
    phase = st.phase.value if st.phase is not None else "Pending"
    return f"{what} still {phase}" + (f": {st.message}" if st.message else "")


def report_view(obj: Mapping[str, Any], kpis: Sequence[report.Kpi]) -> Group:
    meta = _meta(obj)
    st = _status(obj)
    weight = "-" if st.weight is None else f"{st.weight}%"
    phase = st.phase.value if st.phase is not None else "Pending"
    title = Text.assemble(
        ("Adoption KPIs ", "bold"),
        (f"{meta.get('namespace', '')}/{meta.get('name', '')}", "bold cyan"),
        f"  (phase {phase}, weight {weight})",
    )
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("KPI", no_wrap=True, min_width=max(len(t) for t in report.TITLES.values()))
    table.add_column("VALUE", overflow="fold", min_width=16)
    table.add_column("DETAIL", overflow="fold", ratio=1)
    for k in kpis:
        table.add_row(k.title, Text(k.text, style="" if k.available else "dim"), k.detail)
    return Group(title, table)


def render_text(renderable: RenderableType, width: int = 120) -> str:
    """Plain text of a renderable (tests, pipes): no colour, no trailing blanks."""
    buf = StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False).print(renderable)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


# ------------------------------------------------------------------------------- cluster I/O


@dataclass
class Cluster:
    client: Any  # kubernetes.client.ApiClient
    namespace: str  # the context's namespace (kubectl's default for -n)
    host: str

    @property
    def custom(self) -> Any:
        import kubernetes

        return kubernetes.client.CustomObjectsApi(self.client)

    @property
    def core(self) -> Any:
        import kubernetes

        return kubernetes.client.CoreV1Api(self.client)

    @property
    def apps(self) -> Any:
        import kubernetes

        return kubernetes.client.AppsV1Api(self.client)


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    """Load credentials as kubectl does: --kubeconfig, else $KUBECONFIG, else ~/.kube/config."""
    import kubernetes
    from kubernetes.config.config_exception import ConfigException

    cfg = kubernetes.client.Configuration()
    kconfig: Any = kubernetes.config  # partly annotated: keep mypy's untyped-call check quiet
    namespace = "default"
    # Resolved here, not by the client: it reads $KUBECONFIG once, at import time.
    # Several files separated by ":" are merged, as kubectl does.
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        kconfig.load_kube_config(
            config_file=path,
            context=context,
            client_configuration=cfg,
            persist_config=False,
        )
        contexts, active = kconfig.list_kube_config_contexts(config_file=path)
        chosen = active
        if context:
            chosen = next((c for c in contexts if c.get("name") == context), None)
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    except ConfigException as exc:
        in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig and not context
        if not in_cluster:
            raise PluginError(
                f"no usable Kubernetes configuration in {path}: {exc} "
                "(set KUBECONFIG or pass --kubeconfig/--context)"
            ) from None
        kconfig.load_incluster_config(client_configuration=cfg)
        sa_ns = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        if os.path.exists(sa_ns):
            with open(sa_ns) as f:
                namespace = f.read().strip() or "default"
    cfg.retries = 0  # fail fast and say so, rather than retrying a dead endpoint
    return Cluster(kubernetes.client.ApiClient(cfg), namespace, str(cfg.host))


def explain(exc: BaseException, cluster: Cluster, what: str, namespace: str | None) -> str:
    """One line for an API failure."""
    from kubernetes.client.exceptions import ApiException

    where = f' in namespace "{namespace}"' if namespace else ""
    if isinstance(exc, ApiException):
        message = ""
        details: dict[str, Any] = {}
        try:
            body = json.loads(exc.body or "{}")
            message = str(body.get("message", ""))
            details = body.get("details") or {}
        except (ValueError, TypeError, AttributeError):
            pass
        if exc.status == 404:
            if details.get("name"):
                return f"{what} not found{where}"
            return (
                "the FreeThreadedRollout CRD is not installed in this cluster "
                f"({api.PLURAL}.{api.GROUP}): install the ftrollout chart or apply crds/"
            )
        if exc.status == 403:
            return f"forbidden: {message or exc.reason}"
        if exc.status == 401:
            return f"unauthorized: the API server at {cluster.host} rejected the credentials"
        return f"API error {exc.status} ({exc.reason}): {message or 'no details'}"
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "Connection refused" in text or "Max retries" in text or "NewConnectionError" in text:
        text = "connection refused" if "refused" in text.lower() else text
    return f"cannot reach the Kubernetes API at {cluster.host}: {text}"


def _call(
    cluster: Cluster, what: str, namespace: str | None, fn: Callable[..., Any], *a: Any, **kw: Any
) -> Any:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        return fn(*a, _request_timeout=REQUEST_TIMEOUT, **kw)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise PluginError(explain(exc, cluster, what, namespace)) from None


def _json(resp: Any) -> Any:
    return json.loads(resp.data)


def get_rollout(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = _call(
        cluster,
        f'freethreadedrollout "{name}"',
        namespace,
        cluster.custom.get_namespaced_custom_object,
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        name,
    )
    return obj


def list_rollouts(cluster: Cluster, namespace: str | None) -> list[dict[str, Any]]:
    if namespace is None:
        out = _call(
            cluster,
            "freethreadedrollouts",
            None,
            cluster.custom.list_cluster_custom_object,
            api.GROUP,
            api.VERSION,
            api.PLURAL,
        )
    else:
        out = _call(
            cluster,
            "freethreadedrollouts",
            namespace,
            cluster.custom.list_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
        )
    items: list[dict[str, Any]] = out.get("items") or []
    return items


def list_events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events of the rollout; an empty list when they may not be read (the status view still
    shows, and an action's --wait decides from status)."""
    try:
        resp = _call(
            cluster,
            "events",
            namespace,
            cluster.core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind={api.KIND}",
            _preload_content=False,
        )
    except PluginError:
        return []
    items: list[dict[str, Any]] = _json(resp).get("items") or []
    return items


OPERATOR_SELECTOR = "app.kubernetes.io/name=ftrollout"


def image_tag(image: str) -> str | None:
    """`repo:tag` or `repo:tag@sha256:...` -> tag; None without one (a registry port is no tag)."""
    name = image.split("@", 1)[0]
    _, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return None
    return tag


def operator_version(cluster: Cluster) -> str:
    """The running operator's version: its Deployment's app.kubernetes.io/version label, else
    its image tag; 'unknown (why)' when neither can be read."""
    try:
        resp = _call(
            cluster,
            "deployments",
            None,
            cluster.apps.list_deployment_for_all_namespaces,
            label_selector=OPERATOR_SELECTOR,
            _preload_content=False,
        )
    except PluginError as exc:
        return f"unknown ({exc})"
    found = []
    for dep in _json(resp).get("items") or []:
        meta = _meta(dep)
        containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers"
        ) or [{}]
        image = str(containers[0].get("image") or "")
        version = (meta.get("labels") or {}).get("app.kubernetes.io/version") or image_tag(image)
        where = f"deployment {meta.get('namespace', '')}/{meta.get('name', '')}"
        found.append(f"{version or 'unknown'} ({where}, image {image or '?'})")
    if not found:
        return f"unknown (no Deployment labelled {OPERATOR_SELECTOR} is visible)"
    return "; ".join(sorted(found))


def _patch_rollout(cluster: Cluster, namespace: str, name: str, patch: dict[str, Any]) -> None:
    _call(
        cluster,
        f'freethreadedrollout "{name}"',
        namespace,
        cluster.custom.patch_namespaced_custom_object,
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        name,
        patch,
    )


def set_action(cluster: Cluster, namespace: str, name: str, action: str) -> dict[str, Any]:
    """Write the request; the rollout as read just before."""
    obj = get_rollout(cluster, namespace, name)  # a clear "not found" before any write
    _patch_rollout(
        cluster, namespace, name, {"metadata": {"annotations": {ANNOTATION_ACTION: action}}}
    )
    return obj


def set_image(cluster: Cluster, namespace: str, name: str, image: str) -> str | None:
    """Patch spec.freeThreaded.image; the previous image, None when it was already that."""
    obj = get_rollout(cluster, namespace, name)
    old = str(((obj.get("spec") or {}).get("freeThreaded") or {}).get("image") or "")
    if old == image:
        return None
    _patch_rollout(cluster, namespace, name, {"spec": {"freeThreaded": {"image": image}}})
    return old


def list_pods(cluster: Cluster, namespace: str) -> tuple[list[dict[str, Any]] | None, str]:
    try:
        resp = _call(
            cluster, "pods", namespace, cluster.core.list_namespaced_pod, namespace,
            _preload_content=False,
        )  # fmt: skip
    except PluginError as exc:
        return None, str(exc)
    items: list[dict[str, Any]] = _json(resp).get("items") or []
    return items, ""


def pods_by_track(
    cluster: Cluster, namespace: str, target: str
) -> tuple[dict[str, list[str]], str]:
    """Running pod names of each track (by owning Deployment); ({}, why) when not readable."""
    from ftrollout.plan.observe import summarize_pod

    bodies, why = list_pods(cluster, namespace)
    if bodies is None:
        return {}, why
    tracks: dict[str, list[str]] = {TRACK_STANDARD: [], TRACK_FREE_THREADED: []}
    for body in bodies:
        if (body.get("status") or {}).get("phase") != "Running":
            continue
        p = summarize_pod(body)
        if p.deployment == target:
            tracks[TRACK_STANDARD].append(p.name)
        elif p.deployment == f"{target}-ft":
            tracks[TRACK_FREE_THREADED].append(p.name)
    return tracks, ""


# ------------------------------------------------------------------------------- Prometheus


def prom_query(url: str, query: str, timeout: float = 10.0) -> Any:
    full = url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(full, timeout=timeout) as resp:
        body = json.loads(resp.read())
    if body.get("status") != "success":
        raise ValueError(body.get("error") or "query failed")
    return (body.get("data") or {}).get("result")


def prometheus_values(
    url: str,
    namespace: str,
    rollout: str,
    pods: Mapping[str, Sequence[str]],
    queries: Mapping[str, Sequence[str]],
    query: Callable[[str, str], Any] = prom_query,
) -> tuple[dict[str, report.TrackValues] | None, str]:
    """Both tracks' values of each comparative KPI; (None, why) when Prometheus is unusable."""
    missing = [t for t in (TRACK_FREE_THREADED, TRACK_STANDARD) if not pods.get(t)]
    if missing:
        return None, f"no running {' or '.join(missing)} pods to compare"
    out: dict[str, report.TrackValues] = {}
    for key, candidates in queries.items():
        problem = "no query"
        for template in candidates:
            values: dict[str, float | None] = {}
            for track in (TRACK_FREE_THREADED, TRACK_STANDARD):
                q = expand(
                    template, namespace=namespace, rollout=rollout, track=track, pods=pods[track]
                )
                try:
                    v = read_vector(query(url, q))
                except (OSError, urllib.error.URLError) as exc:
                    reason = getattr(exc, "reason", exc)
                    return None, f"Prometheus at {url} unreachable: {reason}"
                except ValueError as exc:
                    problem = f"query error: {exc}"
                    values[track] = None
                    continue
                values[track] = v.value
                if v.value is None:
                    problem = f"{track}: {v.problem}"
            ft, std = values.get(TRACK_FREE_THREADED), values.get(TRACK_STANDARD)
            if ft is not None and std is not None:
                out[key] = report.TrackValues(ft, std, source=f"Prometheus {url}")
                break
        else:
            out[key] = report.TrackValues(None, None, problem=f"Prometheus: {problem}")
    return out, ""


def request_counts(
    url: str,
    namespace: str,
    rollout: str,
    pods: Mapping[str, Sequence[str]],
    template: str,
    gil: Mapping[str, PodGil] | None,
    query: Callable[[str, str], Any] = prom_query,
) -> tuple[report.RequestCounts | None, str]:
    """Requests per second of each Running pod of both tracks (`template` summed by pod), and
    the free-threaded pods the probe reports with the GIL off; (None, why) when not known."""
    rates: dict[str, dict[str, float]] = {TRACK_FREE_THREADED: {}, TRACK_STANDARD: {}}
    for track, by_pod in rates.items():
        if not pods.get(track):
            continue  # no pod of this track runs: it serves no requests
        # A query without {{pods}} (an override by namespace or app) returns both tracks' pods
        # for each track: a sample counts only under the track its pod belongs to.
        own = set(pods[track])
        q = expand(template, namespace=namespace, rollout=rollout, track=track, pods=pods[track])
        try:
            result = query(url, q)
        except (OSError, urllib.error.URLError) as exc:
            return None, f"Prometheus at {url} unreachable: {getattr(exc, 'reason', exc)}"
        except ValueError as exc:
            return None, f"request-count query error: {exc}"
        for sample in result if isinstance(result, list) else []:
            if not isinstance(sample, dict):
                continue
            pod = (sample.get("metric") or {}).get("pod")
            v = read_vector([sample]).value
            if not isinstance(pod, str) or not pod:
                return None, "the request-count query must keep the pod label (sum by (pod))"
            if v is not None and pod in own:
                by_pod[pod] = by_pod.get(pod, 0.0) + v
    if not any(rates.values()):
        return None, f"no request counts in Prometheus for the tracks' pods ({template})"
    gil_off = None
    if gil:  # the probe's per-pod reading; empty: no probe metrics
        gil_off = frozenset(p for p, g in gil.items() if g.enabled is False)
    return report.RequestCounts(
        rates[TRACK_FREE_THREADED], rates[TRACK_STANDARD], gil_off, f"Prometheus {url}"
    ), ""


def pod_gil(
    url: str,
    namespace: str,
    pods: Sequence[str],
    query: Callable[[str, str], Any] = prom_query,
) -> tuple[dict[str, PodGil] | None, str]:
    """Each free-threaded pod's GIL state from the probe's metrics (as the operator reads it)."""
    if not pods:
        return {}, ""
    sel = f'{{namespace="{namespace}", pod=~"{"|".join(sorted(pods))}"}}'
    try:
        gil_r = query(url, f"max by (pod) (python_gil_enabled{sel})")
        mod_r = query(url, f"sum by (pod, module) (python_gil_fallback_total{sel}) > 0")
    except (OSError, ValueError) as exc:
        return None, f"GIL per pod: Prometheus at {url} unusable: {getattr(exc, 'reason', exc)}"
    modules: dict[str, set[str]] = {}
    for sample in mod_r or []:
        m = sample.get("metric") or {}
        modules.setdefault(str(m.get("pod", "")), set()).add(str(m.get("module", "")))
    out: dict[str, PodGil] = {}
    for sample in gil_r or []:
        pod = str((sample.get("metric") or {}).get("pod", ""))
        v = read_vector([sample]).value
        out[pod] = PodGil(None if v is None else v >= 1, tuple(sorted(modules.get(pod, ()))))
    return out, ""


def _prometheus_url(args: argparse.Namespace, spec: api.RolloutSpec | None) -> str | None:
    url: str | None = getattr(args, "prometheus_url", None) or os.environ.get("FTR_PROMETHEUS_URL")
    if not url and spec is not None and spec.analysis is not None:
        url = spec.analysis.prometheus.address
    return url or None


# ---------------------------------------------------------------------------------- commands


def _out() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # a pipe: lay out for a wide page, like kubectl does
        console.width = int(os.environ.get("COLUMNS") or 0) or 160
    return console


def show(renderable: RenderableType) -> None:
    """Colour on a terminal; plain text without trailing blanks in a pipe."""
    console = _out()
    if console.is_terminal:
        console.print(renderable)
    else:
        sys.stdout.write(render_text(renderable, width=console.width))


def print_object(obj: Any, output: str) -> None:
    """-o json|yaml: the API's own form, as kubectl prints it."""
    if output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))
    else:
        print(json.dumps(obj, indent=2, ensure_ascii=False))


def _watch(
    render: Callable[[], RenderableType],
    done: Callable[[], bool],
    interval: float,
    timeout: float | None,
) -> None:
    """Redraw until done(), the timeout or Ctrl-C. On a terminal the view is redrawn in place;
    otherwise each changed view is printed once."""
    from rich.live import Live

    console = _out()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if console.is_terminal:
            with Live(render(), console=console, auto_refresh=False) as live:
                while not done() and (deadline is None or time.monotonic() < deadline):
                    time.sleep(interval)
                    live.update(render(), refresh=True)
            return
        last = ""
        while True:
            text = render_text(render(), width=console.width)
            if text != last:
                if last:
                    stamp = datetime.now(UTC).strftime("%H:%M:%S")
                    sys.stdout.write(f"--- {stamp} " + "-" * max(0, console.width - 13) + "\n")
                sys.stdout.write(text)
                sys.stdout.flush()
                last = text
            if done() or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def cmd_get(cluster: Cluster, args: argparse.Namespace) -> int:
    ns = None if args.all_namespaces else (args.namespace or cluster.namespace)
    where = "any namespace" if ns is None else f"namespace {ns}"
    empty = f"No FreeThreadedRollouts found in {where}."

    def render() -> RenderableType:
        items = list_rollouts(cluster, ns)
        if not items:
            return Text(empty)
        return rollouts_table(items, datetime.now(UTC), ns is None)

    if args.output:
        # kubectl's shape, so `jq '.items[]'` works the same on both.
        items = list_rollouts(cluster, ns)
        print_object({"apiVersion": "v1", "kind": "List", "items": items}, args.output)
        return 0
    if args.watch:
        _watch(render, lambda: False, args.interval, args.timeout)
        return 0
    items = list_rollouts(cluster, ns)
    if not items:
        print(empty, file=sys.stderr)  # like kubectl: nothing on stdout, still a success
        return 0
    show(rollouts_table(items, datetime.now(UTC), ns is None))
    return 0


def _wait_for_end(
    cluster: Cluster, ns: str, name: str, interval: float, timeout: float | None, quiet: bool
) -> tuple[int, dict[str, Any]]:
    """Poll until Promoted, RolledBack or Failed (or the timeout); a line per change."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        obj = get_rollout(cluster, ns, name)
        line = progress_line(obj)
        if line != last:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            print(f"{stamp} {line}", file=sys.stderr if quiet else sys.stdout, flush=True)
            last = line
        code = wait_outcome(obj)
        if code is not None:
            return code, obj
        if deadline is not None and time.monotonic() >= deadline:
            return EXIT_TIMEOUT, obj
        time.sleep(interval)


def status_pods(
    cluster: Cluster, args: argparse.Namespace, ns: str, obj: Mapping[str, Any], now: datetime
) -> tuple[list[PodRow] | None, str]:
    """The Pods section: rows (None when pods may not be listed) and a note on the GIL column."""
    bodies, why = list_pods(cluster, ns)
    if bodies is None:
        return None, ""
    rows = pod_rows(obj, bodies, None, now)
    twin = [r.name for r in rows if r.track == TRACK_FREE_THREADED]
    if not twin:
        return rows, ""
    url = _prometheus_url(args, _spec(obj))
    if url is None:
        return rows, (
            "GIL per pod needs the probe's metrics: pass --prometheus-url or set "
            "$FTR_PROMETHEUS_URL (the totals above come from the operator)"
        )
    gil, why = pod_gil(url, ns, twin, lambda u, q: prom_query(u, q, timeout=3.0))
    return pod_rows(obj, bodies, gil, now), why


def cmd_status(cluster: Cluster, args: argparse.Namespace) -> int:
    ns = args.namespace or cluster.namespace
    state: dict[str, Any] = {}

    if args.wait and args.watch:
        raise PluginError("--watch is the live view, --wait is for pipelines: pick one", 2)
    if args.wait:
        # A pipeline reads the exit code; with -o the progress goes to stderr, the object to stdout.
        code, obj = _wait_for_end(
            cluster, ns, args.name, args.interval, args.timeout, quiet=bool(args.output)
        )
        if args.output:
            print_object(obj, args.output)
        message = outcome_message(obj, code)
        if code == EXIT_TIMEOUT:
            assert args.timeout is not None
            message = f"timed out after {args.timeout:g}s: {message}"
        if code != 0:
            raise PluginError(message, code)
        if not args.output:
            print(message)
        return 0

    if args.output:
        print_object(get_rollout(cluster, ns, args.name), args.output)
        return 0

    def render() -> RenderableType:
        obj = get_rollout(cluster, ns, args.name)
        state["done"] = wait_outcome(obj) is not None
        now = datetime.now(UTC)
        rows, note = status_pods(cluster, args, ns, obj, now)
        return status_view(obj, list_events(cluster, ns, args.name), now, rows, note)

    if args.watch:
        _watch(render, lambda: bool(state.get("done")), args.interval, args.timeout)
        return 0
    show(render())
    return 0


def _action_of(obj: Mapping[str, Any]) -> str | None:
    value = (_meta(obj).get("annotations") or {}).get(ANNOTATION_ACTION)
    return None if value is None else str(value)


OPERATOR_COMPONENT = "ftrollout"  # the operator's Events' source / reportingComponent
# After the annotation is gone without a record of ours: how long the operator may still be
# finishing a reconcile that read ours (its status write comes before the removal).
SETTLE_SECONDS = 10.0


def answers(ev: Mapping[str, Any], request: str, uid: str | None = None) -> bool:
    """Whether the operator recorded `ev` for this request (it annotates the Event with it).
    Any namespace user may create Events: one counts only from the operator's component and,
    with `uid`, about this very rollout; even so, Events are shown, never decided from."""
    if _action_of(ev) != request:
        return False
    component = ev.get("reportingComponent") or (ev.get("source") or {}).get("component")
    if component != OPERATOR_COMPONENT:
        return False
    return uid is None or (ev.get("involvedObject") or {}).get("uid") == uid


def _recorded(obj: Mapping[str, Any]) -> list[api.ActionOutcome]:
    return list(_status(obj).recent_actions)


@dataclass(frozen=True)
class ActionAnswer:
    outcome: api.ActionOutcome
    events: list[dict[str, Any]]  # the operator's Events for it, when they could be read


def await_action(
    cluster: Cluster,
    ns: str,
    name: str,
    request: str,
    before: Sequence[api.ActionOutcome],
    interval: float,
    timeout: float,
) -> ActionAnswer:
    """Wait until the operator has answered `request`; its answer (status.recentActions).

    The answer is read from status, which only the operator writes (the status subresource):
    applied (returned) or ignored (exit 6). "Not applied" (exit 7) only when it is certain the
    operator never read ours: a request seen over ours on the annotation was answered and ours
    was not (the operator reads one request per reconcile, and records each before reading the
    next). Otherwise, once ours is off the rollout without an answer, the outcome is unknown
    (exit 1); `before`: status.recentActions as read before ours was written."""
    verb = request.partition("@")[0]  # the request id is for the operator, not for people
    what = f"freethreadedrollout {ns}/{name}"
    deadline = time.monotonic() + timeout
    old = {(r.value, r.time) for r in before}
    seen_over_ours: set[str] = set()  # requests seen on the annotation instead of ours
    gone_at: float | None = None
    while True:
        obj = get_rollout(cluster, ns, name)
        recorded = _recorded(obj)
        ours = [r for r in recorded if r.value == request]
        if ours:
            return _answer(cluster, ns, name, obj, request, ours[-1], what, verb)
        current = _action_of(obj)
        new = [r for r in recorded if (r.value, r.time) not in old]
        if len(new) >= api.RECENT_ACTIONS:
            raise PluginError(
                f"{what}: {verb}: outcome unknown: {len(new)} requests were answered since "
                "ours was written, more than status.recentActions keeps: see `kubectl ftr "
                "status`"
            )
        replaced_by = sorted(seen_over_ours & {r.value for r in new})
        if replaced_by:
            raise PluginError(
                f"{what}: {verb} was not applied: another request replaced it "
                f"({replaced_by[0]!r}) before the operator read it",
                EXIT_ACTION_REPLACED,
            )
        if current is not None and current != request:
            seen_over_ours.add(current)
        now = time.monotonic()
        if current is None:
            gone_at = now if gone_at is None else gone_at
            if now - gone_at >= min(SETTLE_SECONDS, timeout):
                raise PluginError(
                    f"{what}: {verb} was taken off the rollout, but its outcome is unknown: the "
                    "operator has no record of it in status.recentActions (someone removed the "
                    "annotation, or the operator is older than this plugin): see `kubectl ftr "
                    "status`"
                )
        else:
            gone_at = None
        if now >= deadline:
            if current == request:
                raise PluginError(
                    f"{what}: the operator did not act on {verb!r} within {timeout:g}s (is it "
                    f"running? the annotation {ANNOTATION_ACTION} is still set)",
                    EXIT_TIMEOUT,
                )
            raise PluginError(
                f"{what}: {verb}: outcome unknown after {timeout:g}s: another request "
                f"({current!r}) replaced it, and the operator has answered neither yet"
            )
        time.sleep(interval)


def _answer(
    cluster: Cluster,
    ns: str,
    name: str,
    obj: Mapping[str, Any],
    request: str,
    outcome: api.ActionOutcome,
    what: str,
    verb: str,
) -> ActionAnswer:
    if outcome.outcome == "Ignored":
        raise PluginError(f"{what}: {verb} ignored: {outcome.message}", EXIT_ACTION_IGNORED)
    uid = _meta(obj).get("uid")
    events = [
        ev
        for ev in list_events(cluster, ns, name)  # only for the detail: status decided
        if answers(ev, request, None if uid is None else str(uid))
    ]
    return ActionAnswer(outcome, sorted(events, key=_event_time))


def cmd_action(cluster: Cluster, args: argparse.Namespace) -> int:
    ns = args.namespace or cluster.namespace
    action = args.command
    if action == "promote" and args.full:
        action = "promote-full"
    # `verb@<id>`: the id makes this one request, applied once even if the operator sees the
    # annotation again (its removal failed, the operator restarted), a second
    # `kubectl ftr promote` a new request even within the same second, and the operator's
    # Events for it tell --wait what became of it.
    request = f"{action}@{request_id()}"
    before = _recorded(set_action(cluster, ns, args.name, request))
    done = {
        "promote": "promotion to the next step requested",
        "promote-full": "full promotion requested, skipping the remaining steps and pauses",
        "pause": "pause requested",
        "resume": "resume requested",
        "rollback": "rollback requested",
        "retry": "retry requested",
    }[action]
    print(f"freethreadedrollout {ns}/{args.name}: {done} ({ANNOTATION_ACTION}={request})")
    if args.wait:
        sys.stdout.flush()
        timeout = 120.0 if args.timeout is None else args.timeout
        answer = await_action(cluster, ns, args.name, request, before, args.interval, timeout)
        for ev in answer.events:
            print(f"{ev.get('type', '')} {ev.get('reason', '')}: {ev.get('message', '')}")
        if not answer.events:  # Events are best effort: the operator's record says it all
            print(f"applied: {answer.outcome.message}")
    return 0


def request_id() -> str:
    """When, plus randomness: unique per request, and readable in `kubectl get -o yaml`."""
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


def _parse_queries(raw: Sequence[str]) -> dict[str, tuple[str, ...]]:
    queries = {**report.DEFAULT_QUERIES, "requests": (report.REQUESTS_QUERY,)}
    for item in raw:
        key, sep, promql = item.partition("=")
        if not sep or key not in queries or not promql.strip():
            raise PluginError(
                f"--query expects NAME=PROMQL with NAME one of {', '.join(queries)}: {item!r}"
            )
        queries[key] = (promql,)
    return queries


def cmd_report(cluster: Cluster, args: argparse.Namespace) -> int:
    ns = args.namespace or cluster.namespace
    queries = _parse_queries(args.query)
    (requests_query,) = queries.pop("requests")
    obj = get_rollout(cluster, ns, args.name)
    spec = _spec(obj)
    status = _status(obj)
    url = args.prometheus_url or os.environ.get("FTR_PROMETHEUS_URL")
    if not url and spec is not None and spec.analysis is not None:
        url = spec.analysis.prometheus.address
    values: dict[str, report.TrackValues] | None = None
    requests: report.RequestCounts | None = None
    requests_why = ""
    if not url:
        why = "no Prometheus: pass --prometheus-url or set spec.analysis.prometheus.address"
    else:
        target = str(((obj.get("spec") or {}).get("targetRef") or {}).get("name", ""))
        pods, why = pods_by_track(cluster, ns, target)
        requests_why = why
        if pods:
            values, why = prometheus_values(url, ns, args.name, pods, queries)
            if report.routing_on(spec, status):
                gil, _ = pod_gil(url, ns, pods.get(TRACK_FREE_THREADED, ()))
                requests, requests_why = request_counts(
                    url, ns, args.name, pods, requests_query, gil
                )
    kpis = report.compute(spec, status, values, why, requests, requests_why)
    if args.output == "json":
        print(json.dumps([k.as_dict() for k in kpis], indent=2))
    else:
        show(report_view(obj, kpis))
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from ftrollout import __version__

    print(f"plugin:   {__version__}")
    if args.client:
        return 0
    try:
        cluster = connect(args.kubeconfig, args.context)
    except PluginError as exc:
        print(f"operator: unknown ({exc})")
        return 0
    print(f"operator: {operator_version(cluster)}")
    return 0


def cmd_set_image(cluster: Cluster, args: argparse.Namespace) -> int:
    ns = args.namespace or cluster.namespace
    image = args.image.strip()
    if not image or any(c.isspace() for c in image):
        raise PluginError(f"not an image reference: {args.image!r}")
    old = set_image(cluster, ns, args.name, image)
    what = f"freethreadedrollout {ns}/{args.name}"
    if old is None:
        print(f"{what}: free-threaded image already {image} (unchanged)")
    else:
        print(f"{what}: free-threaded image {image} (was {old or '-'}); a new revision starts")
    return 0


@dataclass(frozen=True)
class Linted:
    """One rollout (or document) of a file: its problem, if any, and warnings about what is
    valid but likely not meant (a null that the API server drops)."""

    label: str
    problem: str | None
    warnings: tuple[str, ...] = ()


_STEP_FIELD = re.compile(r"^spec\.steps\[(\d+)\]\.(pause|pause\.duration)$")


def null_warning(path: str) -> str:
    """What a dropped null means, in the words of the field."""
    m = _STEP_FIELD.match(path)
    if m is not None:
        step = int(m.group(1)) + 1
        if m.group(2) == "pause":
            return (
                f"{path}: null is read as no pause field (the API server drops nulls): step "
                f"{step} does not hold; write `pause: {{}}` to wait for `kubectl ftr promote`"
            )
        return (
            f"{path}: null is read as no duration: step {step} waits for `kubectl ftr "
            "promote`, as `pause: {}` does; give a duration to hold for it"
        )
    return (
        f"{path}: null is read as the field left out (the API server drops nulls before validation)"
    )


def lint_warnings(spec: api.RolloutSpec) -> tuple[str, ...]:
    """What the operator accepts but cannot work as written (`field: why`)."""
    out: list[str] = []
    for i, m in enumerate(spec.analysis.metrics if spec.analysis is not None else ()):
        weak = None if m.compare is None else underpowered(m.compare)
        if weak is not None:
            out.append(f"spec.analysis.metrics[{i}].compare.minSamples: {weak}")
    return tuple(out)


def lint_documents(text: str) -> list[Linted]:
    """Each FreeThreadedRollout in a YAML stream, checked.

    The spec goes through the operator's own models (`api.parse_spec`), so a problem reads as
    the operator's `invalid spec: <field>: <message>` status would; a null reads as the field
    left out, as the API server reads it, with a warning naming it."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [Linted("", f"not YAML: {' '.join(str(exc).split())}")]
    return _lint_objects(docs, set())


def _lint_objects(docs: list[Any], within: set[int]) -> list[Linted]:
    """Lint parsed objects; `within`: the Lists being read (a YAML anchor can make a List
    contain itself)."""
    out: list[Linted] = []
    for n, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            out.append(Linted(f"document {n}", "not a Kubernetes object (a mapping)"))
            continue
        if doc.get("kind") == "List":
            items = doc.get("items") or []
            if id(doc) in within:
                out.append(Linted(f"document {n}", "a List that contains itself"))
            elif not isinstance(items, list):
                out.append(Linted(f"document {n}", "items: not a list"))
            else:
                out.extend(_lint_objects(items, within | {id(doc)}))
            continue
        if doc.get("kind") != api.KIND:
            continue
        meta = _meta(doc)
        label = str(meta.get("name") or f"document {n}")
        if meta.get("namespace"):
            label = f"{meta['namespace']}/{label}"
        expected = f"{api.GROUP}/{api.VERSION}"
        if doc.get("apiVersion") != expected:
            out.append(Linted(label, f"apiVersion: {doc.get('apiVersion')!r} is not {expected}"))
            continue
        if not meta.get("name") and not meta.get("generateName"):
            out.append(Linted(label, "metadata.name: required"))
            continue
        warnings: tuple[str, ...] = ()
        try:
            warnings = tuple(null_warning(p) for p in api.drop_nulls(doc.get("spec"))[1])
            spec = api.parse_spec(doc.get("spec"))
            out.append(Linted(label, None, warnings + lint_warnings(spec)))
        except api.SpecError as exc:
            out.append(Linted(label, f"invalid spec: {exc}", warnings))
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def cmd_lint(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.filename:
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except OSError as exc:
            raise PluginError(f"{path}: {exc.strerror or exc}") from None
        results = lint_documents(text)
        if not results:
            print(f"error: {path}: no {api.KIND} in it", file=sys.stderr)
            bad += 1
        for r in results:
            where = f"{path}: {r.label}" if r.label else path
            for w in r.warnings:
                print(f"warning: {where}: {w}", file=sys.stderr)
            if r.problem is not None:
                print(f"error: {where}: {r.problem}", file=sys.stderr)
                bad += 1
            elif r.warnings and args.strict:
                print(f"error: {where}: {_plural(len(r.warnings), 'warning')} (--strict)",
                      file=sys.stderr)  # fmt: skip
                bad += 1
            elif r.warnings:
                print(f"{where}: valid ({_plural(len(r.warnings), 'warning')})")
            else:
                print(f"{where}: valid")
    return EXIT_ERROR if bad else 0


def command_tree(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Every command path ("", "get", "set image" ...) with the words that may follow it."""
    tree: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        words: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    words.append(name)
                    walk(child, f"{path} {name}".strip())
            elif action.help != argparse.SUPPRESS:
                words.extend(action.option_strings)
                if action.choices and not action.option_strings:
                    words.extend(str(c) for c in action.choices)
        tree[path] = words

    walk(parser, "")
    return tree


def _value_options(parser: argparse.ArgumentParser) -> list[str]:
    """Options that take a value: the word after one is not a command."""
    out: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    walk(child)
            elif action.option_strings and action.nargs != 0:
                out.update(action.option_strings)

    walk(parser)
    return sorted(out)


def completion_script(shell: str, parser: argparse.ArgumentParser) -> str:
    """A static completion script for `kubectl-ftr` (bash; zsh through bashcompinit), or the
    `kubectl_complete-ftr` executable that makes `kubectl ftr <TAB>` complete."""
    tree = command_tree(parser)
    cases = "\n".join(
        f'        "{path}") words="{" ".join(words)}" ;;' for path, words in sorted(tree.items())
    )
    body = f"""# {shell} completion for kubectl-ftr, from `kubectl ftr completion {shell}`
_kubectl_ftr() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path="" words="" skip=0 i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        if ((skip)); then skip=0; continue; fi
        case " {" ".join(_value_options(parser))} " in *" $w "*) skip=1; continue ;; esac
        case "$w" in -*) continue ;; esac
        w="${{path:+$path }}$w"
        case " ${{_kubectl_ftr_paths}} " in *" $w|"*) path="$w" ;; esac
    done
    case "$path" in
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
_kubectl_ftr_paths="{" ".join(p + "|" for p in sorted(tree) if p)}"
complete -F _kubectl_ftr kubectl-ftr
"""
    if shell == "zsh":
        body = "autoload -U +X bashcompinit && bashcompinit\n" + body
    if shell == "kubectl":
        # kubectl (1.26+) completes `kubectl ftr ...` by running kubectl_complete-ftr with the
        # words typed so far; it reads one candidate a line, then cobra's ":4" (no file names).
        body = (
            "#!/usr/bin/env bash\n"
            + body.replace("complete -F _kubectl_ftr kubectl-ftr\n", "")
            + 'COMP_WORDS=(kubectl-ftr "$@"); COMP_CWORD=$#; _kubectl_ftr\n'
            + 'printf "%s\\n" "${COMPREPLY[@]}" ":4"\n'
        )
    return body


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.shell, build_parser()))
    return 0


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    # Connection flags are accepted before and after the subcommand (kubectl users type both);
    # SUPPRESS keeps a subcommand's absent flag from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    common.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: the context's)"
    )
    parser = argparse.ArgumentParser(
        prog="kubectl ftr",
        description="Inspect and steer FreeThreadedRollouts (ftrollout).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def output_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-o",
            "--output",
            choices=["json", "yaml"],
            default=None,
            help="the object(s) as JSON/YAML",
        )

    def watch_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("-w", "--watch", action="store_true", help="keep redrawing (Ctrl-C stops)")
        p.add_argument(
            "--timeout",
            type=_duration,
            default=None,
            help="stop watching/waiting after this (e.g. 5m)",
        )
        p.add_argument("--interval", type=_duration, default=2.0, help=argparse.SUPPRESS)

    p = sub.add_parser("get", parents=[common], help="list rollouts (table)")
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="rollouts of every namespace"
    )
    watch_flags(p)
    output_flag(p)
    p.set_defaults(func=cmd_get)

    p = sub.add_parser(
        "status", parents=[common], help="phase, steps, replicas, GIL, races, analysis, events"
    )
    p.add_argument("name")
    watch_flags(p)
    p.add_argument(
        "--wait",
        action="store_true",
        help="print a line per change until the rollout ends; exit 0 Promoted and Ready (all "
        f"free-threaded replicas Ready, the bake over), {EXIT_ROLLED_BACK} RolledBack, "
        f"{EXIT_FAILED} Failed, {EXIT_TIMEOUT} --timeout",
    )
    output_flag(p)
    p.add_argument(
        "--prometheus-url",
        default=None,
        help="Prometheus with the probe's metrics, for the GIL of each pod (default: "
        "$FTR_PROMETHEUS_URL, then spec.analysis.prometheus.address)",
    )
    p.set_defaults(func=cmd_status)

    helps = {
        "promote": "go to the next step now (--full: skip every remaining step and pause)",
        "pause": "hold at the current step",
        "resume": "continue a paused rollout",
        "rollback": "back to the standard track at once",
        "retry": "start again from step 1 after a rollback or failure",
    }
    for action in ACTIONS:
        p = sub.add_parser(action, parents=[common], help=helps[action])
        p.add_argument("name")
        if action == "promote":
            p.add_argument("--full", action="store_true", help="promote fully (promote-full)")
        p.add_argument(
            "--wait",
            action="store_true",
            help=f"wait until the operator answered (status.recentActions); exit "
            f"{EXIT_ACTION_IGNORED} if it ignored the action, {EXIT_ACTION_REPLACED} if another "
            f"request certainly replaced it unread, {EXIT_TIMEOUT} if it did not act within "
            f"--timeout, {EXIT_ERROR} if the outcome is unknown",
        )
        p.add_argument("--timeout", type=_duration, default=None, help="with --wait (default 2m)")
        p.add_argument("--interval", type=_duration, default=1.0, help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_action)

    p = sub.add_parser("report", parents=[common], help="adoption KPIs of a rollout")
    p.add_argument("name")
    p.add_argument(
        "--prometheus-url",
        default=None,
        help="Prometheus for the comparative KPIs (default: $FTR_PROMETHEUS_URL, then the "
        "rollout's spec.analysis.prometheus.address)",
    )
    p.add_argument(
        "--query",
        action="append",
        default=[],
        metavar="NAME=PROMQL",
        help="override a KPI query (throughput, p99, rss; requests: per pod, for the traffic "
        "share with routing); {{pods}} etc. as in analysis",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("set", help="change a rollout's spec")
    set_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = set_sub.add_parser(
        "image", parents=[common], help="set spec.freeThreaded.image (starts a new revision)"
    )
    p.add_argument("name")
    p.add_argument("image")
    p.set_defaults(func=cmd_set_image)

    p = sub.add_parser(
        "lint", help="validate rollouts in YAML files offline, with the operator's own rules"
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="a YAML file (several documents are fine; - for stdin); repeatable",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) on warnings too: a null field that reads as left out",
    )
    p.set_defaults(local=cmd_lint)

    p = sub.add_parser("version", parents=[common], help="plugin and operator versions")
    p.add_argument("--client", action="store_true", help="the plugin's only (no cluster)")
    p.set_defaults(local=cmd_version)

    p = sub.add_parser(
        "completion",
        help="shell completion script: source <(kubectl ftr completion bash)",
    )
    p.add_argument("shell", choices=["bash", "zsh", "kubectl"])
    p.set_defaults(local=cmd_completion)
    return parser


def run(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    args.kubeconfig = getattr(args, "kubeconfig", None)
    args.context = getattr(args, "context", None)
    args.namespace = getattr(args, "namespace", None)
    local: Callable[[argparse.Namespace], int] | None = getattr(args, "local", None)
    if local is not None:  # version, completion, lint: useful without a cluster
        return local(args)
    cluster = connect(args.kubeconfig, args.context)
    handler: Callable[[Cluster, argparse.Namespace], int] = args.func
    return handler(cluster, args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
