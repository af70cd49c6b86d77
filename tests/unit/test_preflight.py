"""The dependency-gate preflight script, run for real in subprocesses."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftrollout.probe import PREFLIGHT_KEY, PROBE_FILES, preflight

FIXTURES = Path(__file__).parent / "probe_fixtures"
PYTHON = sys.executable

pytestmark = pytest.mark.timeout(120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FTR_", "PYTHON"))}
    env["PYTHONPATH"] = str(FIXTURES)
    env.update(extra)
    return env


def run(
    tmp_path: Path, *modules: str, python: str = PYTHON, script: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    log = tmp_path / "termination-log"
    command = [python, str(script)] if script else [python, "-m", "ftrollout.probe.preflight"]
    result = subprocess.run(
        [*command, *modules],
        env=clean_env(FTR_TERMINATION_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    written = log.read_text()
    return result, json.loads(written), written


def entry(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [module for module in report["modules"] if module["name"] == name]
    return found


def test_stdlib_module_passes_and_identity_matches_python_vv(tmp_path: Path) -> None:
    result, report, written = run(tmp_path, "json")
    # the same document on stdout (its only line) and in the termination log
    assert result.stdout.splitlines() == [written]
    assert len(written.encode()) <= 4096
    assert report["schema"] == 1
    assert report["tool"] == "ftrollout-preflight"
    assert report["truncated"] is False
    assert report["omittedModules"] == 0
    vv = subprocess.run([PYTHON, "-VV"], capture_output=True, text=True, check=True).stdout
    python = report["python"]
    assert python["vv"] == vv.rstrip("\n")
    assert python["version"] == ".".join(map(str, sys.version_info[:3]))
    assert python["implementation"] == "cpython"
    assert python["freeThreadingBuild"] is False
    assert python["versionSaysFreeThreading"] is False
    assert python["gilEnabledAtStart"] is True
    assert python["gilEnabledAtEnd"] is True
    assert python["gilOverride"] is None
    module = entry(report, "json")
    assert module == {
        "name": "json",
        "imported": True,
        "error": None,
        "version": python["version"],
        "distribution": None,
        "versionSource": "stdlib",
        "gilEnabled": True,
        "gilReenabled": False,
        "gilWarning": False,
        "gilWarningModules": [],
        "seconds": module["seconds"],
    }


def test_missing_module_is_an_import_error_not_a_failure(tmp_path: Path) -> None:
    _, report, _ = run(tmp_path, "json", "no_such_module_ftr", "json")
    assert [m["name"] for m in report["modules"]] == ["json", "no_such_module_ftr"]
    missing = entry(report, "no_such_module_ftr")
    assert missing["imported"] is False
    assert missing["error"]["type"] == "ModuleNotFoundError"
    assert "no_such_module_ftr" in missing["error"]["message"]
    assert missing["version"] is None


def test_gil_warning_module_is_detected(tmp_path: Path) -> None:
    _, report, _ = run(tmp_path, "gilwarn_mod,json")
    module = entry(report, "gilwarn_mod")
    assert module["imported"] is True
    assert module["gilWarning"] is True
    assert module["gilWarningModules"] == ["gilwarn_mod"]
    assert module["gilReenabled"] is False  # a standard build has the GIL on from the start
    assert entry(report, "json")["gilWarning"] is False


def test_distribution_version_comes_from_metadata(tmp_path: Path) -> None:
    _, report, _ = run(tmp_path, "yaml", "hypothesis.strategies")
    yaml_entry = entry(report, "yaml")
    assert yaml_entry["distribution"] == "PyYAML"
    assert yaml_entry["version"] == importlib.metadata.version("PyYAML")
    assert yaml_entry["versionSource"] == "metadata"
    sub = entry(report, "hypothesis.strategies")
    assert sub["version"] == importlib.metadata.version("hypothesis")


def test_module_output_cannot_corrupt_stdout(tmp_path: Path) -> None:
    result, report, written = run(tmp_path, "noisy_mod")
    assert result.stdout.splitlines() == [written]
    assert "noise from noisy_mod" in result.stderr
    assert "fd-level noise from noisy_mod" in result.stderr
    assert entry(report, "noisy_mod")["imported"] is True


def test_sys_exit_and_failing_imports_are_reported(tmp_path: Path) -> None:
    _, report, written = run(tmp_path, "exit_mod", "broken_mod", "json")
    assert entry(report, "exit_mod")["error"] == {"type": "SystemExit", "message": "3"}
    broken = entry(report, "broken_mod")
    assert broken["error"]["type"] == "ValueError"
    assert broken["error"]["message"].startswith("broken at import: xxx")
    assert broken["error"]["message"].endswith("...")
    assert report["truncated"] is True
    assert entry(report, "json")["imported"] is True
    assert len(written.encode()) <= 4096


def test_many_modules_stay_under_the_termination_message_limit(tmp_path: Path) -> None:
    names = [f"missing_module_with_a_rather_long_name_{index:03d}" for index in range(150)]
    _, report, written = run(tmp_path, *names)
    assert len(written.encode()) <= 4096
    assert report["truncated"] is True
    assert report["omittedModules"] > 0
    assert len(report["modules"]) + report["omittedModules"] == 150
    assert [m["name"] for m in report["modules"]] == names[: len(report["modules"])]


def test_truncation_drops_clean_entries_before_findings(tmp_path: Path) -> None:
    stdlib = [
        "json",
        "os",
        "re",
        "abc",
        "ast",
        "csv",
        "io",
        "sys",
        "time",
        "glob",
        "math",
        "cmath",
        "enum",
        "heapq",
        "bisect",
        "copy",
    ]
    stdlib += [
        "array",
        "base64",
        "binascii",
        "calendar",
        "codecs",
        "dataclasses",
        "decimal",
        "difflib",
        "fnmatch",
    ]
    requested = ["no_such_module_ftr", *stdlib, "gilwarn_mod"]
    _, report, written = run(tmp_path, *requested)
    assert len(written.encode()) <= 4096
    assert report["truncated"] is True
    kept = [m["name"] for m in report["modules"]]
    assert kept == [name for name in requested if name in kept]  # order kept
    assert kept[0] == "no_such_module_ftr"
    assert kept[-1] == "gilwarn_mod"  # findings survive, clean entries went first
    assert kept[1:-1] == stdlib[: len(kept) - 2]
    assert len(kept) + report["omittedModules"] == len(requested)


def test_flat_script_by_path_does_not_load_the_probe(tmp_path: Path) -> None:
    """The gate Job runs the ConfigMap file by path; sitecustomize beside it must stay inert."""
    flat = tmp_path / "configmap"
    flat.mkdir()
    for key, path in PROBE_FILES.items():
        (flat / key).write_text(path.read_text())
    probe_module_seen = flat / "seen"
    (flat / "sitecustomize.py").write_text(f"open({str(probe_module_seen)!r}, 'w').close()\n")
    _, report, _ = run(tmp_path, "json", script=flat / PREFLIGHT_KEY)
    assert entry(report, "json")["imported"] is True
    assert not probe_module_seen.exists()


def test_unwritable_termination_log_falls_back_to_stdout(tmp_path: Path) -> None:
    env = clean_env(FTR_TERMINATION_LOG=str(tmp_path / "missing-dir" / "log"))
    result = subprocess.run(
        [PYTHON, "-m", "ftrollout.probe.preflight", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["modules"][0]["name"] == "json"
    assert "cannot write" in result.stderr


def test_default_termination_log_is_only_used_when_it_exists(tmp_path: Path) -> None:
    if os.path.exists(preflight.DEFAULT_TERMINATION_LOG):
        pytest.skip("running inside a container that has a termination log")
    result = subprocess.run(
        [PYTHON, "-m", "ftrollout.probe.preflight", "json"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["schema"] == 1
    assert not os.path.exists(preflight.DEFAULT_TERMINATION_LOG)


def test_usage_errors() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "ftrollout.probe.preflight", "--bogus"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == preflight.EXIT_USAGE
    assert result.stdout == ""


def test_no_modules_still_reports_the_runtime(tmp_path: Path) -> None:
    _, report, _ = run(tmp_path)
    assert report["modules"] == []
    assert report["python"]["freeThreadingBuild"] is False


def test_parse_modules_splits_and_dedupes() -> None:
    assert preflight.parse_modules(["numpy, orjson", "numpy", " yaml  json"]) == [
        "numpy",
        "orjson",
        "yaml",
        "json",
    ]


error_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000)


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(error_text, max_size=60),
    name_size=st.integers(min_value=1, max_value=300),
)
def test_fit_always_yields_valid_json_within_the_limit(messages: list[str], name_size: int) -> None:
    modules = [
        {
            "name": f"m{index}".ljust(name_size, "x"),
            "imported": False,
            "error": {"type": "ImportError", "message": message},
            "version": None,
            "distribution": None,
            "versionSource": None,
            "gilEnabled": True,
            "gilReenabled": False,
            "gilWarning": True,
            "gilWarningModules": ["a" * 500, "b", "c"],
            "seconds": 0.123,
        }
        for index, message in enumerate(messages)
    ]
    report = {
        "schema": 1,
        "tool": "ftrollout-preflight",
        "python": preflight.python_report(True),
        "modules": modules,
        "truncated": False,
        "omittedModules": 0,
    }
    text = preflight.fit(report)
    assert len(text.encode()) <= preflight.MAX_BYTES
    doc = json.loads(text)
    assert len(doc["modules"]) + doc["omittedModules"] == len(modules)
    if doc["truncated"] is False:
        assert doc == report


OTHER_PYTHONS = [
    str(p)
    for p in sorted(
        Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob("versions/3.*/bin/python3")
    )
    if p.parent.parent.name.split(".")[1].isdigit() and int(p.parent.parent.name.split(".")[1]) >= 9
]


@pytest.mark.parametrize("python", OTHER_PYTHONS or ["none"])
def test_flat_script_on_other_interpreters(python: str, tmp_path: Path) -> None:
    if python == "none":
        pytest.skip("no other CPython on this machine")
    script = tmp_path / PREFLIGHT_KEY
    script.write_text(PROBE_FILES[PREFLIGHT_KEY].read_text())
    _, report, _ = run(tmp_path, "json", "gilwarn_mod", "no_such_mod", python=python, script=script)
    vv = subprocess.run([python, "-VV"], capture_output=True, text=True, check=True).stdout
    assert report["python"]["vv"] == vv.rstrip("\n")
    assert entry(report, "json")["versionSource"] == "stdlib"
    assert entry(report, "gilwarn_mod")["gilWarningModules"] == ["gilwarn_mod"]
    assert entry(report, "no_such_mod")["error"]["type"] == "ModuleNotFoundError"
