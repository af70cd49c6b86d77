"""The runtime probe, injected only through PYTHONPATH, scraped by a real Prometheus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ftrollout.probe import probe_configmap_data
from ftrollout_dev.localcluster import free_port

pytestmark = pytest.mark.e2e
FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "probe_fixtures"


def test_prometheus_scrapes_the_probe_and_names_the_fallback_module(
    tmp_path: Path, prometheus_factory: Any
) -> None:
    flat = tmp_path / "configmap"  # the ConfigMap as the operator mounts it
    flat.mkdir()
    for key, text in probe_configmap_data().items():
        (flat / key).write_text(text)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTR_", "PYTHON"))}
    env.update(
        PYTHONPATH=f"{flat}{os.pathsep}{FIXTURES}",
        FTR_PROBE_PORT=str(port),
        FTR_PROBE_ADDR="127.0.0.1",
        FTR_PROBE_DIR=str(tmp_path / "probe"),
    )
    app = subprocess.Popen(
        [sys.executable, str(FIXTURES / "probe_app.py"), "serve"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().startswith("READY")
        prom = prometheus_factory([f"127.0.0.1:{port}"])
        fallback = prom.wait_for('python_gil_fallback_total{module="gilwarn_mod"}', timeout=30)
        assert float(fallback[0]["value"][1]) == 1
        gil = prom.wait_for("python_gil_enabled", timeout=30)
        assert float(gil[0]["value"][1]) == 1  # a standard build: the GIL is on
        build = prom.wait_for("python_freethreading_build", timeout=30)
        assert float(build[0]["value"][1]) == 0
        info = prom.wait_for("python_freethreading_runtime_info", timeout=30)
        assert info[0]["metric"]["implementation"] == "cpython"
    finally:
        app.communicate(input="", timeout=30)
