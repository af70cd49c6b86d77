"""The processes and local servers the benchmarks start, shared by `scale.py` and `peers/`:
waiting for a controller's endpoint, stopping it, and quiet HTTP servers in this process."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def wait_serving(
    proc: subprocess.Popen[bytes],
    probe: Callable[[], object],
    timeout: float,
    name: str,
    not_up: str,
    log_path: Path,
) -> None:
    """Until `probe` answers: a process that exits raises with its log's tail; one that does
    not answer in `timeout` seconds is stopped, and raises `not_up`."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            probe()
            return
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(not_up)
        time.sleep(0.3)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the benchmark's own log stays readable)."""

    def reply(self, code: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(code)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    """A server on a free port of 127.0.0.1, served from a daemon thread `name`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server
