"""`make plugin` and `make chart` (dev/ftrollout_dev/release.py): artifacts that work outside
this repository: the single-file plugin runs with nothing but Python, the chart archive lints."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from ftrollout_dev import release
from ftrollout_dev.localcluster import Binaries

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return release.build_plugin(tmp_path_factory.mktemp("dist") / "kubectl-ftr")


def bare_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH, no virtualenv: only what the file carries (and a fresh unpack cache)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return env


def test_the_single_file_plugin_runs_on_its_own(plugin: Path, tmp_path: Path) -> None:
    assert os.access(plugin, os.X_OK)
    for _ in range(2):  # unpacks once, then runs from the cache
        out = subprocess.run(
            [str(plugin), "--help"], cwd=tmp_path, env=bare_env(tmp_path),
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert "usage: kubectl ftr" in out.stdout
    assert len(list((tmp_path / "cache" / "kubectl-ftr").iterdir())) == 1
    lint = subprocess.run(
        [str(plugin), "lint", "-f", str(ROOT / "manifests/examples/full.yaml")],
        cwd=tmp_path, env=bare_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stderr


def test_the_plugin_file_holds_no_operator_and_names_its_python(plugin: Path) -> None:
    names = zipfile.ZipFile(plugin).namelist()
    assert "__main__.py" in names
    assert "lib/ftrollout/cli/plugin.py" in names
    assert not [n for n in names if n.startswith(("lib/ftrollout/shell/", "lib/kopf/"))]
    assert any(n.startswith("lib/pydantic_core/") for n in names)
    shebang = plugin.read_bytes().split(b"\n", 1)[0].decode()
    assert shebang.startswith("#!/usr/bin/env python3.")


def test_krew_archive_and_manifest_match(plugin: Path) -> None:
    archive = release.krew_archive(plugin, "linux", "amd64")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["kubectl-ftr"]
    doc = yaml.safe_load(
        release.render_krew(archive, "https://dl.example/v0.1.0/", "linux", "amd64")
    )
    assert doc["kind"] == "Plugin"
    assert doc["metadata"]["name"] == "ftr"
    (p,) = doc["spec"]["platforms"]
    assert p["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert p["uri"] == f"https://dl.example/v0.1.0/{archive.name}"
    assert p["selector"]["matchLabels"] == {"os": "linux", "arch": "amd64"}
    assert p["bin"] == "kubectl-ftr"
    assert doc["spec"]["version"] == f"v{release.version()}"


def test_make_chart_packages_a_chart_that_lints(tmp_path: Path) -> None:
    try:
        helm = Binaries.locate().helm
    except Exception as exc:  # the local tooling is not built yet
        pytest.skip(f"helm not available: {exc}")
    tgz = release.package_chart(Path(str(helm)), tmp_path)
    assert tgz.name == f"ftrollout-{release.version()}.tgz"
    lint = subprocess.run(
        [str(helm), "lint", str(tgz)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    with tarfile.open(tgz) as tar:
        names = tar.getnames()
    assert "ftrollout/crds/freethreaded.dev_freethreadedrollouts.yaml" in names
    assert "ftrollout/values.schema.json" in names


DOCS = ["README.md", "docs/operations.md", "docs/kubectl-ftr.md", "charts/ftrollout/README.md",
        "charts/ftrollout/templates/NOTES.txt", "Dockerfile"]  # fmt: skip


@pytest.mark.parametrize("name", DOCS)
def test_docs_name_no_artifact_that_is_not_published(name: str) -> None:
    """Nothing is published: no command may pull a package, chart repo or image from a public
    place (a user's own registry is written registry.example...)."""
    text = (ROOT / name).read_text()
    commands = [line for line in text.splitlines() if "ghcr.io" in line or "helm repo add" in line]
    commands += [
        line
        for line in text.splitlines()
        if "pip install" in line and "ftrollout[" in line and "'.[" not in line
    ]
    allowed = [c for c in commands if "placeholder" in c]
    assert commands == allowed, commands
