"""`ftrollout demo`: the guided tour on the embedded local cluster (see issue: make demo)."""

from __future__ import annotations

import argparse
import sys


def cli_main(args: argparse.Namespace) -> int:
    print("ftrollout demo: not yet — the demo scenarios land with the demo issue.", file=sys.stderr)
    return 0
