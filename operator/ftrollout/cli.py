"""The `ftrollout` command: operator, CRD generation, local cluster, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Subcommands import their modules lazily: `ftrollout crd` must not pay for kopf or the
# kubernetes client, and the operator process must not import the demo or cluster tooling.


def _cmd_crd(args: argparse.Namespace) -> int:
    from ftrollout.crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ftrollout.runner import run

    return run(args)


def _cmd_cluster(args: argparse.Namespace) -> int:
    from ftrollout.localcluster import cli_main

    return cli_main(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ftrollout.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftrollout",
        description="Canary a Python service onto a free-threaded CPython image.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    crd = sub.add_parser("crd", help="print the FreeThreadedRollout CustomResourceDefinition")
    crd.set_defaults(func=_cmd_crd)

    run = sub.add_parser("run", help="run the operator")
    _add_run_options(run)
    run.set_defaults(func=_cmd_run)

    cluster = sub.add_parser("cluster", help="build/start/stop the embedded local control plane")
    _add_cluster_options(cluster)
    cluster.set_defaults(func=_cmd_cluster)

    demo = sub.add_parser("demo", help="run the demo scenarios on the embedded local cluster")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    try:
        from ftrollout.runner import add_arguments
    except ImportError:  # the runner lands with the rollout engine
        return
    add_arguments(p)


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    try:
        from ftrollout.localcluster import add_arguments
    except ImportError:  # the local cluster lands with its own issue
        return
    add_arguments(p)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ImportError as exc:
        print(f"ftrollout {args.command}: not available in this build ({exc})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
