"""Which status changes are written at once and which can wait for the refresh period."""

from __future__ import annotations

from typing import Any

from ftrollout.shell.status_writes import can_wait, only_new_numbers


def status(value: float = 0.001, phase: str = "Successful", **top: Any) -> dict[str, Any]:
    metric = {"name": "p99", "phase": phase, "freeThreaded": value, "standard": 0.2,
              "message": f"{value} <= 0.3", "time": f"t{value}"}  # fmt: skip
    return {
        "phase": "Progressing",
        "stepIndex": 1,
        "analysis": {
            "failedRounds": 0,
            "inconclusiveRounds": 0,
            "lastRound": f"t{value}",
            "metrics": [metric],
        },
        **top,
    }


def test_new_values_and_times_only_are_numbers() -> None:
    assert only_new_numbers(status(0.001), status(0.002))


def test_nothing_new_is_not_news_to_write_later() -> None:
    assert not only_new_numbers(status(), status())


def test_a_result_phase_step_phase_or_counter_is_material() -> None:
    assert not only_new_numbers(status(), status(phase="Failed"))
    assert not only_new_numbers(status(), status(stepIndex=2))
    assert not only_new_numbers(status(), status(phase_="x") | {"phase": "Paused"})
    counted = status(0.002)
    counted["analysis"]["failedRounds"] = 1
    assert not only_new_numbers(status(), counted)
    more = status(0.002)
    more["analysis"]["metrics"].append({"name": "errors", "phase": "Successful"})
    assert not only_new_numbers(status(), more)


def test_first_results_are_material() -> None:
    assert not only_new_numbers({"phase": "Progressing"}, status())


def test_can_wait_only_inside_the_refresh_period_and_never_with_refresh_0() -> None:
    assert can_wait(status(0.001), status(0.002), since_write=10, refresh=300)
    assert not can_wait(status(0.001), status(0.002), since_write=301, refresh=300)
    assert not can_wait(status(0.001), status(0.002), since_write=0, refresh=0)
    assert not can_wait(status(), status(phase="Failed"), since_write=0, refresh=300)


def test_a_new_last_standard_value_can_wait_but_a_first_one_cannot() -> None:
    def status(*kept: tuple[str, float]) -> dict[str, Any]:
        return {
            "phase": "Progressing",
            "analysis": {"lastStandard": [{"name": n, "value": v} for n, v in kept]},
        }

    assert only_new_numbers(status(("lat", 1.0)), status(("lat", 1.2)))
    assert not only_new_numbers(status(), status(("lat", 1.0)))
