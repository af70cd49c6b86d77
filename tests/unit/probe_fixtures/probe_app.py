"""A tiny "application" for probe tests. It knows nothing about the probe (sitecustomize loads it).

usage: python probe_app.py MODE

- ``serve``: import gilwarn_mod, print READY, wait until stdin closes.
- ``fork``: fork a child that imports gilwarn_mod and lives until stdin closes; print READY once the
  child is set up.
- ``crash``: fork a child that aborts (SIGABRT) and one that exits normally; print READY after both.
- ``incident``: report one incident through the probe's public API, then behave like ``serve``.
- ``quick``: import gilwarn_mod and exit 0 at once.
- ``filters-error``: with ``warnings.simplefilter("error")`` the GIL warning must still raise.
"""

from __future__ import annotations

import os
import sys
import warnings


def wait_for_stdin() -> None:
    sys.stdin.read()


def main(mode: str) -> int:
    if mode == "serve":
        import gilwarn_mod

        print("READY", flush=True)
        wait_for_stdin()
    elif mode == "quick":
        import gilwarn_mod

        print("DONE", flush=True)
    elif mode == "fork":
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            import gilwarn_mod

            os.write(write_fd, b"x")
            os.close(write_fd)
            sys.stdin.read()
            os._exit(0)
        os.close(write_fd)
        os.read(read_fd, 1)
        print("READY", flush=True)
        wait_for_stdin()
        os.waitpid(pid, 0)
    elif mode == "crash":
        pids = []
        for action in ("abort", "exit"):
            pid = os.fork()
            if pid == 0:
                if action == "abort":
                    os.abort()
                os._exit(0)
            pids.append(pid)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        print("READY", statuses, flush=True)
        wait_for_stdin()
    elif mode == "incident":
        import ftrollout_probe

        ftrollout_probe.record_incident()
        print("READY", flush=True)
        wait_for_stdin()
    elif mode == "filters-error":
        warnings.simplefilter("error")
        try:
            import gilwarn_mod  # noqa: F401
        except RuntimeWarning as exc:
            print("RAISED", "gilwarn_mod" in str(exc), flush=True)
        else:
            print("NOT RAISED", flush=True)
    else:
        print("unknown mode", mode, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
