"""The runtime probe and the dependency-gate preflight, shipped into application pods.

Everything in this directory is stdlib-only and runs on CPython >= 3.9. The operator ships the files
in :data:`PROBE_FILES` as one ConfigMap (keys flat, as listed), mounts it read-only into the
free-threaded twin's container and prepends the mount path to ``PYTHONPATH``; ``sitecustomize``
then starts the probe (``ftrollout_probe``) in every Python process of that container. The
dependency-gate Job mounts the same ConfigMap and runs ``python <mount>/ftrollout_preflight.py
<module>...``.

This ``__init__`` is not shipped; it only tells the operator what to ship and re-exports the
probe API for code that runs inside this repository.
"""

from __future__ import annotations

from pathlib import Path

from .core import (
    CONTENT_TYPE,
    DEFAULT_ADDR,
    DEFAULT_PORT,
    MetricsSnapshot,
    Probe,
    current,
    escape_label_value,
    freethreading_build,
    gil_enabled,
    parse_gil_warning,
    record_incident,
    render_metrics,
    runtime_identity,
    start,
    start_from_env,
)

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_ADDR",
    "DEFAULT_MOUNT_PATH",
    "DEFAULT_PORT",
    "PREFLIGHT_KEY",
    "PROBE_FILES",
    "MetricsSnapshot",
    "Probe",
    "current",
    "escape_label_value",
    "freethreading_build",
    "gil_enabled",
    "parse_gil_warning",
    "probe_configmap_data",
    "record_incident",
    "render_metrics",
    "runtime_identity",
    "start",
    "start_from_env",
]

_HERE = Path(__file__).resolve().parent

#: ConfigMap key -> source file in this package. The keys are the file names in the mounted dir:
#: ``sitecustomize.py`` imports ``ftrollout_probe`` by that top-level name.
PROBE_FILES: dict[str, Path] = {
    "sitecustomize.py": _HERE / "sitecustomize.py",
    "ftrollout_probe.py": _HERE / "core.py",
    "ftrollout_preflight.py": _HERE / "preflight.py",
}

#: The key of the dependency-gate script (``python <mount>/ftrollout_preflight.py numpy orjson``).
PREFLIGHT_KEY = "ftrollout_preflight.py"

#: Suggested mount path of the ConfigMap (read-only); prepend it to ``PYTHONPATH``.
DEFAULT_MOUNT_PATH = "/opt/ftrollout-probe"


def probe_configmap_data() -> dict[str, str]:
    """The ``data`` of the probe ConfigMap: key -> file text (stable, so it can be hashed)."""
    return {key: path.read_text(encoding="utf-8") for key, path in sorted(PROBE_FILES.items())}
