"""Every Kubernetes call has a connect and a read timeout: a half-open connection (an apiserver
or proxy that accepts and never answers) fails the call instead of holding a worker for ever."""

from __future__ import annotations

import argparse
import socket
import threading
from collections.abc import Iterator

import kopf
import kubernetes
import pytest
import urllib3

from ftrollout.shell import runner
from ftrollout.shell.kube import Kube

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections, reads nothing, answers nothing."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        srv.close()


def kube_at(url: str, **kw: float) -> Kube:
    cfg = kubernetes.client.Configuration()
    cfg.host = url
    cfg.retries = False
    return Kube(client=kubernetes.client.ApiClient(cfg), **kw)  # type: ignore[arg-type]


async def test_a_read_from_a_server_that_never_answers_fails(silent_server: str) -> None:
    kube = kube_at(silent_server, connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        await kube.get_deployment("ns", "web")


async def test_a_write_to_a_server_that_never_answers_fails(silent_server: str) -> None:
    kube = kube_at(silent_server, connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        await kube.scale_deployment("ns", "web", 3)


def test_the_default_timeouts_are_bounded() -> None:
    kube = kube_at("http://127.0.0.1:1")
    assert kube.request_timeout == (10.0, 30.0)


def test_kopf_api_requests_get_the_same_timeouts() -> None:
    p = argparse.ArgumentParser()
    runner.add_arguments(p)
    args = p.parse_args(["--connect-timeout", "3", "--request-timeout", "20"])
    settings = kopf.OperatorSettings()
    runner.configure(settings, args)
    assert settings.networking.connect_timeout == 3
    assert settings.networking.request_timeout == 20
    assert settings.watching.connect_timeout == 3
    defaults = p.parse_args([])
    assert (defaults.connect_timeout, defaults.request_timeout) == (10.0, 30.0)
