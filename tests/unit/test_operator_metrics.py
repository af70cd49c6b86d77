"""The operator's own metrics: names, types and labels as dashboards and the chart's alerts use
them, per-rollout series that go with the rollout, and no label a ServiceMonitor would rename."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from ftrollout import __version__
from ftrollout.model import api
from ftrollout.plan import Result
from ftrollout.plan.types import Event
from ftrollout.shell import handlers, metrics

KEY = ("shop", "web")
# Labels a ServiceMonitor without honorLabels sets from the target (a clash becomes exported_*).
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def result(phase: api.Phase, step: int | None, weight: int, *events: Event, **kw: Any) -> Result:
    status = api.RolloutStatus(phase=phase, step_index=step, weight=weight, **kw)
    return Result(status=status, target_replicas=None, twin_replicas=None, events=events)


@pytest.fixture(autouse=True)
def clean() -> Any:
    metrics.forget(KEY)
    yield
    metrics.forget(KEY)


def test_per_rollout_series_follow_the_rollout_and_go_with_it() -> None:
    ids = {"rollout_namespace": "shop", "rollout": "web"}
    metrics.observe_result(KEY, result(api.Phase.PROGRESSING, 1, 50), 0.01)
    assert sample("ftrollout_rollout_info", **ids, phase="Progressing") == 1
    assert sample("ftrollout_rollout_weight", **ids) == 50
    assert sample("ftrollout_rollout_step", **ids) == 2  # counted from 1, as messages do
    rolled = result(
        api.Phase.ROLLED_BACK,
        1,
        0,
        Event("Warning", "RolledBack", "RaceBudget: 4 > 3"),
        rollback=api.RollbackStatus(
            reason=api.RollbackReason.RACE_BUDGET, message="4 > 3", time="2025-06-01T12:00:00Z"
        ),
    )
    metrics.observe_result(KEY, rolled, 0.01)
    assert sample("ftrollout_rollout_info", **ids, phase="Progressing") is None
    assert sample("ftrollout_rollout_info", **ids, phase="RolledBack") == 1
    assert sample("ftrollout_rollout_weight", **ids) == 0
    assert sample("ftrollout_rollbacks_total", **ids, reason="RaceBudget") == 1
    metrics.forget(KEY)
    for name in ("ftrollout_rollout_info", "ftrollout_rollout_weight", "ftrollout_rollout_step"):
        assert not [
            s
            for s in REGISTRY.collect()
            for s in s.samples
            if s.name == name and s.labels.get("rollout") == "web"
        ]
    assert sample("ftrollout_rollbacks_total", **ids, reason="RaceBudget") is None


def test_a_deleted_rollout_is_forgotten_by_the_watch_handler() -> None:
    metrics.observe_result(KEY, result(api.Phase.PAUSED, 0, 10), 0.01)
    before = sample("ftrollout_rollouts", phase="Paused")
    handler: Any = handlers.rollout_event
    asyncio.run(handler(event={"type": "DELETED"}, name="web", namespace="shop", spec={}))
    labels = {"rollout_namespace": "shop", "rollout": "web"}
    assert sample("ftrollout_rollout_info", **labels, phase="Paused") is None
    assert sample("ftrollout_rollouts", phase="Paused") == (before or 0) - 1


def test_api_writes_is_a_counter_read_from_the_client() -> None:
    registry = CollectorRegistry()
    state: Any = SimpleNamespace(kube=SimpleNamespace(writes=3), scheduler=None, on_result=[])
    metrics.register(state, registry)
    text = generate_latest(registry).decode()
    assert "# TYPE ftrollout_api_writes_total counter" in text
    assert "ftrollout_api_writes_total 3.0" in text
    state.kube.writes = 5
    assert registry.get_sample_value("ftrollout_api_writes_total") == 5


def test_build_info() -> None:
    assert sample("ftrollout_build_info", version=__version__) == 1


def test_no_operator_metric_has_a_label_a_service_monitor_renames() -> None:
    ours = [
        m
        for c in vars(metrics).values()
        if hasattr(c, "describe") and hasattr(c, "_labelnames")
        for m in c.describe()
    ]
    assert len(ours) >= 10
    for collector in vars(metrics).values():
        labelnames = set(getattr(collector, "_labelnames", ()))
        assert not labelnames & TARGET_LABELS, collector


def test_gil_enabled_pods_per_rollout_follows_status_and_goes_with_the_rollout() -> None:
    ids = {"rollout_namespace": "shop", "rollout": "web"}
    gil = api.GilStatus(pods=10, disabled=8, enabled=2)
    metrics.observe_result(KEY, result(api.Phase.PROMOTED, 1, 100, gil=gil), 0.01)
    assert sample("ftrollout_rollout_gil_enabled_pods", **ids) == 2
    metrics.observe_result(KEY, result(api.Phase.PROMOTED, 1, 100), 0.01)
    assert sample("ftrollout_rollout_gil_enabled_pods", **ids) == 0
    metrics.forget(KEY)
    assert sample("ftrollout_rollout_gil_enabled_pods", **ids) is None
