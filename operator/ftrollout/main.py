"""The `ftrollout` command: run the operator, print the CRD.

The development tooling (local cluster, demo) is a separate distribution, `ftrollout-dev`, with
its own `ftrollout-dev` command: it is not installed in the operator image.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

# Subcommands import their modules lazily: `ftrollout crd` must not pay for kopf or the
# kubernetes client.
# Each module offers `add_arguments(parser)` (optional) and `cli_main(args) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ftrollout.shell.runner", "run the operator"),
    "crd": ("ftrollout.model.crd", "print the FreeThreadedRollout CustomResourceDefinition"),
}

Handler = Callable[[argparse.Namespace], int]


def build_parser(
    argv: Sequence[str],
    *,
    prog: str = "ftrollout",
    description: str = "Canary a Python service onto a free-threaded CPython image.",
    subcommands: dict[str, tuple[str, str]] = SUBCOMMANDS,
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in subcommands.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(module=module_name)
        if name == chosen:  # only the chosen subcommand's module is imported
            module = importlib.import_module(module_name)
            add_arguments = getattr(module, "add_arguments", None)
            if add_arguments is not None:
                add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None, **parser_options: Any) -> int:
    """Run one subcommand; `parser_options` let another command (ftrollout-dev) reuse this."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list, **parser_options)
    args = parser.parse_args(args_list)
    module = importlib.import_module(args.module)
    handler = cast(Handler, module.cli_main)
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
