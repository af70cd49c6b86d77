"""ftrollout dependency-gate preflight: import modules on this interpreter and report what happened.

Run inside the free-threaded image by the dependency-gate Job (ConfigMap key
``ftrollout_preflight.py``)::

    python /opt/ftrollout-probe/ftrollout_preflight.py numpy orjson
    python -m ftrollout.probe.preflight numpy orjson          # from this repository

Arguments are module names, imported in order (an argument may also hold several names separated by
commas or spaces). Stdlib only, CPython >= 3.9, no relative import. The script only REPORTS; the
operator judges the report. While modules are imported, file descriptor 1 points at stderr, so
whatever a module prints cannot corrupt the report.

Output: one JSON document (compact, UTF-8, at most 4096 bytes: the Kubernetes termination-message
limit), written to ``$FTR_TERMINATION_LOG`` (default ``/dev/termination-log``; the default is only
used when the file exists, which Kubernetes ensures in a container) and printed as the last line on
stdout. Exit code 0 whenever the check ran, whatever it found; 64 for a usage error; 70 when the
script itself broke (it then still tries to write ``{"schema": 1, "tool": ..., "fatal": "..."}``).

Schema 1 (camelCase, as stored in ``status.preflight``)::

    {
      "schema": 1,                          # this layout; bumped on incompatible change
      "tool": "ftrollout-preflight",
      "python": {
        "vv": str,                          # what `python -VV` prints: "Python " + sys.version
        "version": str,                     # platform.python_version(), e.g. "3.14.0"
        "implementation": str,              # sys.implementation.name, e.g. "cpython"
        "freeThreadingBuild": bool,         # sysconfig.get_config_var("Py_GIL_DISABLED") == 1
        "versionSaysFreeThreading": bool,   # "free-threading build" appears in sys.version
        "gilEnabledAtStart": bool,          # sys._is_gil_enabled() before the imports (True
                                            # where it does not exist: GIL builds)
        "gilEnabledAtEnd": bool,            # the same after all imports
        "gilOverride": str | null,          # -X gil=... or else $PYTHON_GIL, when set
        "platform": str                     # sysconfig.get_platform(), e.g. "linux-x86_64"
      },
      "modules": [                          # one entry per requested module, in order
        {
          "name": str,                      # as requested
          "imported": bool,                 # import_module(name) succeeded
          "error": null | {"type": str,     # exception class name, e.g. "ModuleNotFoundError"
                           "message": str}, # str(exception), truncated to fit the size limit
          "version": str | null,            # importlib.metadata version of its distribution,
                                            # else module.__version__, else the Python version
                                            # for a stdlib module
          "distribution": str | null,       # the distribution the version comes from
          "versionSource": "metadata" | "__version__" | "stdlib" | null,
          "gilEnabled": bool,               # GIL state right after this import
          "gilReenabled": bool,             # GIL was off before this import and on after it
          "gilWarning": bool,               # the import emitted the interpreter's RuntimeWarning
                                            # "The global interpreter lock (GIL) has been enabled
                                            # to load module '...'"
          "gilWarningModules": [str],       # the module names that warning named (the extension
                                            # responsible, e.g. "numpy._core._multiarray_umath")
          "seconds": float                  # import wall time (dropped first when over the limit)
        }
      ],
      "truncated": bool,                    # something was shortened or dropped to fit 4096 bytes
      "omittedModules": int                 # entries dropped to fit (requested modules absent
                                            # from "modules"; entries that found nothing wrong
                                            # are dropped first, from the end): not verified
    }
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import re
import sys
import sysconfig
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

SCHEMA = 1
TOOL = "ftrollout-preflight"
MAX_BYTES = 4096
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
EXIT_OK = 0
EXIT_USAGE = 64
EXIT_SOFTWARE = 70

# Same text as the probe's (kept separate: each shipped file is self-contained).
GIL_WARNING_RE = re.compile(
    r"The global interpreter lock \(GIL\) has been enabled to load module '(?P<module>.*)', "
    r"which has not declared",
    re.DOTALL,
)

USAGE = "usage: python ftrollout_preflight.py MODULE [MODULE ...]\n"


def gil_enabled() -> bool:
    reader = getattr(sys, "_is_gil_enabled", None)
    if reader is None:
        return True
    try:
        return bool(reader())
    except Exception:
        return True


def freethreading_build() -> bool:
    try:
        return bool(sysconfig.get_config_var("Py_GIL_DISABLED") == 1)
    except Exception:
        return False


def vv_string() -> str:
    """What ``python -VV`` prints: ``"Python " + Py_GetVersion()`` (= ``sys.version``)."""
    return "Python " + sys.version


def gil_override() -> str | None:
    xoption = getattr(sys, "_xoptions", {}).get("gil")
    if xoption is not None:
        return f"-X gil={xoption}"
    env = os.environ.get("PYTHON_GIL")
    if env is not None:
        return f"PYTHON_GIL={env}"
    return None


def python_report(gil_at_start: bool) -> dict[str, Any]:
    return {
        "vv": vv_string(),
        "version": platform.python_version(),
        "implementation": sys.implementation.name,
        "freeThreadingBuild": freethreading_build(),
        "versionSaysFreeThreading": "free-threading build" in sys.version,
        "gilEnabledAtStart": gil_at_start,
        "gilEnabledAtEnd": gil_enabled(),
        "gilOverride": gil_override(),
        "platform": sysconfig.get_platform(),
    }


# ---------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------

_PACKAGES: dict[str, list[str]] | None = None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _packages_distributions() -> dict[str, list[str]]:
    global _PACKAGES
    if _PACKAGES is None:
        finder = getattr(importlib.metadata, "packages_distributions", None)  # 3.10+
        try:
            _PACKAGES = dict(finder()) if finder is not None else {}
        except Exception:
            _PACKAGES = {}
    return _PACKAGES


def _owns(distribution: str, module: str) -> bool:
    """Does ``distribution`` install files for the (dotted) ``module``?"""
    try:
        files = importlib.metadata.files(distribution) or []
    except Exception:
        return False
    parts = module.split(".")
    for path in files:
        path_parts = str(path).replace("\\", "/").split("/")
        if path_parts[: len(parts)] == parts:
            return True
        if len(parts) == 1 and path_parts[0].split(".")[0] == parts[0]:
            return True  # a top-level single-file module or extension (orjson.cpython-...so)
    return False


def _is_stdlib(top: str, module: Any = None) -> bool:
    names = getattr(sys, "stdlib_module_names", None)  # 3.10+
    if names is not None:
        return top in names
    if top in sys.builtin_module_names:
        return True
    origin = getattr(sys.modules.get(top, module), "__file__", None)
    if not isinstance(origin, str):
        return False
    origin = os.path.realpath(origin)
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        root = os.path.realpath(paths.get(key, "") or "/nonexistent")
        if origin.startswith(root + os.sep) and "site-packages" not in origin:
            return True
    return False


def distribution_candidates(name: str) -> list[str]:
    """Distributions that may provide the import ``name``, most likely first."""
    top = name.split(".")[0]
    found = list(dict.fromkeys(_packages_distributions().get(top, [])))
    if len(found) > 1:
        wanted = {_normalize(name), _normalize(top)}
        exact = [dist for dist in found if _normalize(dist) in wanted]
        owners = [dist for dist in found if dist not in exact and _owns(dist, name)]
        found = exact + owners + [dist for dist in found if dist not in exact + owners]
    if top not in found:
        found.append(top)  # Python < 3.10, or metadata without top_level information
    return found


def module_version(name: str, module: Any) -> tuple[str | None, str | None, str | None]:
    """(version, distribution, source) of an imported module."""
    top = name.split(".")[0]
    if _is_stdlib(top, module):
        return platform.python_version(), None, "stdlib"
    for dist in distribution_candidates(name):
        try:
            return importlib.metadata.version(dist), dist, "metadata"
        except Exception:
            continue
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version, None, "__version__"
    return None, None, None


# ---------------------------------------------------------------------------------------------
# Imports
# ---------------------------------------------------------------------------------------------


class _StdoutToStderr:
    """Point file descriptor 1 (and sys.stdout) at stderr while modules are imported."""

    def __enter__(self) -> _StdoutToStderr:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        self._saved_fd: int | None = None
        try:
            self._saved_fd = os.dup(1)
            os.dup2(2, 1)
        except OSError:
            self._saved_fd = None
        self._saved_stdout = sys.stdout
        sys.stdout = sys.stderr
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        sys.stdout = self._saved_stdout
        if self._saved_fd is not None:
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)


def check_module(name: str) -> dict[str, Any]:
    """Import ``name`` and describe the result (never raises for the module's own errors)."""
    before = gil_enabled()
    started = time.monotonic()
    module: Any = None
    error: dict[str, str] | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module = importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            error = {"type": type(exc).__name__, "message": str(exc)}
    seconds = time.monotonic() - started
    after = gil_enabled()
    named: list[str] = []
    for item in caught:
        if issubclass(item.category, RuntimeWarning):
            match = GIL_WARNING_RE.search(str(item.message))
            if match is not None and match.group("module") not in named:
                named.append(match.group("module"))
    version: str | None = None
    distribution: str | None = None
    source: str | None = None
    if error is None:
        with contextlib.suppress(Exception):
            version, distribution, source = module_version(name, module)
    return {
        "name": name,
        "imported": error is None,
        "error": error,
        "version": version,
        "distribution": distribution,
        "versionSource": source,
        "gilEnabled": after,
        "gilReenabled": (not before) and after,
        "gilWarning": bool(named),
        "gilWarningModules": named,
        "seconds": round(seconds, 3),
    }


def build_report(modules: Sequence[str]) -> dict[str, Any]:
    gil_at_start = gil_enabled()
    results = []
    with _StdoutToStderr():
        for name in modules:
            results.append(check_module(name))
    return {
        "schema": SCHEMA,
        "tool": TOOL,
        "python": python_report(gil_at_start),
        "modules": results,
        "truncated": False,
        "omittedModules": 0,
    }


# ---------------------------------------------------------------------------------------------
# Size limit
# ---------------------------------------------------------------------------------------------


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _size(document: dict[str, Any]) -> int:
    return len(_dumps(document).encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 3)] + "..."


def fit(report: dict[str, Any], limit: int = MAX_BYTES) -> str:
    """Serialize ``report`` within ``limit`` bytes, shortening the least useful parts first."""
    text = _dumps(report)
    if len(text.encode("utf-8")) <= limit:
        return text
    doc = json.loads(text)
    doc["truncated"] = True
    modules: list[dict[str, Any]] = doc["modules"]

    def shorten_errors(length: int) -> None:
        for entry in modules:
            if entry.get("error"):
                entry["error"]["message"] = _clip(entry["error"]["message"], length)

    def drop(key: str) -> None:
        for entry in modules:
            entry.pop(key, None)

    def clip_names(length: int) -> None:
        for entry in modules:
            entry["name"] = _clip(entry["name"], length)
            entry["gilWarningModules"] = [
                _clip(module, length) for module in entry.get("gilWarningModules", [])[:2]
            ]
            if entry.get("error"):
                entry["error"]["type"] = _clip(entry["error"]["type"], length)
            for key in ("version", "distribution"):
                if isinstance(entry.get(key), str):
                    entry[key] = _clip(entry[key], length)

    steps: list[Callable[[], None]] = [
        lambda: shorten_errors(300),
        lambda: shorten_errors(120),
        lambda: drop("seconds"),
        lambda: shorten_errors(60),
        lambda: drop("distribution"),
        lambda: clip_names(100),
        lambda: shorten_errors(0),
    ]
    for step in steps:
        step()
        if _size(doc) <= limit:
            return _dumps(doc)

    def clean(entry: dict[str, Any]) -> bool:
        return (
            bool(entry.get("imported"))
            and not entry.get("gilWarning")
            and not (entry.get("gilReenabled"))
        )

    # Drop whole entries from the end: first those that found nothing, then any. Names are never
    # clipped below 100 characters, so the operator can tell which requested modules are missing.
    for droppable in (clean, lambda entry: True):
        index = len(modules) - 1
        while index >= 0 and _size(doc) > limit:
            if droppable(modules[index]):
                del modules[index]
                doc["omittedModules"] = int(doc.get("omittedModules", 0)) + 1
            index -= 1
    if _size(doc) > limit:
        doc["python"]["vv"] = _clip(doc["python"]["vv"], 200)
    return _dumps(doc)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parse_modules(argv: Sequence[str]) -> list[str]:
    names: list[str] = []
    for arg in argv:
        for name in re.split(r"[,\s]+", arg):
            if name and name not in names:
                names.append(name)
    return names


def emit(text: str) -> None:
    """Write the document to the termination-message file (if any) and to stdout."""
    explicit = os.environ.get("FTR_TERMINATION_LOG")
    path = explicit or DEFAULT_TERMINATION_LOG
    if explicit or os.path.exists(path):
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            sys.stderr.write(f"{TOOL}: cannot write {path}: {exc} (stdout only)\n")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return EXIT_OK
    if any(arg.startswith("-") for arg in args):
        sys.stderr.write(USAGE)
        return EXIT_USAGE
    try:
        emit(fit(build_report(parse_modules(args))))
    except Exception as exc:
        traceback.print_exc()
        fatal = {
            "schema": SCHEMA,
            "tool": TOOL,
            "fatal": _clip(f"{type(exc).__name__}: {exc}", 1000),
        }
        with contextlib.suppress(Exception):
            emit(_dumps(fatal))
        return EXIT_SOFTWARE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
