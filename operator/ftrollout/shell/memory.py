"""Memory the operator freed after a burst goes back to the system.

Taking over 1000 rollouts at once (a start, a relist, a fleet-wide change) allocates far more
for a few minutes than the steady state holds: event bodies, models, pending requests. CPython
frees them, but glibc's allocator keeps the freed pages, so RSS stayed at the burst's high
water (issue 22: 314-364 MiB at 1000 paused rollouts for ~50 MiB of live objects).
`malloc_trim(0)` returns free pages to the system, including those in the middle of the heap;
it takes a few milliseconds, so it runs every few minutes. Not glibc (musl, macOS): no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger("ftrollout.shell.memory")

TRIM_SECONDS = 300.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # The symbols the process already has (no ldconfig lookup): glibc's, where it runs.
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def trim(fn: Callable[[int], int] | None = None) -> int | None:
    """Return free heap memory to the system; KiB of RSS given back, None where it cannot."""
    fn = fn or _malloc_trim()
    if fn is None:
        return None
    before = rss_kib()
    fn(0)
    after = rss_kib()
    return None if before is None or after is None else max(0, before - after)


async def trim_forever(seconds: float = TRIM_SECONDS) -> None:
    fn = _malloc_trim()
    if fn is None:
        log.info("malloc_trim not available: freed memory stays with the allocator")
        return
    while True:
        await asyncio.sleep(seconds)
        freed = trim(fn)
        if freed:
            log.debug("returned %d KiB of freed memory to the system", freed)
