"""Open findings of the adversarial reviews of #17, #20 and #21, kept as failing tests.

Every test here is marked xfail(strict=True): it fails on today's code for the reason in the
finding, and CI turns red the day a fix makes it pass, so that fix must move the test next to
the code it covers and drop the mark. The helpers these reproductions use live beside other
suites; their folders go on sys.path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for _sub in ("unit", "unit/plan", "integration"):
    if str(_TESTS / _sub) not in sys.path:
        sys.path.insert(0, str(_TESTS / _sub))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.xfail(strict=True, reason="open review finding"))
