"""Release artifacts built outside the image: `make plugin` and `make chart`.

`make plugin`: the kubectl plugin as one executable file, `dist/kubectl-ftr`, its krew archive
`dist/kubectl-ftr_<version>_<os>_<arch>.tar.gz` and the krew manifest `dist/ftr.yaml` rendered
from `plugins/krew/ftr.yaml.tmpl`. `make chart`: `helm lint` + `helm package` into `dist/`.

The plugin is a stdlib `zipapp` holding the `ftrollout` model/plan/cli packages and the
plugin's dependencies (`ftrollout[cli]`: pydantic, PyYAML, kubernetes, rich and what they pull
in), installed with `pip install --target`. Why not shiv or pex: both would be one more build
dependency for what is ~25 lines here (the `__main__` below), and both do the same thing.

pydantic-core is a compiled extension and Python cannot import one from inside a zip, so the
archive's `__main__` unpacks its library folder once into a cache directory keyed by the
archive's content hash (`$XDG_CACHE_HOME/kubectl-ftr/<hash>`, as shiv does) and runs from
there. The result is platform-specific: built for the Python minor version and OS/CPU pip
installed for (by default the interpreter building it; `--platform`/`--python-version` select
another, e.g. `manylinux2014_aarch64` and `3.12`, from binary wheels only).
"""

from __future__ import annotations

import argparse
import hashlib
import platform as host
import shutil
import string
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The layers the plugin imports (lint-imports keeps `cli` off `shell`, which needs kopf).
PACKAGES = ("model", "plan", "cli")

BOOTSTRAP = '''\
"""kubectl-ftr, single-file build (see dev/ftrollout_dev/plugin_build.py)."""
import hashlib, os, sys, zipfile

def _unpacked():
    archive = os.path.abspath(os.path.dirname(__file__))
    with open(archive, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    target = os.path.join(base, "kubectl-ftr", digest)
    if not os.path.isdir(target):
        tmp = target + ".%d.tmp" % os.getpid()
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp, [n for n in z.namelist() if n.startswith("lib/")])
        try:
            os.replace(tmp, target)
        except OSError:  # another run unpacked it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(target, "lib")

sys.path.insert(0, _unpacked())
sys.argv[0] = "kubectl-ftr"
from ftrollout.cli.plugin import main
sys.exit(main())
'''


def requirements() -> list[str]:
    """The base dependencies plus the `cli` extra, as pyproject.toml declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["cli"]]


def build_plugin(
    out: Path,
    *,
    python: str = sys.executable,
    platform: str | None = None,
    python_version: str | None = None,
) -> Path:
    with tempfile.TemporaryDirectory(prefix="kubectl-ftr-") as tmp:
        stage = Path(tmp) / "app"
        lib = stage / "lib"
        cmd = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        cmd += ["--no-compile", "--target", str(lib)]
        if platform or python_version:
            cmd += ["--only-binary=:all:"]
            cmd += ["--platform", platform] if platform else []
            cmd += ["--python-version", python_version] if python_version else []
        subprocess.run([*cmd, *requirements()], check=True, timeout=900)
        src = ROOT / "operator" / "ftrollout"
        dst = lib / "ftrollout"
        dst.mkdir(parents=True)
        shutil.copy2(src / "__init__.py", dst / "__init__.py")
        for pkg in PACKAGES:
            shutil.copytree(src / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        for junk in lib.glob("bin"):
            shutil.rmtree(junk)
        (stage / "__main__.py").write_text(BOOTSTRAP)
        out.parent.mkdir(parents=True, exist_ok=True)
        # The compiled pydantic-core only loads in the Python minor version it was built for:
        # naming it in the shebang makes a mismatch "python3.X: not found", not an ImportError.
        minor = python_version or _python_minor(python)
        zipapp.create_archive(
            stage, out, interpreter=f"/usr/bin/env python{minor}", compressed=True
        )
    return out


def _python_minor(python: str) -> str:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return subprocess.run(
        [python, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def krew_archive(plugin: Path, os_name: str, arch: str) -> Path:
    """The tar.gz krew installs from (krew takes archives, not bare files)."""
    out = plugin.parent / f"kubectl-ftr_{version()}_{os_name}_{arch}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(plugin, arcname="kubectl-ftr")
    return out


def render_krew(archive: Path, uri_base: str, os_name: str, arch: str) -> str:
    template = string.Template((ROOT / "plugins" / "krew" / "ftr.yaml.tmpl").read_text())
    return template.substitute(
        VERSION=f"v{version()}",
        OS=os_name,
        ARCH=arch,
        URI=f"{uri_base.rstrip('/')}/{archive.name}",
        SHA256=hashlib.sha256(archive.read_bytes()).hexdigest(),
    )


def package_chart(helm: Path, out_dir: Path) -> Path:
    chart = ROOT / "charts" / "ftrollout"
    subprocess.run([str(helm), "lint", str(chart)], check=True, capture_output=True, text=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(helm), "package", str(chart), "--destination", str(out_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    (tgz,) = out_dir.glob("ftrollout-*.tgz")
    return tgz


def _host_arch() -> str:
    machine = host.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build ftrollout's release artifacts.")
    sub = parser.add_subparsers(dest="what", required=True)
    plugin = sub.add_parser("plugin", help="dist/kubectl-ftr, its krew archive and manifest")
    plugin.add_argument("-o", "--output", type=Path, default=ROOT / "dist" / "kubectl-ftr")
    plugin.add_argument("--platform", help="pip --platform, e.g. manylinux2014_aarch64")
    plugin.add_argument("--python-version", help="pip --python-version, e.g. 3.12")
    plugin.add_argument("--os", default=host.system().lower(), help="krew os label")
    plugin.add_argument("--arch", default=_host_arch(), help="krew arch label")
    plugin.add_argument(
        "--uri-base",
        default="https://REPLACE-WITH-YOUR-RELEASES-URL",
        help="where the archive will be downloadable from (the krew manifest's uri)",
    )
    chart = sub.add_parser("chart", help="helm lint + helm package into dist/")
    chart.add_argument("--helm", type=Path, help="helm binary (default: the dev tooling's)")
    chart.add_argument("-d", "--destination", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    if args.what == "chart":
        helm = args.helm
        if helm is None:
            from ftrollout_dev.localcluster import Binaries

            helm = Binaries.locate().helm
        print(f"wrote {package_chart(Path(str(helm)), args.destination)}")
        return 0
    out = build_plugin(args.output, platform=args.platform, python_version=args.python_version)
    archive = krew_archive(out, args.os, args.arch)
    manifest = out.parent / "ftr.yaml"
    manifest.write_text(render_krew(archive, args.uri_base, args.os, args.arch))
    for path in (out, archive):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB, sha256 {digest})")
    print(f"wrote {manifest} (krew manifest; uri under {args.uri_base})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
