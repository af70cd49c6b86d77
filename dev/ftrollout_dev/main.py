"""The `ftrollout-dev` command: build/start/stop the local control plane, run the demo."""

from __future__ import annotations

from collections.abc import Sequence

from ftrollout.main import main as run_subcommand

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "cluster": ("ftrollout_dev.localcluster", "build/start/stop the embedded local control plane"),
    "demo": ("ftrollout_dev.demo", "run the demo scenarios on the embedded local cluster"),
    "peers": ("ftrollout_dev.peers", "build Argo Rollouts and Flagger for benchmarks/peers"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand(
        argv,
        prog="ftrollout-dev",
        description="ftrollout development tooling: local control plane and demo.",
        subcommands=SUBCOMMANDS,
    )


if __name__ == "__main__":
    raise SystemExit(main())
