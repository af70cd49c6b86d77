"""py-spy over the ftrollout process during the steady window (`--profile S`), and the
profile it leaves: benchmarks/peers/profile-<mode>-<N>[-<tag>].txt."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from sampling import profile_text, py_spy_record, summarize_profile


def start_py_spy(pid: int, out: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for --profile seconds at --profile-rate into `out` (raw)."""
    return subprocess.Popen(
        py_spy_record(Path(args.py_spy), pid, args.profile, out, rate=args.profile_rate),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def write_profile(raw: Path, n: int, mode: str, args: argparse.Namespace) -> str:
    """The raw profile summed up per function into `<raw>.txt` (the raw one removed)."""
    incl, own, samples = summarize_profile(raw)
    title = (
        f"py-spy record --gil --rate {args.profile_rate} --duration {int(args.profile)} of "
        f"ftrollout, {n} paused "
        f"rollouts, {mode} mode: {samples} samples holding the GIL (= Python CPU time)"
    )
    txt = raw.with_suffix(".txt")
    txt.write_text(profile_text(title, incl, own))
    raw.unlink()
    return txt.name
