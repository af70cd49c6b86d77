"""`kubectl ftr <action> --wait` reporting success for an action the operator never applied."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_plugin import FakeApi, _status_body, make_handler, run, sample

from ftrollout.cli import plugin


def _serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeApi, events_forbidden: bool):
    base = make_handler(fake)

    class H(base):  # type: ignore[misc,valid-type]
        def do_GET(self) -> None:
            _, last, _ = self.route()
            if events_forbidden and last == "events":
                return self.send(
                    403,
                    _status_body(
                        403,
                        "Forbidden",
                        'events is forbidden: User "dev" cannot list resource "events"',
                    ),
                )
            return super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "f", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
        ],
        "users": [{"name": "dev", "user": {"token": "t"}}],
        "contexts": [
            {"name": "f", "context": {"cluster": "f", "user": "dev", "namespace": "shop"}}
        ],
        "current-context": "f",
    }
    (tmp_path / "kc").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    return server


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any) -> Iterator[FakeApi]:
    f = FakeApi()
    server = _serve(tmp_path, monkeypatch, f, getattr(request, "param", False))
    yield f
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("fake", [True], indirect=True)
def test_ignored_action_is_not_success_when_events_cannot_be_read(
    fake: FakeApi, capsys: Any
) -> None:
    """User may patch the rollout but not list events (a common narrow RBAC role): the operator
    ignores `promote` on a Promoted rollout (ActionIgnored), the plugin says exit 0."""
    fake.rollouts[("shop", "web")] = sample(phase="Promoted")

    def operator(body: dict[str, Any]) -> None:  # ignores it, records ActionIgnored, clears
        fake.events = [
            *fake.events,
            {
                "metadata": {"name": "web.x"},
                "reason": "ActionIgnored",
                "type": "Normal",
                "message": "promote: not possible in phase Promoted",
            },
        ]
        fake.rollouts[("shop", "web")]["metadata"].pop("annotations", None)

    fake.on_patch = operator
    code, out, err = run(capsys, "promote", "web", "--wait", "--interval", "10ms")
    assert code != 0, (code, out, err)


def test_action_overwritten_by_another_request_is_not_reported_as_applied(
    fake: FakeApi, capsys: Any
) -> None:
    """Another user/pipeline writes its own request over ours before the operator reads it:
    ours is never applied, yet `_action_consumed` sees 'annotation != ours' and exits 0."""
    fake.events = []

    def other_user_overwrites(body: dict[str, Any]) -> None:
        fake.rollouts[("shop", "web")]["metadata"]["annotations"] = {
            plugin.ANNOTATION_ACTION: "pause@20250601T120000Z-abcdef"
        }

    fake.on_patch = other_user_overwrites
    code, out, err = run(
        capsys, "rollback", "web", "--wait", "--timeout", "300ms", "--interval", "10ms"
    )
    assert code != 0, (code, out, err)
