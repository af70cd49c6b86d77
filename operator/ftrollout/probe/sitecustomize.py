"""ftrollout: start the runtime probe in every Python process that has this directory on PYTHONPATH.

Shipped as ConfigMap key ``sitecustomize.py`` next to ``ftrollout_probe.py``; the ``site`` module
imports it at interpreter start-up (unless Python runs with ``-S``, ``-I`` or ``-E``). Set
``FTR_PROBE_DISABLED=1`` to start nothing. Stdlib only, CPython >= 3.9, never raises.

An image may carry its own ``sitecustomize`` further on ``sys.path`` (e.g. in site-packages): ours
shadows it, so after starting the probe we look for the next one on ``sys.path`` and execute it
too, as ``site`` would have (errors are reported the way ``site`` reports them, then ignored).
"""

from __future__ import annotations

import contextlib
import os as _os
import sys as _sys

# What the operator writes after the mount when the app's PYTHONPATH comes from valueFrom/envFrom
# (``<mount>:$(FTR_APP_PYTHONPATH)`` / ``<mount>:$(PYTHONPATH)``). Kubelet expands a reference to
# a defined variable and leaves an undefined one as this literal text.
_FTR_UNEXPANDED = ("$(FTR_APP_PYTHONPATH)", "$(PYTHONPATH)")


def _ftrollout_drop_unexpanded() -> None:
    """Remove the unexpanded references from ``sys.path`` and from ``PYTHONPATH`` (children)."""
    try:
        _sys.path[:] = [
            entry for entry in _sys.path if _os.path.basename(entry) not in _FTR_UNEXPANDED
        ]
        raw = _os.environ.get("PYTHONPATH")
        if raw:
            parts = [part for part in raw.split(_os.pathsep) if part not in _FTR_UNEXPANDED]
            if len(parts) != len(raw.split(_os.pathsep)):
                _os.environ["PYTHONPATH"] = _os.pathsep.join(parts)
    except Exception:
        pass


def _ftrollout_start_probe() -> None:
    if _os.environ.get("FTR_PROBE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    try:
        # The flat ConfigMap layout (in pods) first, then the package layout (this repository).
        try:
            import ftrollout_probe as core  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            from ftrollout.probe import core
        core.start_from_env()
    except Exception as exc:
        with contextlib.suppress(Exception):
            _sys.stderr.write(f"ftrollout-probe: not started: {type(exc).__name__}: {exc}\n")


def _ftrollout_chain_sitecustomize() -> None:
    """Execute the next ``sitecustomize`` on ``sys.path`` after this file's directory, if any."""
    if __name__ != "sitecustomize":
        return
    try:
        import importlib.machinery
        import importlib.util

        here = _os.path.dirname(_os.path.abspath(__file__))
        entries = [_os.path.abspath(entry or _os.getcwd()) for entry in _sys.path]
        if here not in entries:
            return
        rest = _sys.path[entries.index(here) + 1 :]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
        if spec is None or spec.loader is None or spec.origin == __file__:
            return
        module = importlib.util.module_from_spec(spec)
        _sys.modules["_ftrollout_chained_sitecustomize"] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        if _sys.flags.verbose:
            _sys.excepthook(*_sys.exc_info())
        else:
            _sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
                f"{type(exc).__name__}: {exc}\n"
            )


_ftrollout_drop_unexpanded()
_ftrollout_start_probe()
_ftrollout_chain_sitecustomize()
