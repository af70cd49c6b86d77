"""The watch echo of the operator's own status write wakes nobody; real changes do."""

from __future__ import annotations

from typing import Any

from ftrollout.shell.handlers import _needs_look, _own_status_echo
from ftrollout.shell.state import State

KEY = ("ns", "web")
STATUS = {"phase": "Progressing", "stepIndex": 0}


def body(generation: int = 1, action: str | None = None, status: Any = None) -> dict[str, Any]:
    annotations = {"freethreaded.dev/action": action} if action else {}
    return {
        "metadata": {"generation": generation, "annotations": annotations},
        "status": STATUS if status is None else status,
    }


def primed() -> State:
    state = State()
    state.pending_status[KEY] = STATUS
    assert not _own_status_echo(state, KEY, body(status={}))  # first sight: always reconcile
    return state


def test_the_echo_of_our_status_write_is_skipped() -> None:
    assert _own_status_echo(primed(), KEY, body())


def test_a_spec_change_or_an_action_is_not_an_echo() -> None:
    assert not _own_status_echo(primed(), KEY, body(generation=2))
    assert not _own_status_echo(primed(), KEY, body(action="promote"))


def test_a_status_we_did_not_write_is_not_an_echo() -> None:
    assert not _own_status_echo(primed(), KEY, body(status={"phase": "Paused"}))


def test_the_echo_wakes_only_a_rollout_that_is_not_analysed() -> None:
    """An analysed rollout's next round reconciles it anyway; any other is looked at once more,
    so that its unchanged world is remembered before its hourly look (shell.memo)."""
    from ftrollout.model import api
    from ftrollout.shell.scheduler import AnalysisTarget, Prometheus, Scheduler

    state = primed()
    state.scheduler = Scheduler(state, prom=Prometheus(workers=1))
    assert _needs_look(state, KEY, body())
    analysis = api.Analysis.model_validate(
        {"metrics": [{"name": "e", "query": "e", "threshold": {"max": 1}}]}
    )
    state = primed()
    state.scheduler = Scheduler(state, prom=Prometheus(workers=1))
    state.scheduler.register(AnalysisTarget(*KEY, "web", "web-ft", analysis, "http://p"))
    assert not _needs_look(state, KEY, body())
    assert _needs_look(state, KEY, body(generation=2))
