"""Peer controllers for the side-by-side benchmark (`benchmarks/peers/`): Argo Rollouts, Flagger.

Each peer is built from its Go module like the control-plane binaries in
:mod:`ftrollout_dev.localcluster`, through a small wrapper module (one shared helper,
:func:`build_peer`). A consumer does not inherit a module's ``replace`` directives, so those
of the upstream go.mod are copied into the wrapper module verbatim:

- Argo Rollouts v1.10.2 pins the Kubernetes libraries with ``replace`` directives, and declares
  ``go 1.26.10``, newer than the toolchain some machines ship, so its build runs under
  ``GOTOOLCHAIN`` (fetched through the Go module proxy, like any module). CRDs:
  ``manifests/crds/*-crd.yaml``.
- Flagger v1.36.1 (``cmd/flagger``) has no ``replace`` directive and declares ``go 1.21``, so
  the local toolchain builds it (``GOTOOLCHAIN=local``). CRDs: ``artifacts/flagger/crd.yaml``
  (Canary, MetricTemplate, AlertProvider in one file).

Binaries and CRDs are cached together in ``~/.cache/ftrollout/bin/<peer>-v<version>/``; the
build log is ``~/.cache/ftrollout/logs/<peer>-v<version>.log``.

CLI: ``ftrollout-dev peers build [--peer argo-rollouts|flagger|all] [--rebuild]`` and
``ftrollout-dev peers where``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ftrollout_dev.localcluster import (
    BuildError,
    Log,
    NotBuiltError,
    _default_log,
    _fmt_duration,
    _go_env,
    _run_logged,
    cache_dir,
    find_go,
    replace_directives,
)

ARGO_ROLLOUTS_VERSION = "1.10.2"
ARGO_ROLLOUTS_MODULE = "github.com/argoproj/argo-rollouts"
ARGO_ROLLOUTS_PACKAGE = f"{ARGO_ROLLOUTS_MODULE}/cmd/rollouts-controller"
# v1.10.2's go.mod says `go 1.26.10`; any newer release toolchain builds it.
ARGO_GOTOOLCHAIN = "go1.27.3"

FLAGGER_VERSION = "1.36.1"
FLAGGER_MODULE = "github.com/fluxcd/flagger"
FLAGGER_PACKAGE = f"{FLAGGER_MODULE}/cmd/flagger"


@dataclass(frozen=True)
class GoPeer:
    """A peer controller built from a Go module: where its binary and CRDs live, how to build it."""

    name: str
    version: str
    module: str
    package: str
    binary: str
    # The wrapper module's `go` directive: the upstream one (a lower one would be raised by
    # `go get` anyway, and says what the build needs).
    go_directive: str
    # None: the local toolchain (GOTOOLCHAIN=local).
    toolchain: str | None
    # CRD files, relative to the module root (globs allowed).
    crd_sources: tuple[str, ...]
    ldflags: str = "-s -w"
    # Upstream pins its dependencies with replace directives: none found is an error (a format
    # change would otherwise build against the wrong Kubernetes libraries).
    needs_replaces: bool = False
    build_estimate: str = "a few minutes"

    @property
    def key(self) -> str:
        return f"{self.name}-v{self.version}"

    def bin_dir(self, root: Path | None = None) -> Path:
        return (root or cache_dir()) / "bin" / self.key

    def controller(self, root: Path | None = None) -> Path:
        return self.bin_dir(root) / self.binary

    def crd_dir(self, root: Path | None = None) -> Path:
        return self.bin_dir(root) / "crds"

    def is_built(self, root: Path | None = None) -> bool:
        d = self.bin_dir(root)
        exe = self.controller(root)
        return (
            (d / ".complete").is_file()
            and exe.is_file()
            and os.access(exe, os.X_OK)
            and any(self.crd_dir(root).glob("*.yaml"))
        )

    def require(self, root: Path | None = None) -> tuple[Path, Path]:
        if not self.is_built(root):
            raise NotBuiltError(
                f"{self.name} v{self.version} is not built: run "
                f"`ftrollout-dev peers build --peer {self.name}` "
                f"({self.build_estimate} on an idle machine; cache: {self.bin_dir(root)})"
            )
        return self.controller(root), self.crd_dir(root)


ARGO_ROLLOUTS = GoPeer(
    name="argo-rollouts",
    version=ARGO_ROLLOUTS_VERSION,
    module=ARGO_ROLLOUTS_MODULE,
    package=ARGO_ROLLOUTS_PACKAGE,
    binary="rollouts-controller",
    go_directive="1.26.10",
    toolchain=ARGO_GOTOOLCHAIN,
    crd_sources=("manifests/crds/*-crd.yaml",),
    ldflags=f"-s -w -X {ARGO_ROLLOUTS_MODULE}/utils/version.version={ARGO_ROLLOUTS_VERSION}",
    needs_replaces=True,
    build_estimate="about 6 minutes",
)


FLAGGER = GoPeer(
    name="flagger",
    version=FLAGGER_VERSION,
    module=FLAGGER_MODULE,
    package=FLAGGER_PACKAGE,
    binary="flagger",
    go_directive="1.21",
    toolchain=None,
    # pkg/version.VERSION is a constant in the source; no -X needed.
    crd_sources=("artifacts/flagger/crd.yaml",),
    build_estimate="about 4 minutes",
)


def peers() -> dict[str, GoPeer]:
    return {p.name: p for p in (ARGO_ROLLOUTS, FLAGGER)}


def copied_replaces(gomod: str) -> str:
    """The module-to-module ``replace`` directives of a go.mod, as a replace block.

    Local-directory replaces (``=> ./x``) cannot be followed by a consumer and are dropped.
    """
    lines = [
        line
        for line, _, right in replace_directives(gomod)
        if not right.startswith(("./", "../")) and len(right.split()) == 2
    ]
    if not lines:
        return ""
    body = "\n".join(f"\t{s}" for s in lines)
    return f"replace (\n{body}\n)\n"


def wrapper_gomod(peer: GoPeer, replaces: str) -> str:
    return (
        f"// Generated by ftrollout_dev.peers: builds {peer.module} v{peer.version}.\n"
        f"module ftrollout.local/build/{peer.name}\n\ngo {peer.go_directive}\n\n"
        f"require {peer.module} v{peer.version}\n\n{replaces}"
    )


def _peer_env(peer: GoPeer) -> tuple[Path, dict[str, str]]:
    go = find_go()
    if go is None:
        raise BuildError(peer.key, "Go toolchain not found (go on PATH or /usr/local/go)")
    env = _go_env(go)
    env["GOTOOLCHAIN"] = peer.toolchain or "local"
    return go, env


def build_peer(
    peer: GoPeer,
    *,
    root: Path | None = None,
    log: Log = _default_log,
    force: bool = False,
) -> GoPeer:
    root = root or cache_dir()
    if peer.is_built(root) and not force:
        log(f"    cached: {peer.bin_dir(root)}")
        return peer
    go, env = _peer_env(peer)
    work = root / "src" / peer.key
    log_file = root / "logs" / f"{peer.key}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    for f in ("go.mod", "go.sum"):
        (work / f).unlink(missing_ok=True)
    t0 = time.monotonic()
    log(f"==> [1/4] {peer.module}@v{peer.version}: go.mod (GOTOOLCHAIN={env['GOTOOLCHAIN']})")
    proc = subprocess.run(
        [str(go), "mod", "download", "-json", f"{peer.module}@v{peer.version}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    with log_file.open("a") as out:
        out.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BuildError(
            f"{peer.key}: go mod download", "failed", (proc.stdout + proc.stderr)[-3000:]
        )
    info = json.loads(proc.stdout)
    replaces = copied_replaces(Path(info["GoMod"]).read_text())
    if peer.needs_replaces and not replaces:
        raise BuildError(f"{peer.key}: go.mod", f"no replace directives in {info['GoMod']}")
    n_replaces = max(replaces.count("\n") - 2, 0)
    log(f"    {n_replaces} replace directives copied from {info['GoMod']}")
    (work / "go.mod").write_text(wrapper_gomod(peer, replaces))
    log(f"==> [2/4] resolving modules (log: {log_file})")
    _run_logged(
        f"{peer.key}: go get",
        [str(go), "get", f"{peer.package}@v{peer.version}"],
        cwd=work,
        env=env,
        log_file=log_file,
        log=log,
    )
    final = peer.bin_dir(root)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"==> [3/4] compiling {peer.binary} (CGO_ENABLED=0, -trimpath; {peer.build_estimate} idle)")
    t_build = time.monotonic()
    _run_logged(
        f"{peer.key}: go build",
        [
            str(go),
            "build",
            "-v",
            "-ldflags",
            peer.ldflags,
            "-o",
            str(tmp / peer.binary),
            peer.package,
        ],
        cwd=work,
        env=env,
        log_file=log_file,
        log=log,
        count_lines=True,
    )
    compile_s = time.monotonic() - t_build
    log(f"==> [4/4] copying CRDs ({', '.join(peer.crd_sources)})")
    module_dir = Path(info["Dir"])
    (tmp / "crds").mkdir()
    copied = 0
    for pattern in peer.crd_sources:
        for crd in sorted(module_dir.glob(pattern)):
            shutil.copyfile(crd, tmp / "crds" / crd.name)
            copied += 1
    if not copied:
        raise BuildError(f"{peer.key}: crds", f"no {peer.crd_sources} in {module_dir}")
    total_s = time.monotonic() - t0
    (tmp / ".complete").write_text(
        json.dumps(
            {
                "module": peer.module,
                "version": peer.version,
                "toolchain": env["GOTOOLCHAIN"],
                "built": time.time(),
                "build_seconds": round(total_s, 1),
                "compile_seconds": round(compile_s, 1),
                "nice": os.nice(0),
            }
        )
        + "\n"
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    log(
        f"==> {peer.name} v{peer.version} ready in {_fmt_duration(total_s)} "
        f"(compile {_fmt_duration(compile_s)}, nice {os.nice(0)}): {final}"
    )
    return peer


def build_argo_rollouts(
    peer: GoPeer | None = None,
    *,
    root: Path | None = None,
    log: Log = _default_log,
    force: bool = False,
) -> GoPeer:
    return build_peer(peer or ARGO_ROLLOUTS, root=root, log=log, force=force)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("build", "where"),
        help="build: build the peer controllers (cached); where: print their paths",
    )
    parser.add_argument(
        "--peer",
        choices=(*peers(), "all"),
        default="argo-rollouts",
        help="which peer (default argo-rollouts, the one `make bench-peers` needs)",
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")


def cli_main(args: argparse.Namespace) -> int:
    chosen = list(peers().values()) if args.peer == "all" else [peers()[args.peer]]
    status = 0
    for peer in chosen:
        try:
            if args.action == "build":
                build_peer(peer, force=bool(args.rebuild))
                continue
            exe, crds = peer.require()
            print(f"{peer.name}: controller: {exe}\n{peer.name}: crds: {crds}")
        except (BuildError, NotBuiltError) as exc:
            print(f"ftrollout-dev peers {args.action}: {exc}", file=sys.stderr)
            status = 1
    return status
