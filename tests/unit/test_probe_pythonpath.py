"""The app's own PYTHONPATH survives the probe's injection: twin manifest -> env as the kubelet
builds it -> a real Python process that imports the app's module and runs the real probe."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ftrollout.model import api
from ftrollout.plan.twin import PROBE_MOUNT, twin_manifest
from ftrollout.probe import probe_configmap_data

pytestmark = pytest.mark.timeout(120)

CHECK = """
import json, sys
try:
    import appmod
    app = appmod.VALUE
except ImportError:
    app = None
import ftrollout_probe
probe = ftrollout_probe.current()
print(json.dumps({
    "app": app,
    "probe": probe is not None and probe.role in ("server", "reporter"),
    "literal": [p for p in sys.path if "$(" in p],
}))
"""

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def kubelet_expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes dependent env expansion: $(VAR) if VAR is defined earlier, else kept; $$ -> $."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined.get(name, match.group(0))

    return _REF.sub(one, value)


def container_env(
    container: dict[str, Any], image_env: dict[str, str], config: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The process environment of a container, the way kubelet and the runtime build it: the
    image's ENV, overridden by envFrom, overridden by env in order (values expanded)."""
    defined: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        defined.update(config[source["configMapRef"]["name"]])
    for entry in container.get("env") or []:
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["configMapKeyRef"]
            data = config.get(ref["name"], {})
            if ref["key"] not in data:
                assert ref.get("optional"), "kubelet refuses to start the container"
                continue
            defined[entry["name"]] = data[ref["key"]]
        else:
            defined[entry["name"]] = kubelet_expand(entry.get("value", ""), defined)
    return {**image_env, **defined}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def twin_container(container: dict[str, Any]) -> dict[str, Any]:
    target = {
        "metadata": {"name": "svc", "namespace": "ns"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "svc"}},
            "template": {
                "metadata": {"labels": {"app": "svc"}},
                "spec": {"containers": [{"name": "app", "image": "svc:1", **container}]},
            },
        },
    }
    spec = api.FreeThreadedSpec.model_validate({"image": "svc:1-ft", "probe": {"enabled": True}})
    twin = twin_manifest(
        rollout_name="svc",
        rollout_uid="uid",
        target=copy.deepcopy(target),
        spec=spec,
        revision="r",
        replicas=1,
        probe_configmap="ftrollout-probe",
    )
    result: dict[str, Any] = twin["spec"]["template"]["spec"]["containers"][0]
    return result


def run_app(
    tmp_path: Path,
    container: dict[str, Any],
    *,
    image_env: dict[str, str] | None = None,
    config: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    mount = tmp_path / "probe-mount"
    mount.mkdir()
    for key, text in probe_configmap_data().items():
        (mount / key).write_text(text)
    env = container_env(twin_container(container), image_env or {}, config or {})
    env = {key: value.replace(PROBE_MOUNT, str(mount)) for key, value in env.items()}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FTR_", "PYTHON", "COV_"))}
    base.update(
        env,
        FTR_PROBE_ADDR="127.0.0.1",
        FTR_PROBE_PORT=str(free_port()),
        FTR_PROBE_DIR=str(tmp_path),
    )
    out = subprocess.run(
        [sys.executable, "-c", CHECK],
        env=base,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.fixture
def app_dir(tmp_path: Path) -> str:
    src = tmp_path / "app-src"
    src.mkdir()
    (src / "appmod.py").write_text("VALUE = 'from the app path'\n")
    return str(src)


def test_plain_value_is_kept_after_the_probe(tmp_path: Path, app_dir: str) -> None:
    container = {"env": [{"name": "PYTHONPATH", "value": app_dir}]}
    assert run_app(tmp_path, container) == {
        "app": "from the app path",
        "probe": True,
        "literal": [],
    }


def test_value_referencing_another_variable_is_kept(tmp_path: Path, app_dir: str) -> None:
    container = {
        "env": [
            {"name": "APP_HOME", "value": app_dir},
            {"name": "PYTHONPATH", "value": "$(APP_HOME)"},
        ]
    }
    assert run_app(tmp_path, container)["app"] == "from the app path"


def test_value_from_a_configmap_is_kept(tmp_path: Path, app_dir: str) -> None:
    container = {
        "env": [
            {
                "name": "PYTHONPATH",
                "valueFrom": {"configMapKeyRef": {"name": "app-cfg", "key": "path"}},
            }
        ]
    }
    result = run_app(tmp_path, container, config={"app-cfg": {"path": app_dir}})
    assert result == {"app": "from the app path", "probe": True, "literal": []}


def test_optional_value_from_that_is_missing_leaves_no_literal_on_sys_path(
    tmp_path: Path, app_dir: str
) -> None:
    container = {
        "env": [
            {
                "name": "PYTHONPATH",
                "valueFrom": {
                    "configMapKeyRef": {"name": "app-cfg", "key": "nope", "optional": True}
                },
            }
        ],
    }
    result = run_app(tmp_path, container, config={"app-cfg": {}})
    assert result["probe"] is True
    assert result["literal"] == []


def test_pythonpath_from_env_from_is_kept(tmp_path: Path, app_dir: str) -> None:
    container = {"envFrom": [{"configMapRef": {"name": "app-env"}}]}
    result = run_app(tmp_path, container, config={"app-env": {"PYTHONPATH": app_dir}})
    assert result == {"app": "from the app path", "probe": True, "literal": []}


def test_env_from_without_pythonpath_leaves_no_literal_on_sys_path(
    tmp_path: Path, app_dir: str
) -> None:
    container = {"envFrom": [{"configMapRef": {"name": "app-env"}}]}
    result = run_app(
        tmp_path, container, config={"app-env": {"OTHER": "x"}}, image_env={"PYTHONPATH": app_dir}
    )
    assert result["probe"] is True
    assert result["literal"] == []
