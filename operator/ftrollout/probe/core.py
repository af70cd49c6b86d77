"""ftrollout runtime probe: export the interpreter's free-threading identity as Prometheus metrics.

This file is shipped ALONE into application pods (ConfigMap key ``ftrollout_probe.py``), so it is
stdlib-only, runs on CPython >= 3.9, uses no relative import and imports nothing from ``ftrollout``.
In this repository it is ``ftrollout.probe.core``; in a pod it is the top-level ``ftrollout_probe``.
``sitecustomize.py`` starts it through ``PYTHONPATH``; applications do not change.

What it records, per process:
- at start: ``sys.version``, the implementation, the free-threading build flag
  (``sysconfig.get_config_var("Py_GIL_DISABLED") == 1``) and the GIL state
  (``sys._is_gil_enabled()``; where that does not exist, i.e. before 3.13, the GIL is on);
- every RuntimeWarning "The global interpreter lock (GIL) has been enabled to load module '<name>',
  which has not declared that it can run safely without the GIL." that reaches
  ``warnings.showwarning``: the module name is recorded, then the warning is handed to the previous
  ``showwarning`` unchanged (the application still sees it, its filters still apply);
- the GIL state again after every extension-module import (a wrapper around
  ``importlib.machinery.ExtensionFileLoader.create_module``/``exec_module``) and on every scrape,
  so a fallback is seen even when the application filters the warning out (it is then attributed
  to the extension module being loaded, or to ``unknown`` when first seen at scrape time).

Environment (all optional):
- ``FTR_PROBE_DISABLED=1``: ``sitecustomize`` does not start the probe.
- ``FTR_PROBE_PORT`` (default 9437; not 9464, the OpenTelemetry Prometheus exporter's default) and
  ``FTR_PROBE_ADDR`` (default 0.0.0.0; an address with ':' binds IPv6, e.g. ``::`` for dual stack
  or ``127.0.0.1`` for a sidecar-only scrape): where ``GET /metrics`` is served. Every other path
  answers 404.
- ``FTR_PROBE_TIMEOUT_SECONDS`` (default 10): how long one scrape connection may stay open. Each
  connection is served by its own daemon thread (at most 32 at once), so a slow or stuck client
  does not delay other scrapes.
- ``FTR_PROBE_DIR`` (default ``<tempdir>/ftrollout-probe-<uid>-<port>``): where processes that do
  not hold the port report their state (one small JSON file per process).
- ``FTR_PROBE_FAULTHANDLER`` (default 1): in reporting processes, send ``faulthandler`` output to a
  per-process file so that a process that dies of a fatal signal is counted as an incident. It is
  never enabled when the application already enabled ``faulthandler`` itself.
- ``FTR_PROBE_RETRY_SECONDS`` (default 5; 0 disables): a process that could not bind the port and
  was not forked from the serving process retries binding at this interval, so the endpoint comes
  back when whoever held the port exits.

Multi-process servers (gunicorn, uvicorn/multiprocessing workers): exactly one process can bind the
port, and it serves the aggregate of the container. The others ("reporters") write their state to
``FTR_PROBE_DIR``: a forked child (``os.register_at_fork``) closes its copy of the listening socket
and reports; a process that finds the port taken reports too. On each scrape the serving process
reads the files: ``python_gil_enabled`` is the maximum over live processes, counters are summed over
every process that ever reported (files of exited processes are folded into totals and deleted).

The probe never crashes the application: every failure is written once to stderr, prefixed with
``ftrollout-probe:``, and otherwise ignored.

Limits (honest ones):
- ``python -S``/``-I``/``-E`` skip ``sitecustomize``/``PYTHONPATH``: no probe in such processes.
- A warning hidden by the application's filters (or raised inside its own
  ``catch_warnings(record=True)``) is not seen by the hook; on a free-threaded build the GIL
  switch is still caught by the import check, attributed to the extension module being loaded
  (two threads importing extensions at that very moment could swap the attribution).
- The serving thread makes the process multi-threaded: on 3.12+ ``os.fork()`` called from
  ``__main__`` prints CPython's "This process is multi-threaded, use of fork() may lead to
  deadlocks" DeprecationWarning (gunicorn forks from its own module: hidden by default filters).
- Counters live in the serving process: they restart from 0 when it restarts (a counter reset).
- A process killed with SIGKILL (OOM, gunicorn worker timeout) is not an incident: faulthandler
  cannot see it. Neither is a crash of the serving process itself: the container's exit code is.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.machinery
import json
import os
import platform
import re
import socket
import sys
import sysconfig
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import IO, Any, TextIO

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_ADDR",
    "DEFAULT_PORT",
    "GIL_WARNING_RE",
    "MetricsSnapshot",
    "Probe",
    "current",
    "escape_label_value",
    "freethreading_build",
    "gil_enabled",
    "parse_gil_warning",
    "record_incident",
    "render_metrics",
    "runtime_identity",
    "start",
    "start_from_env",
]

# Not 9464: that is the OpenTelemetry Prometheus exporter's default, which the application may run.
DEFAULT_PORT = 9437
DEFAULT_ADDR = "0.0.0.0"
DEFAULT_RETRY_SECONDS = 5.0
# Seconds a scrape connection may stay open (per read, and for the whole exchange).
DEFAULT_TIMEOUT = 10.0
# Scrape connections served at once; more are closed at once.
MAX_CONNECTIONS = 32
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATE_SCHEMA = 1
# More distinct fallback modules than this are summed under module="_other" (bounded cardinality).
MAX_MODULES = 64
UNKNOWN_MODULE = "unknown"
LOG_PREFIX = "ftrollout-probe: "

# The interpreter's text (Python/import.c, 3.13+): "The global interpreter lock (GIL) has been
# enabled to load module '%U', which has not declared that it can run safely without the GIL. To
# override this behavior and keep the GIL disabled (at your own risk), run with PYTHON_GIL=0 or
# -Xgil=0."
GIL_WARNING_RE = re.compile(
    r"The global interpreter lock \(GIL\) has been enabled to load module '(?P<module>.*)', "
    r"which has not declared",
    re.DOTALL,
)


# ---------------------------------------------------------------------------------------------
# Runtime identity (pure reads, safe to call anywhere)
# ---------------------------------------------------------------------------------------------


def freethreading_build() -> bool:
    """True when this interpreter is a free-threaded build (PEP 703)."""
    try:
        return bool(sysconfig.get_config_var("Py_GIL_DISABLED") == 1)
    except Exception:
        return False


def gil_enabled() -> bool:
    """The GIL state right now; builds without ``sys._is_gil_enabled`` always run with the GIL."""
    reader = getattr(sys, "_is_gil_enabled", None)
    if reader is None:
        return True
    try:
        return bool(reader())
    except Exception:
        return True


def runtime_identity() -> dict[str, Any]:
    """What the probe records at start (also handy for logs)."""
    return {
        "version": platform.python_version(),
        "sys_version": sys.version,
        "implementation": sys.implementation.name,
        "freethreading_build": freethreading_build(),
        "gil_enabled": gil_enabled(),
    }


def parse_gil_warning(text: str) -> str | None:
    """The module name in the interpreter's GIL-fallback RuntimeWarning, or None."""
    match = GIL_WARNING_RE.search(text)
    if match is None:
        return None
    return match.group("module")


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition (pure)
# ---------------------------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Escape a label value for the Prometheus text format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsSnapshot:
    """The aggregate the endpoint renders (one container: all processes reporting to one probe)."""

    def __init__(
        self,
        *,
        gil_enabled: bool,
        freethreading_build: bool,
        fallbacks: Mapping[str, int],
        incidents: int,
        info: Iterable[tuple[str, str]],
        processes: int = 1,
        gil_enabled_processes: int = 0,
    ) -> None:
        self.gil_enabled = gil_enabled
        self.freethreading_build = freethreading_build
        self.fallbacks = dict(fallbacks)
        self.incidents = incidents
        self.info = sorted(set(info))
        self.processes = processes
        self.gil_enabled_processes = gil_enabled_processes


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines.append(f"# HELP {name} {escaped}")
    lines.append(f"# TYPE {name} {kind}")


def render_metrics(snapshot: MetricsSnapshot) -> str:
    """Render the snapshot in the Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    _family(
        lines,
        "python_gil_enabled",
        "gauge",
        "1 if the GIL is enabled in at least one live Python process of this container.",
    )
    lines.append(f"python_gil_enabled {int(snapshot.gil_enabled)}")
    _family(
        lines,
        "python_freethreading_build",
        "gauge",
        "1 if every live Python process is a free-threaded build (sysconfig Py_GIL_DISABLED == 1).",
    )
    lines.append(f"python_freethreading_build {int(snapshot.freethreading_build)}")
    _family(
        lines,
        "python_gil_fallback_total",
        "counter",
        "Imports that re-enabled the GIL, by the module the interpreter named "
        "(summed over the processes of this container, exited ones included).",
    )
    for module in sorted(snapshot.fallbacks):
        label = escape_label_value(module)
        lines.append(f'python_gil_fallback_total{{module="{label}"}} {snapshot.fallbacks[module]}')
    _family(
        lines,
        "python_freethreading_incidents_total",
        "counter",
        "Processes of this container that died of a fatal signal (faulthandler: SIGSEGV, SIGABRT, "
        "SIGBUS, SIGFPE, SIGILL) plus incidents reported by the application via record_incident().",
    )
    lines.append(f"python_freethreading_incidents_total {snapshot.incidents}")
    _family(lines, "python_freethreading_runtime_info", "gauge", "Python runtime identity.")
    for version, implementation in snapshot.info:
        ver, impl = escape_label_value(version), escape_label_value(implementation)
        lines.append(
            f'python_freethreading_runtime_info{{version="{ver}",implementation="{impl}"}} 1'
        )
    _family(
        lines,
        "python_probe_processes",
        "gauge",
        "Live Python processes reporting to this probe endpoint.",
    )
    lines.append(f"python_probe_processes {snapshot.processes}")
    _family(
        lines,
        "python_probe_gil_enabled_processes",
        "gauge",
        "Live Python processes that run with the GIL enabled.",
    )
    lines.append(f"python_probe_gil_enabled_processes {snapshot.gil_enabled_processes}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Small process helpers
# ---------------------------------------------------------------------------------------------

_logged: set[str] = set()


def _log_once(key: str, message: str) -> None:
    """Write one line to stderr the first time ``key`` is seen in this process; never raise."""
    if key in _logged:
        return
    _logged.add(key)
    with contextlib.suppress(Exception):
        os.write(2, (LOG_PREFIX + message.replace("\n", " ") + "\n").encode("utf-8", "replace"))


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, starttime) of a process from /proc (Linux), or None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0].decode("ascii", "replace"), fields[19].decode("ascii", "replace")


def _process_alive(pid: int, starttime: str | None) -> bool:
    """True while ``pid`` runs and is the same process (start time) that wrote its state."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return starttime is None or started == starttime


def _env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        _log_once("env-" + name, f"ignoring {name}={raw!r} (not a number)")
        return default


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def default_directory(port: int) -> str:
    """``<tempdir>/ftrollout-probe-<uid>-<port>``: shared by every process of one container."""
    uid = getattr(os, "getuid", lambda: 0)()
    return os.path.join(tempfile.gettempdir(), f"ftrollout-probe-{uid}-{port}")


# ---------------------------------------------------------------------------------------------
# Hooks: warnings.showwarning and extension-module loading
# ---------------------------------------------------------------------------------------------


def _install_warning_hook(on_module: Callable[[str], None]) -> None:
    """Wrap ``warnings.showwarning``: record GIL-fallback warnings, then delegate unchanged."""
    previous = warnings.showwarning
    if getattr(previous, "_ftrollout_probe", False):
        return

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        try:
            if issubclass(category, RuntimeWarning):
                module = parse_gil_warning(str(message))
                if module is not None:
                    on_module(module)
        except Exception:
            pass
        previous(message, category, filename, lineno, file, line)

    showwarning._ftrollout_probe = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def _install_import_hook(after_extension: Callable[[str], None]) -> Callable[[], None]:
    """Call ``after_extension(name)`` after each extension module is created/executed.

    The loader class is wrapped in place (no new loader type, ``__loader__`` unchanged). Returns a
    function that restores the originals if nobody wrapped them after us.
    """
    loader_cls: Any = importlib.machinery.ExtensionFileLoader
    original_create = loader_cls.create_module
    original_exec = loader_cls.exec_module
    if getattr(original_create, "_ftrollout_probe", False):
        return lambda: None

    def create_module(self: Any, spec: Any) -> Any:
        try:
            return original_create(self, spec)
        finally:
            with contextlib.suppress(Exception):
                after_extension(str(getattr(spec, "name", UNKNOWN_MODULE)))

    def exec_module(self: Any, module: Any) -> None:
        try:
            original_exec(self, module)
        finally:
            with contextlib.suppress(Exception):
                after_extension(str(getattr(module, "__name__", UNKNOWN_MODULE)))

    create_module._ftrollout_probe = True  # type: ignore[attr-defined]
    exec_module._ftrollout_probe = True  # type: ignore[attr-defined]
    loader_cls.create_module = create_module
    loader_cls.exec_module = exec_module

    def uninstall() -> None:
        if loader_cls.create_module is create_module:
            loader_cls.create_module = original_create
        if loader_cls.exec_module is exec_module:
            loader_cls.exec_module = original_exec

    return uninstall


# ---------------------------------------------------------------------------------------------
# HTTP endpoint
# ---------------------------------------------------------------------------------------------


class _MetricsHandler(BaseHTTPRequestHandler):
    server_version = "ftrollout-probe"
    sys_version = ""

    def setup(self) -> None:
        server: _MetricsServer = self.server  # type: ignore[assignment]
        # A timeout per read, plus a deadline for the whole exchange: a client trickling one byte
        # at a time never trips the first but cannot hold a connection slot past the second.
        self.request.settimeout(server.client_timeout)
        self._deadline = threading.Timer(server.client_timeout, self._abort)
        self._deadline.daemon = True
        self._deadline.start()
        BaseHTTPRequestHandler.setup(self)

    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self.request.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        try:
            BaseHTTPRequestHandler.finish(self)
        finally:
            self._deadline.cancel()

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")
            return
        probe: Probe = getattr(self.server, "probe")  # noqa: B009 - set by _MetricsServer
        try:
            body = probe.render().encode("utf-8", "replace")
        except Exception as exc:
            _log_once("render", f"cannot render metrics: {type(exc).__name__}: {exc}")
            self._reply(500, b"probe error\n", "text/plain; charset=utf-8")
            return
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _MetricsServer(ThreadingHTTPServer):
    """One daemon thread per connection, at most ``MAX_CONNECTIONS`` at a time.

    A single-threaded server would let one client that connects and sends nothing hold every
    other scrape for the whole timeout; connections beyond the cap are closed at once, so a flood
    cannot grow threads without bound either.
    """

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], probe: Probe, client_timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.probe = probe
        self.client_timeout = client_timeout
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        ThreadingHTTPServer.__init__(self, address, _MetricsHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the address: a DNS lookup we do not need.
        TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _log_once("busy", f"more than {MAX_CONNECTIONS} open scrapes; closing the newest")
            self.shutdown_request(request)
            return
        try:
            ThreadingHTTPServer.process_request(self, request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            ThreadingHTTPServer.process_request_thread(self, request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # a client that timed out or went away: nothing to report
        _log_once("http", f"error while answering a scrape: {exc!r}")


# ---------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------


class Probe:
    """Per-process probe. Use :func:`start`/:func:`start_from_env`; they never raise."""

    def __init__(
        self,
        *,
        port: int = DEFAULT_PORT,
        addr: str = DEFAULT_ADDR,
        directory: str | None = None,
        use_faulthandler: bool = True,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        client_timeout: float = DEFAULT_TIMEOUT,
        gil_reader: Callable[[], bool] = gil_enabled,
    ) -> None:
        self.port = port
        self.addr = addr
        self.directory = directory or default_directory(port)
        self.use_faulthandler = use_faulthandler
        self.retry_seconds = retry_seconds
        self.client_timeout = client_timeout if client_timeout > 0 else DEFAULT_TIMEOUT
        self._gil_reader = gil_reader
        self._lock = threading.Lock()
        self._server: _MetricsServer | None = None
        self._faulthandler_file: IO[str] | None = None
        self.role = "stopped"  # "server" | "reporter" | "stopped"
        self._reset_process_state(inherit=False)
        # Totals of exited reporters, folded in by the serving process.
        self._retired_fallbacks: dict[str, int] = {}
        self._retired_incidents = 0

    # -- state -------------------------------------------------------------------------------

    def _reset_process_state(self, *, inherit: bool) -> None:
        self.pid = os.getpid()
        stat = _proc_stat(self.pid)
        self.starttime = stat[1] if stat else None
        self.version = platform.python_version()
        self.implementation = sys.implementation.name
        self.build = freethreading_build()
        if inherit:
            # A forked child: events before the fork belong to the parent, which counts them.
            self.fallbacks: dict[str, int] = {}
            self.incidents = 0
        else:
            self.gil = self._gil_reader()
            self.gil_at_start = self.gil
            self.fallbacks = {}
            self.seen_modules: set[str] = set()
            self.incidents = 0

    def _record_fallback(self, module: str) -> None:
        with self._lock:
            gil_before = self.gil
            self.gil = self._gil_reader()
            new = module not in self.seen_modules
            if new:
                self.seen_modules.add(module)
                key = module
                if key not in self.fallbacks and len(self.fallbacks) >= MAX_MODULES:
                    key = "_other"
                self.fallbacks[key] = self.fallbacks.get(key, 0) + 1
            changed = new or self.gil != gil_before
        if changed:
            self._publish()

    def on_gil_warning(self, module: str) -> None:
        """The interpreter warned that importing ``module`` enabled the GIL."""
        self._record_fallback(module)

    def check_gil(self, module: str | None = None) -> None:
        """Re-read the GIL; a switch from off to on is a fallback attributed to ``module``."""
        now = self._gil_reader()
        with self._lock:
            switched = now and not self.gil
            changed = now != self.gil
            if not switched:
                self.gil = now
        if switched:
            self._record_fallback(module or UNKNOWN_MODULE)
        elif changed:
            self._publish()

    def record_incident(self, count: int = 1) -> None:
        with self._lock:
            self.incidents += max(0, int(count))
        self._publish()

    def state(self) -> dict[str, Any]:
        """This process's state, as written to its reporter file."""
        with self._lock:
            return {
                "schema": STATE_SCHEMA,
                "pid": self.pid,
                "starttime": self.starttime,
                "gil": self.gil,
                "gil_at_start": self.gil_at_start,
                "build": self.build,
                "version": self.version,
                "implementation": self.implementation,
                "fallbacks": dict(self.fallbacks),
                "incidents": self.incidents,
                "updated": time.time(),
            }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Probe:
        if self.role != "stopped":
            return self
        self.role = "reporter"
        _install_warning_hook(self.on_gil_warning)
        if self.build and hasattr(sys, "_is_gil_enabled"):
            # Only a free-threaded build can switch the GIL on at import time.
            _install_import_hook(self.check_gil)
        _register_fork_hook()
        if self._try_serve(initial=True):
            return self
        self._become_reporter()
        if self.retry_seconds > 0:
            self._start_retry_thread()
        return self

    def _try_serve(self, *, initial: bool) -> bool:
        try:
            server = _MetricsServer((self.addr, self.port), self, self.client_timeout)
        except OSError as exc:
            if initial and not self._known_server_alive():
                _log_once(
                    "bind",
                    f"cannot serve metrics on {self.addr}:{self.port} ({exc.strerror or exc}); "
                    f"reporting to {self.directory} instead",
                )
            return False
        except Exception as exc:
            _log_once("bind", f"cannot serve metrics: {type(exc).__name__}: {exc}")
            return False
        with self._lock:
            self._server = server
            self.role = "server"
        # Initially, files of dead processes are leftovers of an earlier run; on a takeover they
        # belong to this run and are folded in by the next scrape.
        self._prepare_directory(clean=initial)
        self._write_json(
            os.path.join(self.directory, "server.json"),
            {"pid": self.pid, "starttime": self.starttime, "port": self.port},
        )
        self._remove(os.path.join(self.directory, f"{self.pid}.json"))
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 1.0},
            name="ftrollout-probe-http",
            daemon=True,
        )
        thread.start()
        return True

    def _known_server_alive(self) -> bool:
        try:
            with open(os.path.join(self.directory, "server.json")) as handle:
                marker = json.load(handle)
            return _process_alive(int(marker["pid"]), marker.get("starttime"))
        except Exception:
            return False

    def _start_retry_thread(self) -> None:
        def loop() -> None:
            while self.role == "reporter" and os.getpid() == self.pid:
                time.sleep(self.retry_seconds)
                if self.role == "reporter" and os.getpid() == self.pid:
                    self._try_serve(initial=False)

        try:
            threading.Thread(target=loop, name="ftrollout-probe-retry", daemon=True).start()
        except Exception as exc:
            _log_once("retry", f"cannot start the retry thread: {exc}")

    def _become_reporter(self) -> None:
        self._prepare_directory(clean=False)
        self._enable_faulthandler()
        self._publish()

    def after_fork_in_child(self) -> None:
        """Runs in a forked child: fresh lock, own identity, report instead of serve."""
        self._lock = threading.Lock()
        server = self._server
        self._server = None
        if server is not None:
            with contextlib.suppress(Exception):
                server.socket.close()  # the parent keeps serving on its copy
        if self.role == "stopped":
            return
        self.role = "reporter"
        self._retired_fallbacks = {}
        self._retired_incidents = 0
        self._reset_process_state(inherit=True)
        self._become_reporter()

    # -- reporter side -----------------------------------------------------------------------

    def _state_path(self, suffix: str) -> str:
        return os.path.join(self.directory, f"{self.pid}.{suffix}")

    def _prepare_directory(self, *, clean: bool) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            _log_once("dir", f"cannot create {self.directory}: {exc}")
            return
        if clean:
            # A new serving process: files left by processes of an earlier run are stale.
            for name, path in self._listdir():
                if ".tmp." in name:
                    self._remove(path)
                elif name.endswith(".json") and name != "server.json":
                    data = self._read_json(path) or {}
                    if not _process_alive(_as_int(data.get("pid")), data.get("starttime")):
                        self._remove(path)
                        self._remove(path[: -len(".json")] + ".crash")

    def _enable_faulthandler(self) -> None:
        if not self.use_faulthandler:
            return
        try:
            ours = self._faulthandler_file is not None
            if faulthandler.is_enabled() and not ours:
                return  # the application chose its own faulthandler output
            handle = open(self._state_path("crash"), "w")  # noqa: SIM115 - must stay open
            faulthandler.enable(file=handle, all_threads=True)
            previous, self._faulthandler_file = self._faulthandler_file, handle
            if previous is not None:
                previous.close()
        except Exception as exc:
            _log_once("faulthandler", f"cannot enable faulthandler: {exc}")

    def _publish(self) -> None:
        if self.role != "reporter":
            return
        self._write_json(self._state_path("json"), self.state())

    def _write_json(self, path: str, data: Mapping[str, Any]) -> None:
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "w") as handle:
                json.dump(data, handle)
            os.replace(tmp, path)
        except Exception as exc:
            _log_once("write", f"cannot write {path}: {exc}")
            self._remove(tmp)

    # -- server side -------------------------------------------------------------------------

    def _listdir(self) -> list[tuple[str, str]]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [(name, os.path.join(self.directory, name)) for name in sorted(names)]

    @staticmethod
    def _read_json(path: str) -> dict[str, Any] | None:
        try:
            with open(path) as handle:
                data = json.load(handle)
        except Exception:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _remove(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _fold_dead(self, path: str, data: dict[str, Any]) -> None:
        """An exited reporter: keep its counters, count a fatal-signal death, delete its files."""
        for module, count in _counter_items(data.get("fallbacks")):
            self._retired_fallbacks[module] = self._retired_fallbacks.get(module, 0) + count
        self._retired_incidents += _as_int(data.get("incidents"))
        crash_path = path[: -len(".json")] + ".crash"
        try:
            with open(crash_path, errors="replace") as handle:
                crash = handle.read(4096)
        except OSError:
            crash = ""
        if crash.strip():
            self._retired_incidents += 1
            first = crash.strip().splitlines()[0]
            _log_once(
                f"crash-{data.get('pid')}-{data.get('starttime')}",
                f"process {data.get('pid')} died of a fatal signal ({first})",
            )
        self._remove(path)
        self._remove(crash_path)

    def snapshot(self) -> MetricsSnapshot:
        """The aggregate over this process and every process reporting to its directory."""
        self.check_gil()
        own = self.state()
        live = [own]
        reporters: list[dict[str, Any]] = []
        if self.role == "server":
            for name, path in self._listdir():
                if not name.endswith(".json") or name == "server.json":
                    continue
                data = self._read_json(path)
                if data is None:
                    continue
                pid = _as_int(data.get("pid"))
                if pid == self.pid:
                    continue
                if _process_alive(pid, data.get("starttime")):
                    live.append(data)
                    reporters.append(data)
                else:
                    self._fold_dead(path, data)
        fallbacks = dict(self._retired_fallbacks)
        incidents = self._retired_incidents
        for data in live:
            for module, count in _counter_items(data.get("fallbacks")):
                fallbacks[module] = fallbacks.get(module, 0) + count
            incidents += _as_int(data.get("incidents"))
        gil_flags = [bool(data.get("gil", True)) for data in live]
        return MetricsSnapshot(
            gil_enabled=any(gil_flags),
            freethreading_build=all(bool(data.get("build")) for data in live),
            fallbacks=fallbacks,
            incidents=incidents,
            info=[
                (str(data.get("version", "")), str(data.get("implementation", ""))) for data in live
            ],
            processes=len(live),
            gil_enabled_processes=sum(1 for flag in gil_flags if flag),
        )

    def render(self) -> str:
        return render_metrics(self.snapshot())

    def stop(self) -> None:
        """Stop serving (tests); hooks stay installed but become inert."""
        server = self._server
        self._server = None
        self.role = "stopped"
        if server is not None:
            server.shutdown()
            server.server_close()


def _as_int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _counter_items(value: Any) -> list[tuple[str, int]]:
    if not isinstance(value, dict):
        return []
    return [(str(key), _as_int(count)) for key, count in value.items()]


# ---------------------------------------------------------------------------------------------
# Module-level API (one probe per process)
# ---------------------------------------------------------------------------------------------

_PROBE: Probe | None = None
_FORK_HOOK_REGISTERED = False


def _after_fork_in_child() -> None:
    probe = _PROBE
    if probe is None:
        return
    try:
        probe.after_fork_in_child()
    except Exception as exc:
        _log_once("fork", f"cannot set up the probe in a forked child: {exc}")


def _register_fork_hook() -> None:
    global _FORK_HOOK_REGISTERED
    if _FORK_HOOK_REGISTERED or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _FORK_HOOK_REGISTERED = True


def current() -> Probe | None:
    """The probe started in this process, if any."""
    return _PROBE


def start(**options: Any) -> Probe | None:
    """Start the process-wide probe once (see :class:`Probe` for options). Never raises."""
    global _PROBE
    if _PROBE is not None:
        return _PROBE
    try:
        _PROBE = Probe(**options)
        _PROBE.start()
    except Exception as exc:
        _log_once("start", f"probe not started: {type(exc).__name__}: {exc}")
    return _PROBE


def start_from_env(environ: Mapping[str, str] | None = None) -> Probe | None:
    """Start the probe configured by the ``FTR_PROBE_*`` environment variables. Never raises."""
    env = os.environ if environ is None else environ
    try:
        if _truthy(env.get("FTR_PROBE_DISABLED"), False):
            return None
        raw_port = env.get("FTR_PROBE_PORT", "").strip() or str(DEFAULT_PORT)
        try:
            port = int(raw_port)
            if not 0 < port < 65536:
                raise ValueError(raw_port)
        except ValueError:
            _log_once("port", f"invalid FTR_PROBE_PORT={raw_port!r}; using {DEFAULT_PORT}")
            port = DEFAULT_PORT
        return start(
            port=port,
            addr=env.get("FTR_PROBE_ADDR", "").strip() or DEFAULT_ADDR,
            directory=env.get("FTR_PROBE_DIR", "").strip() or None,
            use_faulthandler=_truthy(env.get("FTR_PROBE_FAULTHANDLER"), True),
            retry_seconds=_env_float(env, "FTR_PROBE_RETRY_SECONDS", DEFAULT_RETRY_SECONDS),
            client_timeout=_env_float(env, "FTR_PROBE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT),
        )
    except Exception as exc:
        _log_once("start", f"probe not started: {type(exc).__name__}: {exc}")
        return None


def record_incident(count: int = 1) -> None:
    """Count a free-threading incident noticed by the application (no-op without a probe)."""
    probe = _PROBE
    if probe is None:
        return
    with contextlib.suppress(Exception):
        probe.record_incident(count)
