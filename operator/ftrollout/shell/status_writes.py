"""When a new status is worth an API write now, and when it can wait.

Every analysis round brings fresh numbers (values, round times) even when nothing a user or the
planner acts on has changed. Writing them each round is one status PATCH per rollout per
interval, plus its watch echo: at a thousand rollouts that was half of the operator's CPU. A
status whose only news are such numbers is kept in memory (the planner reads it from there) and
written at most once per refresh period; any other change (a result's phase, a counter, a step,
the phase, a condition, the message) is written at once, together with the latest numbers.
"""

from __future__ import annotations

from typing import Any

DEFAULT_REFRESH_SECONDS = 300.0


def _material(status: dict[str, Any]) -> dict[str, Any]:
    """The status without the per-round numbers of analysis."""
    analysis = status.get("analysis")
    if not isinstance(analysis, dict):
        return status
    slim = {k: v for k, v in analysis.items() if k != "lastRound"}
    metrics = analysis.get("metrics")
    if isinstance(metrics, list):
        slim["metrics"] = [
            (m.get("name"), m.get("phase")) if isinstance(m, dict) else m for m in metrics
        ]
    kept = analysis.get("lastStandard")
    if isinstance(kept, list):
        # Which metrics have a value is news (a restart at 100 % needs one); the value is a number.
        slim["lastStandard"] = [v.get("name") if isinstance(v, dict) else v for v in kept]
    return {**status, "analysis": slim}


def only_new_numbers(written: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when `new` differs from the `written` status only in analysis values and times."""
    return written != new and _material(written) == _material(new)


def can_wait(
    written: dict[str, Any], new: dict[str, Any], since_write: float, refresh: float
) -> bool:
    """Whether writing `new` may be put off: only numbers changed and the status in the API is
    younger than the refresh period (`refresh` 0 writes every round)."""
    return refresh > 0 and since_write < refresh and only_new_numbers(written, new)
