"""The watch echo of the operator's own status write wakes nobody; real changes do."""

from __future__ import annotations

from typing import Any

from ftrollout.shell.handlers import _own_status_echo
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
