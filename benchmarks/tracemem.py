"""Run `ftrollout run ...` with tracemalloc on; SIGUSR1 writes the top allocation sites.

    python benchmarks/tracemem.py OUT.txt run --log-format=json ...

Used by `scale.py --tracemalloc` to find where the operator's memory per rollout goes (it slows
the operator down: never use it for the CPU numbers).
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any


def main() -> int:
    out = Path(sys.argv[1])
    # Imports first (they are the fixed part of the RSS, and slow under tracemalloc): what
    # is traced is what the operator allocates for the objects it handles.
    import kopf  # noqa: F401
    import kubernetes
    import prometheus_api_client  # noqa: F401

    from ftrollout.shell import handlers, kube, metrics, runner, scheduler  # noqa: F401

    for api in ("CoreV1Api", "AppsV1Api", "BatchV1Api", "CustomObjectsApi"):
        getattr(kubernetes.client, api)  # the client imports its API modules lazily

    tracemalloc.start(10)

    def dump(*_: Any) -> None:
        def work() -> None:
            gc.collect()
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            lines = [f"traced: {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB", ""]
            lines.append("== by line")
            for st in snap.statistics("lineno")[:40]:
                lines.append(f"{st.size / 2**20:8.2f} MiB {st.count:8d}  {st.traceback[0]}")
            lines.append("")
            lines.append("== by file")
            for st in snap.statistics("filename")[:30]:
                lines.append(f"{st.size / 2**20:8.2f} MiB {st.count:8d}  {st.traceback[0]}")
            lines.append("")
            lines.append("== largest tracebacks")
            for st in snap.statistics("traceback")[:12]:
                lines.append(f"{st.size / 2**20:8.2f} MiB {st.count:8d}")
                lines.extend(f"      {fr}" for fr in st.traceback.format()[-16:])
            out.write_text("\n".join(lines) + "\n")

        threading.Thread(target=work, daemon=True).start()

    signal.signal(signal.SIGUSR1, dump)
    from ftrollout.main import main as cli_main

    sys.argv = ["ftrollout", *sys.argv[2:]]
    return int(cli_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
