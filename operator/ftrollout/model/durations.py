"""Go-style duration strings ("500ms", "30s", "5m", "1h30m"), as Kubernetes users write them."""

from __future__ import annotations

import functools
import re

# One or more <number><unit> groups, like Go's time.ParseDuration (without µs/ns: nobody
# configures a rollout pause in microseconds, and the CRD pattern must stay readable).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_GROUP = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_FULL = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=1024)  # a few distinct texts, parsed several times per reconcile
def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration; ValueError with the offending text otherwise."""
    if not isinstance(text, str) or not _FULL.match(text):
        raise ValueError(
            f"invalid duration {text!r}: "
            "use a number with a unit ms, s, m or h, like 30s, 5m, 1h30m"
        )
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _GROUP.findall(text))


def format_duration(seconds: float) -> str:
    """Shortest Go-style rendering of a whole number of seconds (used in messages)."""
    total = round(seconds)
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out
