"""The operator's Prometheus flags: parsed once at start; a bad one stops the operator naming it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ftrollout.shell import prometheus_config
from ftrollout.shell.prometheus_config import ConfigError, from_args
from ftrollout.shell.runner import add_arguments


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_by_default_only_the_operators_own_url_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(prometheus_config.ENV_ALLOW, raising=False)
    cfg = from_args(parse("--prometheus-url=http://Prom.monitoring:9090/"))
    assert cfg.own == "http://prom.monitoring:9090"
    assert cfg.allowed.addresses == {"http://prom.monitoring:9090"}
    assert not cfg.allowed.any_address
    assert cfg.verify("https://x") is True  # certificates verified by default


def test_the_allow_list_comes_from_flags_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(prometheus_config.ENV_ALLOW, "http://a:9090,http://b:9090")
    cfg = from_args(parse("--prometheus-allow=https://c.example:443/"))
    assert cfg.allowed.addresses == {"http://a:9090", "http://b:9090", "https://c.example"}


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--prometheus-url=http://u:p@prom:9090"], "--prometheus-url"),
        (["--prometheus-allow=http://prom:9090?x=1"], "--prometheus-allow"),
        (["--prometheus-ca-file=/nonexistent/ca.pem"], "--prometheus-ca-file"),
        (["--prometheus-bearer-token-file=/nonexistent"], "--prometheus-bearer-token-file"),
    ],
)
def test_a_bad_flag_is_named(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        from_args(parse(*argv))


def test_runner_refuses_to_start_on_bad_configuration() -> None:
    from ftrollout.shell.runner import run

    assert run(parse("--prometheus-allow=ftp://x")) == 2


def test_credentials_without_an_address_go_to_the_operators_own_url_only(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    cfg = from_args(
        parse("--prometheus-url=http://own:9090", f"--prometheus-bearer-token-file={token}")
    )
    assert set(cfg.auth) == {"http://own:9090"}
    assert cfg.auth_for("http://team-a:9090") is None
    with pytest.raises(ConfigError, match="no URL= and no --prometheus-url"):
        from_args(parse(f"--prometheus-bearer-token-file={token}"))


def test_the_answer_size_cap_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(prometheus_config.ENV_MAX_RESPONSE_BYTES, raising=False)
    assert from_args(parse()).max_response_bytes == 2 * 1024 * 1024
    assert from_args(parse("--prometheus-max-response-bytes=2048")).max_response_bytes == 2048
    monkeypatch.setenv(prometheus_config.ENV_MAX_RESPONSE_BYTES, "4096")
    assert from_args(parse()).max_response_bytes == 4096


@pytest.mark.parametrize("value", ["0", "-1", "1k", "10MiB", "1023"])
def test_a_bad_answer_size_cap_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="--prometheus-max-response-bytes"):
        from_args(parse(f"--prometheus-max-response-bytes={value}"))


def test_an_address_may_be_reserved_for_namespaces(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    cfg = from_args(
        parse(
            "--prometheus-url=http://own:9090",
            "--prometheus-allow=http://team-a:9090,http://shared:9090",
            "--prometheus-address-namespaces=http://Team-A:9090/=team-a,team-a-dev",
            f"--prometheus-bearer-token-file=http://team-a:9090={token}",
            f"--prometheus-bearer-token-file=http://shared:9090={token}",
        )
    )
    assert cfg.allowed.scopes == {"http://team-a:9090": {"team-a", "team-a-dev"}}
    # Credentials any namespace's rollout can make the operator use: warned about at start.
    assert cfg.unscoped_credentials() == ["http://shared:9090"]


@pytest.mark.parametrize(
    "scope", ["http://team-a:9090", "http://nowhere:9090=team-a", "http://team-a:9090=A_B"]
)
def test_a_bad_namespace_scope_is_named(scope: str) -> None:
    with pytest.raises(ConfigError, match="--prometheus-address-namespaces"):
        from_args(
            parse(
                "--prometheus-allow=http://team-a:9090",
                f"--prometheus-address-namespaces={scope}",
            )
        )


def test_runner_refuses_to_start_when_the_metrics_port_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Said once, naming the flag, before anything starts. Inside kopf's startup handler the
    bind error was retried, and each try started one more scheduler (two guardrail loops,
    two analysis loops)."""
    import socket

    from ftrollout.shell.runner import run

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(parse(f"--metrics-port={port}")) == 2
    assert f"--metrics-port {port}" in caplog.text
    assert "in use" in caplog.text
