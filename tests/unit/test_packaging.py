"""Each face installs only what it needs: the wheel, the plugin extra, the dev distribution.

Builds the real wheel and installs `ftrollout[cli]` into a fresh venv from the package index, as
a user installing the kubectl plugin would (the operator image's `[operator]` install is replayed
by test_dockerfile.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV", "PYTHONHOME")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        env=_env(),
        timeout=300,
    )
    (whl,) = out.glob("ftrollout-*.whl")
    return whl


def test_the_wheel_holds_the_operator_packages_and_no_dev_tooling(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("ftrollout-")}
    assert top == {"ftrollout"}
    for layer in ("model", "plan", "shell", "cli", "probe"):
        assert f"ftrollout/{layer}/__init__.py" in names
    assert not [n for n in names if "localcluster" in n or "simulator" in n or "demo" in n]
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    # kopf only ever comes with the operator extra.
    kopf = [line for line in requires if line.startswith("Requires-Dist: kopf")]
    assert kopf
    assert all("extra == 'operator'" in line for line in kopf)


def test_the_plugin_extra_installs_without_kopf_or_the_operator_deps(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}[cli]"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    frozen = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    installed = {line.split("==")[0].lower() for line in frozen.splitlines()}
    assert {"kubernetes", "rich", "pydantic"} <= installed
    assert not {"kopf", "prometheus-api-client", "prometheus-client"} & installed
    help_ = subprocess.run(
        [str(venv / "bin" / "kubectl-ftr"), "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert help_.returncode == 0, help_.stderr
    assert "status" in help_.stdout
    dev = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ftrollout_dev"],
        capture_output=True,
        env=_env(),
        check=False,
    )
    assert dev.returncode != 0
