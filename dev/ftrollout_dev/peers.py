"""Peer controllers for the side-by-side benchmark (`benchmarks/peers/`): Argo Rollouts.

The Argo Rollouts controller is built from its Go module like the control-plane binaries in
:mod:`ftrollout_dev.localcluster`, through a small wrapper module. Its go.mod pins the
Kubernetes libraries with ``replace`` directives (a consumer does not inherit them), so they
are copied into the wrapper module verbatim. v1.10.2 declares ``go 1.26.10``, newer than the
toolchain some machines ship, so the build runs under ``GOTOOLCHAIN`` (fetched through the Go
module proxy, like any module). The CRDs come from the same module (``manifests/crds/``) and
are kept next to the binary in the cache
(``~/.cache/ftrollout/bin/argo-rollouts-v<version>/``).

CLI: ``ftrollout-dev peers build [--rebuild]`` and ``ftrollout-dev peers where``.
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


@dataclass(frozen=True)
class ArgoRollouts:
    """Where the built controller and its CRDs live."""

    version: str = ARGO_ROLLOUTS_VERSION

    @property
    def key(self) -> str:
        return f"argo-rollouts-v{self.version}"

    def bin_dir(self, root: Path | None = None) -> Path:
        return (root or cache_dir()) / "bin" / self.key

    def controller(self, root: Path | None = None) -> Path:
        return self.bin_dir(root) / "rollouts-controller"

    def crd_dir(self, root: Path | None = None) -> Path:
        return self.bin_dir(root) / "crds"

    def is_built(self, root: Path | None = None) -> bool:
        d = self.bin_dir(root)
        exe = self.controller(root)
        return (
            (d / ".complete").is_file()
            and exe.is_file()
            and os.access(exe, os.X_OK)
            and any(self.crd_dir(root).glob("*-crd.yaml"))
        )

    def require(self, root: Path | None = None) -> tuple[Path, Path]:
        if not self.is_built(root):
            raise NotBuiltError(
                f"Argo Rollouts v{self.version} is not built: run `ftrollout-dev peers build` "
                f"(about 6 minutes on an idle machine; cache: {self.bin_dir(root)})"
            )
        return self.controller(root), self.crd_dir(root)


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


def _peer_env() -> tuple[Path, dict[str, str]]:
    go = find_go()
    if go is None:
        raise BuildError("argo-rollouts", "Go toolchain not found (go on PATH or /usr/local/go)")
    env = _go_env(go)
    env["GOTOOLCHAIN"] = ARGO_GOTOOLCHAIN
    return go, env


def build_argo_rollouts(
    peer: ArgoRollouts | None = None,
    *,
    root: Path | None = None,
    log: Log = _default_log,
    force: bool = False,
) -> ArgoRollouts:
    peer = peer or ArgoRollouts()
    root = root or cache_dir()
    if peer.is_built(root) and not force:
        log(f"    cached: {peer.bin_dir(root)}")
        return peer
    go, env = _peer_env()
    work = root / "src" / peer.key
    log_file = root / "logs" / f"{peer.key}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    for f in ("go.mod", "go.sum"):
        (work / f).unlink(missing_ok=True)
    t0 = time.monotonic()
    log(
        f"==> [1/4] {ARGO_ROLLOUTS_MODULE}@v{peer.version}: go.mod (GOTOOLCHAIN={ARGO_GOTOOLCHAIN})"
    )
    proc = subprocess.run(
        [str(go), "mod", "download", "-json", f"{ARGO_ROLLOUTS_MODULE}@v{peer.version}"],
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
    if not replaces:
        raise BuildError(f"{peer.key}: go.mod", f"no replace directives in {info['GoMod']}")
    log(f"    {replaces.count(chr(10)) - 2} replace directives copied from {info['GoMod']}")
    (work / "go.mod").write_text(
        f"// Generated by ftrollout_dev.peers: builds {ARGO_ROLLOUTS_MODULE} v{peer.version}.\n"
        f"module ftrollout.local/build/argo-rollouts\n\ngo 1.26.10\n\n"
        f"require {ARGO_ROLLOUTS_MODULE} v{peer.version}\n\n{replaces}"
    )
    log(f"==> [2/4] resolving modules (log: {log_file})")
    _run_logged(
        f"{peer.key}: go get",
        [str(go), "get", f"{ARGO_ROLLOUTS_PACKAGE}@v{peer.version}"],
        cwd=work,
        env=env,
        log_file=log_file,
        log=log,
    )
    final = peer.bin_dir(root)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ldflags = f"-s -w -X {ARGO_ROLLOUTS_MODULE}/utils/version.version={peer.version}"
    log("==> [3/4] compiling rollouts-controller (CGO_ENABLED=0, -trimpath; ~6 min idle)")
    _run_logged(
        f"{peer.key}: go build",
        [
            str(go),
            "build",
            "-v",
            "-ldflags",
            ldflags,
            "-o",
            str(tmp / "rollouts-controller"),
            ARGO_ROLLOUTS_PACKAGE,
        ],
        cwd=work,
        env=env,
        log_file=log_file,
        log=log,
        count_lines=True,
    )
    log("==> [4/4] copying CRDs from manifests/crds/")
    crds = Path(info["Dir"]) / "manifests" / "crds"
    (tmp / "crds").mkdir()
    copied = 0
    for crd in sorted(crds.glob("*-crd.yaml")):
        shutil.copyfile(crd, tmp / "crds" / crd.name)
        copied += 1
    if not copied:
        raise BuildError(f"{peer.key}: crds", f"no *-crd.yaml in {crds}")
    (tmp / ".complete").write_text(
        json.dumps(
            {
                "module": ARGO_ROLLOUTS_MODULE,
                "version": peer.version,
                "toolchain": ARGO_GOTOOLCHAIN,
                "built": time.time(),
            }
        )
        + "\n"
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    log(
        f"==> argo-rollouts v{peer.version} ready in "
        f"{_fmt_duration(time.monotonic() - t0)}: {final}"
    )
    return peer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("build", "where"),
        help="build: build the Argo Rollouts controller (cached); where: print its paths",
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")


def cli_main(args: argparse.Namespace) -> int:
    peer = ArgoRollouts()
    try:
        if args.action == "build":
            build_argo_rollouts(peer, force=bool(args.rebuild))
            return 0
        exe, crds = peer.require()
        print(f"controller: {exe}\ncrds: {crds}")
        return 0
    except (BuildError, NotBuiltError) as exc:
        print(f"ftrollout-dev peers {args.action}: {exc}", file=sys.stderr)
        return 1
