"""The runtime probe, run for real: subprocesses of real interpreters, scraped over HTTP."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from ftrollout.model import api
from ftrollout.probe import PROBE_FILES, core, probe_configmap_data

FIXTURES = Path(__file__).parent / "probe_fixtures"
APP = FIXTURES / "probe_app.py"
PYTHON = sys.executable
GIL_TEXT = (
    "The global interpreter lock (GIL) has been enabled to load module 'gilwarn_mod', which has "
    "not declared that it can run safely without the GIL."
)

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ConfigMap as the operator mounts it: PROBE_FILES' keys, flat, nothing else."""
    target = tmp_path_factory.mktemp("configmap")
    for key, text in probe_configmap_data().items():
        (target / key).write_text(text)
    return target


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FTR_", "PYTHON", "COV_"))
    }
    env.update(extra)
    return env


def probe_env(flat_dir: Path, port: int, probe_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        PYTHONPATH=f"{flat_dir}{os.pathsep}{FIXTURES}",
        FTR_PROBE_PORT=str(port),
        FTR_PROBE_ADDR="127.0.0.1",
        FTR_PROBE_DIR=str(probe_dir),
        **extra,
    )


def get(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}, via prometheus_client's parser (validates format)."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def value(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return samples[name][tuple(sorted(labels.items()))]


class App:
    """probe_app.py in a subprocess, with the probe injected only through PYTHONPATH."""

    def __init__(self, mode: str, env: dict[str, str], python: str = PYTHON) -> None:
        self.proc = subprocess.Popen(
            [python, str(APP), mode],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline()
        if not self.first_line.startswith("READY"):
            out, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"app did not start: {self.first_line!r} {out!r} {err!r}")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(input="", timeout=30)
        return self.proc.returncode, out, err


@pytest.fixture
def running() -> Iterator[list[App]]:
    apps: list[App] = []
    yield apps
    for app in apps:
        if app.proc.poll() is None:
            app.proc.kill()
            app.proc.communicate()


def scrape_until(
    port: int, predicate: object, timeout: float = 10.0
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    deadline = time.monotonic() + timeout
    body = "(no answer)"
    while True:
        try:
            status, _, body = get(port)
        except urllib.error.URLError:
            status = 0
        if status == 200:
            samples = parse(body)
            if callable(predicate) and predicate(samples):
                return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met; last scrape:\n{body}")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# identity and the shipped files
# ------------------------------------------------------------------------------------------------


def test_standard_build_reports_build_0_and_gil_on() -> None:
    code = (
        "import json; from ftrollout.probe import core; print(json.dumps(core.runtime_identity()))"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], env=clean_env(), capture_output=True, text=True, check=True
    ).stdout
    identity = json.loads(out)
    assert identity["freethreading_build"] is False
    assert identity["gil_enabled"] is True
    assert identity["implementation"] == "cpython"
    assert identity["sys_version"] == sys.version
    assert identity["version"] == ".".join(map(str, sys.version_info[:3]))


def test_probe_files_are_the_flat_configmap() -> None:
    assert set(PROBE_FILES) == {"sitecustomize.py", "ftrollout_probe.py", "ftrollout_preflight.py"}
    data = probe_configmap_data()
    assert list(data) == sorted(data)
    for key, path in PROBE_FILES.items():
        assert path.is_file()
        assert data[key] == path.read_text()


@pytest.mark.parametrize("key", sorted(PROBE_FILES))
def test_shipped_files_are_stdlib_only_and_parse_as_python_3_9(key: str) -> None:
    source = PROBE_FILES[key].read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    allowed = set(sys.stdlib_module_names) | {"ftrollout_probe", "__future__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{key}: relative import"
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "ftrollout":
                # only sitecustomize's fallback to the package layout, never in pods
                assert key == "sitecustomize.py", name
                assert name == "ftrollout.probe", name
                continue
            assert top in allowed, f"{key} imports {name}"


# ------------------------------------------------------------------------------------------------
# the endpoint, loaded through PYTHONPATH + sitecustomize
# ------------------------------------------------------------------------------------------------


def test_sitecustomize_serves_metrics_and_attributes_the_gil_warning(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    port = free_port()
    app = App("serve", probe_env(flat_dir, port, tmp_path / "probe"))
    running.append(app)

    status, content_type, body = get(port)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(body)
    assert value(samples, "python_gil_enabled") == 1
    assert value(samples, "python_freethreading_build") == 0
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 1
    assert value(samples, "python_freethreading_incidents_total") == 0
    version = ".".join(map(str, sys.version_info[:3]))
    assert (
        value(
            samples, "python_freethreading_runtime_info", version=version, implementation="cpython"
        )
        == 1
    )
    assert value(samples, "python_probe_processes") == 1
    # An application that also exports prometheus_client's default collectors (python_info,
    # process_*, python_gc_*) must not see the probe's families collide with them.
    from prometheus_client import REGISTRY

    defaults = {m.name for m in REGISTRY.collect()}
    assert "python_info" in defaults
    assert not {f.name for f in text_string_to_metric_families(body)} & defaults

    code, _, err = app.finish()
    assert code == 0
    # The application still got its warning (default filters print it to stderr).
    assert "RuntimeWarning" in err
    assert GIL_TEXT in err
    assert "ftrollout-probe:" not in err


@pytest.mark.parametrize("path", ["/", "/metrics/", "/favicon.ico", "/debug", "/../etc/passwd"])
def test_other_paths_are_404(flat_dir: Path, tmp_path: Path, running: list[App], path: str) -> None:
    port = free_port()
    running.append(App("serve", probe_env(flat_dir, port, tmp_path / "probe")))
    status, _, body = get(port, path)
    assert status == 404
    assert "python_" not in body
    assert get(port, "/metrics?x=1")[0] == 200


def test_application_filters_still_apply(flat_dir: Path, tmp_path: Path) -> None:
    env = probe_env(flat_dir, free_port(), tmp_path / "probe")
    result = subprocess.run(
        [PYTHON, str(APP), "filters-error"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RAISED True"


def test_port_in_use_does_not_crash_the_app(flat_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = probe_env(flat_dir, port, tmp_path / "probe")
        result = subprocess.run(
            [PYTHON, str(APP), "quick"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0
    assert result.stdout.strip() == "DONE"
    probe_lines = [
        line for line in result.stderr.splitlines() if line.startswith("ftrollout-probe:")
    ]
    assert len(probe_lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in probe_lines[0]
    assert GIL_TEXT in result.stderr  # the application's warning is untouched


def test_disabled_probe_loads_nothing(flat_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = probe_env(flat_dir, port, tmp_path / "probe", FTR_PROBE_DISABLED="1")
    code = (
        f"import sys, socket; s = socket.socket(); s.bind(('127.0.0.1', {port})); "
        "print('ftrollout_probe' in sys.modules)"
    )
    result = subprocess.run(
        [PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert result.stderr == ""


def test_record_incident_api(flat_dir: Path, tmp_path: Path, running: list[App]) -> None:
    port = free_port()
    running.append(App("incident", probe_env(flat_dir, port, tmp_path / "probe")))
    assert value(parse(get(port)[2]), "python_freethreading_incidents_total") == 1


# ------------------------------------------------------------------------------------------------
# multi-process: forked workers
# ------------------------------------------------------------------------------------------------


def test_forked_child_fallback_shows_in_the_aggregate(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    port = free_port()
    probe_dir = tmp_path / "probe"
    app = App("fork", probe_env(flat_dir, port, probe_dir))
    running.append(app)

    samples = scrape_until(port, lambda s: value(s, "python_probe_processes") == 2)
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 1
    assert value(samples, "python_gil_enabled") == 1
    assert value(samples, "python_probe_gil_enabled_processes") == 2
    assert len(list(probe_dir.glob("*.json"))) == 2  # server marker + the child's state

    code, _, err = app.finish()
    assert code == 0
    assert GIL_TEXT in err


def test_exited_child_counters_are_kept_and_crashes_counted(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    port = free_port()
    probe_dir = tmp_path / "probe"
    app = App("crash", probe_env(flat_dir, port, probe_dir))
    running.append(app)
    samples = parse(get(port)[2])
    assert value(samples, "python_freethreading_incidents_total") == 1
    assert value(samples, "python_probe_processes") == 1
    # exited children are folded in and their files removed
    assert sorted(p.name for p in probe_dir.iterdir()) == ["server.json"]
    assert value(parse(get(port)[2]), "python_freethreading_incidents_total") == 1
    code, _, err = app.finish()
    assert code == 0
    crash_lines = [line for line in err.splitlines() if "died of a fatal signal" in line]
    assert len(crash_lines) == 1, err
    assert "Fatal Python error: Aborted" in crash_lines[0]


def test_fork_fold_keeps_fallback_counter_monotonic(flat_dir: Path, tmp_path: Path) -> None:
    """A child that imported the module and exited still counts after it is gone."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import os, sys, urllib.request
        pid = os.fork()
        if pid == 0:
            import gilwarn_mod
            os._exit(0)
        os.waitpid(pid, 0)
        body = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=10).read()
        sys.stdout.write(body.decode())
        """
    )
    env = probe_env(flat_dir, port, tmp_path / "probe")
    result = subprocess.run(
        [PYTHON, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    samples = parse(result.stdout)
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 1
    assert value(samples, "python_probe_processes") == 1


def test_separately_started_process_reports_quietly(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    """A spawned worker (not forked) finds the port taken by a live probe: no log, it reports."""
    port = free_port()
    env = probe_env(flat_dir, port, tmp_path / "probe")
    running.append(App("serve", env))
    worker = App("serve", env)
    running.append(worker)
    samples = scrape_until(port, lambda s: value(s, "python_probe_processes") == 2)
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 2
    code, _, err = worker.finish()
    assert code == 0
    assert "ftrollout-probe:" not in err
    samples = scrape_until(port, lambda s: value(s, "python_probe_processes") == 1)
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 2


def test_reporter_takes_over_when_the_port_frees_up(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    app = App("serve", probe_env(flat_dir, port, tmp_path / "probe", FTR_PROBE_RETRY_SECONDS="0.2"))
    running.append(app)
    holder.close()
    samples = scrape_until(port, lambda s: "python_gil_fallback_total" in s)
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 1
    assert value(samples, "python_probe_processes") == 1


# ------------------------------------------------------------------------------------------------
# sitecustomize chaining
# ------------------------------------------------------------------------------------------------


def test_sitecustomize_chains_to_the_next_one(flat_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['CHAINED'] = __name__\n")
    env = probe_env(flat_dir, free_port(), tmp_path / "probe")
    env["PYTHONPATH"] = f"{flat_dir}{os.pathsep}{other}"
    code = "import os, sys; print(os.environ.get('CHAINED'), sys.modules['ftrollout_probe'].current().role)"
    result = subprocess.run(
        [PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sitecustomize", "server"]


def test_broken_chained_sitecustomize_is_reported_not_fatal(flat_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("raise RuntimeError('boom')\n")
    env = probe_env(flat_dir, free_port(), tmp_path / "probe")
    env["PYTHONPATH"] = f"{flat_dir}{os.pathsep}{other}"
    result = subprocess.run(
        [PYTHON, "-c", "print('ok')"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "ok"
    assert "Error in sitecustomize" in result.stderr
    assert "RuntimeError: boom" in result.stderr


# ------------------------------------------------------------------------------------------------
# GIL switch detection without the warning (fake GIL reader; a standard build cannot switch)
# ------------------------------------------------------------------------------------------------

EXTENSION_CANDIDATES = ["_bz2", "_lzma", "_csv", "_decimal", "mmap", "_ctypes", "_sqlite3"]


def test_gil_switch_during_an_extension_import_is_attributed_to_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import importlib.machinery, importlib.util, json, sys, warnings
        from ftrollout.probe import core
        name = None
        for candidate in {EXTENSION_CANDIDATES!r}:
            spec = importlib.util.find_spec(candidate)
            if candidate not in sys.modules and spec is not None and isinstance(
                spec.loader, importlib.machinery.ExtensionFileLoader
            ):
                name = candidate
                break
        if name is None:
            print(json.dumps(None)); sys.exit(0)
        warnings.simplefilter("ignore")  # the application hides the warning: the switch still counts
        probe = core.Probe(port=1, directory={str(tmp_path)!r}, gil_reader=lambda: name in sys.modules)
        core._install_import_hook(probe.check_gil)
        importlib.import_module(name)
        snap = probe.snapshot()
        print(json.dumps({{"name": name, "fallbacks": snap.fallbacks, "gil": snap.gil_enabled}}))
        """
    )
    result = subprocess.run(
        [PYTHON, "-c", script], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    if report is None:
        pytest.skip("no stdlib extension module available as a shared library")
    assert report["fallbacks"] == {report["name"]: 1}
    assert report["gil"] is True


def test_gil_switch_seen_only_at_scrape_time_is_unknown(tmp_path: Path) -> None:
    state = {"on": False}
    probe = core.Probe(port=1, directory=str(tmp_path), gil_reader=lambda: state["on"])
    assert probe.snapshot().gil_enabled is False
    state["on"] = True
    snap = probe.snapshot()
    assert snap.gil_enabled is True
    assert snap.fallbacks == {"unknown": 1}
    probe.on_gil_warning("later_mod")
    probe.on_gil_warning("later_mod")  # one process counts a module once
    assert probe.snapshot().fallbacks == {"unknown": 1, "later_mod": 1}


def test_module_cardinality_is_bounded(tmp_path: Path) -> None:
    probe = core.Probe(port=1, directory=str(tmp_path), gil_reader=lambda: True)
    for index in range(core.MAX_MODULES + 10):
        probe.on_gil_warning(f"mod{index}")
    fallbacks = probe.snapshot().fallbacks
    assert len(fallbacks) == core.MAX_MODULES + 1
    assert fallbacks["_other"] == 10


# ------------------------------------------------------------------------------------------------
# exposition format (pure)
# ------------------------------------------------------------------------------------------------

label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(modules=st.dictionaries(label_text, st.integers(min_value=0, max_value=10**9), max_size=8))
def test_arbitrary_module_names_round_trip_through_the_exposition(modules: dict[str, int]) -> None:
    snapshot = core.MetricsSnapshot(
        gil_enabled=True,
        freethreading_build=False,
        fallbacks=modules,
        incidents=3,
        info=[("3.14.0", "cpython")],
    )
    samples = parse(core.render_metrics(snapshot))
    fallback = samples.get("python_gil_fallback_total", {})
    assert {dict(labels)["module"]: count for labels, count in fallback.items()} == modules
    assert value(samples, "python_freethreading_incidents_total") == 3


@given(module=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_gil_warning_parser_recovers_any_module_name(module: str) -> None:
    text = (
        f"The global interpreter lock (GIL) has been enabled to load module '{module}', which has "
        "not declared that it can run safely without the GIL. To override this behavior and keep "
        "the GIL disabled (at your own risk), run with PYTHON_GIL=0 or -Xgil=0."
    )
    assert core.parse_gil_warning(text) == module
    assert core.parse_gil_warning(text.replace("RuntimeWarning", "")) == module


def test_unrelated_warnings_are_not_fallbacks() -> None:
    assert core.parse_gil_warning("DeprecationWarning: something else") is None
    assert core.parse_gil_warning("") is None


# ------------------------------------------------------------------------------------------------
# other interpreters on this machine (the probe targets CPython >= 3.9)
# ------------------------------------------------------------------------------------------------


def _other_pythons() -> list[str]:
    """Other CPythons >= 3.9 on this machine: FTR_TEST_PYTHONS, PATH, pyenv installs."""
    found: list[str] = [p for p in os.environ.get("FTR_TEST_PYTHONS", "").split(os.pathsep) if p]
    for name in (
        "python3.9",
        "python3.10",
        "python3.12",
        "python3.13",
        "python3.13t",
        "python3.14t",
    ):
        path = shutil.which(name)
        if path and ".pyenv/shims" not in path:
            found.append(path)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob("3.*/bin/python3")):
        minor = candidate.parent.parent.name.split(".")[1]
        if minor.isdigit() and int(minor) >= 9:
            found.append(str(candidate))
    ours = os.path.realpath(sys.executable)
    unique: dict[str, str] = {}
    for path in found:
        real = os.path.realpath(path)
        if real != ours and not real.startswith(os.path.dirname(ours) + os.sep):
            unique.setdefault(real, path)
    return sorted(unique.values())


OTHER_PYTHONS = _other_pythons()


def _works(python: str) -> bool:
    try:
        return (
            subprocess.run([python, "-c", "pass"], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("python", OTHER_PYTHONS or ["none"])
def test_probe_runs_on_other_interpreters(
    python: str, flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    if python == "none" or not _works(python):
        pytest.skip("no other CPython on this machine")
    port = free_port()
    app = App("fork", probe_env(flat_dir, port, tmp_path / "probe"), python=python)
    running.append(app)
    samples = scrape_until(port, lambda s: value(s, "python_probe_processes") == 2)
    assert value(samples, "python_gil_fallback_total", module="gilwarn_mod") == 1
    info = samples["python_freethreading_runtime_info"]
    (labels,) = info
    identity = json.loads(
        subprocess.run(
            [
                python,
                "-c",
                "import json, platform, sysconfig, sys; print(json.dumps([platform.python_version(), sysconfig.get_config_var('Py_GIL_DISABLED') == 1, getattr(sys, '_is_gil_enabled', lambda: True)()]))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert dict(labels)["version"] == identity[0]
    assert value(samples, "python_freethreading_build") == int(identity[1])
    code, _, err = app.finish()
    assert code == 0, err


# ------------------------------------------------------------------------------------------------
# the HTTP endpoint: bind address, default port, clients that hold a connection
# ------------------------------------------------------------------------------------------------


def test_default_port_is_not_the_opentelemetry_exporters() -> None:
    """9464 is the OpenTelemetry Prometheus exporter's default: an app running it kept the port."""
    assert core.DEFAULT_PORT != 9464
    assert api.ProbeSpec().port == core.DEFAULT_PORT


def test_bind_address_is_honoured(flat_dir: Path, tmp_path: Path, running: list[App]) -> None:
    port = free_port()
    env = probe_env(flat_dir, port, tmp_path / "probe")
    env["FTR_PROBE_ADDR"] = "127.0.0.2"  # any 127/8 address is loopback on Linux
    running.append(App("serve", env))
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10) as resp:
                assert resp.status == 200
                break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_a_stuck_client_does_not_block_other_scrapes(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    port = free_port()
    env = probe_env(flat_dir, port, tmp_path / "probe", FTR_PROBE_TIMEOUT_SECONDS="120")
    running.append(App("serve", env))
    scrape_until(port, lambda s: True)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as stuck:
        # connected, never sends a byte; a scrape right after must be answered while it hangs
        status, _, body = get(port)
        assert status == 200
        assert "python_gil_enabled" in body
        stuck.setblocking(False)
        with pytest.raises(BlockingIOError):
            stuck.recv(1)  # still open: the scrape was not merely served after it timed out


def test_a_trickling_client_is_cut_off_at_the_deadline(
    flat_dir: Path, tmp_path: Path, running: list[App]
) -> None:
    """One byte at a time never trips a per-read timeout; the whole-exchange deadline does."""
    port = free_port()
    env = probe_env(flat_dir, port, tmp_path / "probe", FTR_PROBE_TIMEOUT_SECONDS="1")
    running.append(App("serve", env))
    scrape_until(port, lambda s: True)
    request = b"GET /metrics HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 80
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        for byte in request:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            slow.setblocking(False)
            try:
                closed = slow.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            slow.setblocking(True)
            if closed:
                break
            time.sleep(0.2)
    assert closed, "the server kept a trickling connection open past its deadline"
    assert get(port)[0] == 200
