"""`make demo` end to end: its own cluster, Prometheus, operator and the three scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_all_scenarios_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ftrollout_dev.main", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "1 promoted, 2 rolled back by guardrails" in out
    assert "RolledBack (GILFallback)" in out
    assert "legacy_ext" in out
    assert "RolledBack (RaceBudget)" in out
    assert "Promoted" in out
    # the final views were shown
    assert "kubectl get ftr -A" in out
    assert "kubectl ftr report" in out
    # Gateway API routing (the CRDs are cached with the cluster's binaries): only GET /catalog
    # goes free-threaded, 5 % of it first (below 1/N), the route restored on deletion, and the
    # report's traffic share from request counts, not replicas.
    text = " ".join(out.split())  # lines wrap at the console's width
    assert "1 promoted with Gateway API routing" in text
    assert "GET /catalog → checkout 95 · checkout-ft 5" in text
    assert "back exactly as the user wrote it" in text
    assert "req/s on free-threaded pods with the GIL off" in text
    # everything it started is gone
    state = tmp_path / "cluster" / "state.json"
    assert not state.exists()
    assert "stopping kube-apiserver" in out
