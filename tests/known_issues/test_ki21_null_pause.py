"""`kubectl ftr lint -f` must answer with a line and an exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftrollout.cli import plugin


def test_lint_flags_a_null_pause_that_silently_means_no_hold(tmp_path: Path, capsys: Any) -> None:
    """`pause:` (YAML null) is read as 'no pause field' (no hold at all), while
    `pause: {duration: }` (null duration) is read as 'wait for promote'. A user who wrote
    `pause:` expecting a manual gate gets steps that advance without a promote, and lint
    calls the file valid."""
    f = tmp_path / "r.yaml"
    f.write_text(
        "apiVersion: freethreaded.dev/v1alpha1\nkind: FreeThreadedRollout\nmetadata: {name: x}\n"
        "spec:\n  targetRef: {name: w}\n  freeThreaded: {image: x}\n  steps:\n"
        "  - weight: 50\n    pause:\n  - weight: 100\n"
    )
    code = plugin.main(["lint", "-f", str(f)])
    out = capsys.readouterr()
    assert code != 0 or "warning" in out.err.lower(), out
