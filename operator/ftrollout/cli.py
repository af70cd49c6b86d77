"""The `ftrollout` command: operator, CRD generation, local cluster, demo."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

# Subcommands import their modules lazily: `ftrollout crd` must not pay for kopf or the
# kubernetes client, and the operator process must not import the demo or cluster tooling.
# Each module offers `add_arguments(parser)` (optional) and `cli_main(args) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ftrollout.runner", "run the operator"),
    "crd": ("ftrollout.crd", "print the FreeThreadedRollout CustomResourceDefinition"),
    "cluster": ("ftrollout.localcluster", "build/start/stop the embedded local control plane"),
    "demo": ("ftrollout.demo", "run the demo scenarios on the embedded local cluster"),
}

Handler = Callable[[argparse.Namespace], int]


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftrollout",
        description="Canary a Python service onto a free-threaded CPython image.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(module=module_name)
        if name == chosen:  # only the chosen subcommand's module is imported
            module = importlib.import_module(module_name)
            add_arguments = getattr(module, "add_arguments", None)
            if add_arguments is not None:
                add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    module = importlib.import_module(args.module)
    handler = cast(Handler, module.cli_main)
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
