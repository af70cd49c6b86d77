"""The operator's Prometheus configuration: which addresses, TLS, credentials; short error reasons.

Everything here is the platform admin's (flags, environment, chart values), never a rollout
author's: a rollout only names an address, which must be on the allow-list; CA bundles and
credentials are files mounted into the operator pod (the kubelet reads the Secrets, so the
operator's RBAC reads none). Credential files are read at every request, so a rotated Secret is
picked up without a restart.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from ftrollout.plan.prometheus import AddressError, AllowList, normalise, parse_allow_list
from ftrollout.shell.prometheus_http import (
    AnswerTooLarge,
    HTTPStatusError,
    RedirectRefused,
    mount,
)

# The mount points the chart uses (templates/deployment.yaml).
ENV_ALLOW = "FTR_PROMETHEUS_ALLOW"
ENV_INSECURE = "FTR_PROMETHEUS_INSECURE_SKIP_VERIFY"
ENV_MAX_RESPONSE_BYTES = "FTR_PROMETHEUS_MAX_RESPONSE_BYTES"
DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024


class ConfigError(ValueError):
    """Bad operator configuration: the operator refuses to start and says which flag."""


def _list_env(name: str) -> list[str]:
    return [v for v in (os.environ.get(name) or "").split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus-allow",
        action="append",
        default=_list_env(ENV_ALLOW),
        metavar="URL[,URL...]",
        help="Prometheus addresses rollouts may name in spec.analysis.prometheus.address "
        "(repeatable, comma lists; env FTR_PROMETHEUS_ALLOW). Compared after normalisation; a "
        "path prefix must match exactly. --prometheus-url is always allowed. '*' allows any "
        "http(s) address (single-tenant clusters only). Default: only --prometheus-url",
    )
    p.add_argument(
        "--prometheus-address-namespaces",
        action="append",
        default=[],
        metavar="URL=NAMESPACE[,NAMESPACE...]",
        help="reserve the allow-listed Prometheus at URL for rollouts in these namespaces only "
        "(repeatable): a rollout elsewhere naming it is Failed, even with '*'. Use it for every "
        "address that carries a team's credentials or CA. Not for --prometheus-url, the default "
        "of every namespace. Default: an allow-listed address is usable from every namespace",
    )
    p.add_argument(
        "--prometheus-ca-file",
        action="append",
        default=[],
        metavar="[URL=]PATH",
        help="CA bundle (PEM) to verify the TLS certificate of Prometheus at URL (repeatable); "
        "without URL= for every https address without its own. Default: the system CAs",
    )
    p.add_argument(
        "--prometheus-insecure-skip-verify",
        action="store_true",
        default=(os.environ.get(ENV_INSECURE) or "").lower() in ("1", "true", "yes"),
        help="do not verify Prometheus TLS certificates at all (env "
        "FTR_PROMETHEUS_INSECURE_SKIP_VERIFY=true). Off by default",
    )
    p.add_argument(
        "--prometheus-max-response-bytes",
        default=os.environ.get(ENV_MAX_RESPONSE_BYTES) or str(DEFAULT_MAX_RESPONSE_BYTES),
        metavar="BYTES",
        help="largest Prometheus answer the operator reads, after decompression (env "
        "FTR_PROMETHEUS_MAX_RESPONSE_BYTES); a larger one fails the query with 'answer larger "
        f"than BYTES bytes'. Default: {DEFAULT_MAX_RESPONSE_BYTES} (2 MiB)",
    )
    p.add_argument(
        "--prometheus-bearer-token-file",
        action="append",
        default=[],
        metavar="[URL=]PATH",
        help="send the token in PATH as 'Authorization: Bearer' to the Prometheus at URL only "
        "(repeatable; without URL=: --prometheus-url). Read at every request",
    )
    p.add_argument(
        "--prometheus-basic-auth",
        action="append",
        default=[],
        metavar="[URL=]DIR",
        help="HTTP basic auth for the Prometheus at URL only, from the files DIR/username and "
        "DIR/password (a mounted kubernetes.io/basic-auth Secret; repeatable; without URL=: "
        "--prometheus-url). Read at every request",
    )


def _split(item: str, flag: str, default_url: str | None) -> tuple[str | None, str]:
    """`URL=PATH` or `PATH`: a normalised URL has no '=' (no query), so the first '=' splits."""
    if "=" in item and "://" in item.split("=", 1)[0]:
        raw_url, path = item.split("=", 1)
        try:
            return normalise(raw_url), path
        except AddressError as exc:
            raise ConfigError(f"{flag} {item[:80]!r}: {exc}") from None
    return default_url, item


@dataclass
class FileAuth(AuthBase):
    """Bearer token or basic auth read from mounted files at every request."""

    bearer: Path | None = None
    basic: Path | None = None

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.bearer is not None:
            token = self.bearer.read_text().strip()
            r.headers["Authorization"] = f"Bearer {token}"
        elif self.basic is not None:
            user = (self.basic / "username").read_text().strip("\r\n")
            password = (self.basic / "password").read_text().strip("\r\n")
            r = HTTPBasicAuth(user, password)(r)
        return r


@dataclass
class PrometheusConfig:
    own: str | None = None  # normalised --prometheus-url
    allowed: AllowList = field(default_factory=AllowList)
    ca_files: dict[str | None, Path] = field(default_factory=dict)  # None: every address
    insecure_skip_verify: bool = False
    auth: dict[str, FileAuth] = field(default_factory=dict)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def verify(self, url: str) -> bool | str:
        """requests' `verify`: a CA bundle path, True (system CAs) or False (explicit opt-in)."""
        if self.insecure_skip_verify:
            return False
        ca = self.ca_files.get(url) or self.ca_files.get(None)
        return str(ca) if ca is not None else True

    def auth_for(self, url: str) -> FileAuth | None:
        return self.auth.get(url)

    def unscoped_credentials(self) -> list[str]:
        """Addresses other than the operator's own whose credentials any namespace's rollout
        can make the operator use (not reserved with --prometheus-address-namespaces)."""
        return sorted(u for u in self.auth if u != self.own and u not in self.allowed.scopes)


def from_args(args: argparse.Namespace) -> PrometheusConfig:
    """The configuration from parsed flags; ConfigError names the bad flag."""
    own = None
    if args.prometheus_url:
        try:
            own = normalise(args.prometheus_url)
        except AddressError as exc:
            raise ConfigError(f"--prometheus-url: {exc}") from None
    try:
        allowed = parse_allow_list(args.prometheus_allow or [], own)
    except AddressError as exc:
        raise ConfigError(f"--prometheus-allow: {exc}") from None
    if args.prometheus_address_namespaces:
        try:
            allowed = parse_allow_list(
                args.prometheus_allow or [], own, args.prometheus_address_namespaces
            )
        except AddressError as exc:
            raise ConfigError(f"--prometheus-address-namespaces: {exc}") from None
    ca_files: dict[str | None, Path] = {}
    for item in args.prometheus_ca_file or []:
        url, path = _split(item, "--prometheus-ca-file", None)
        ca_files[url] = _existing(Path(path), "--prometheus-ca-file")
    auth: dict[str, FileAuth] = {}
    for flag, items, kind in (
        ("--prometheus-bearer-token-file", args.prometheus_bearer_token_file, "bearer"),
        ("--prometheus-basic-auth", args.prometheus_basic_auth, "basic"),
    ):
        for item in items or []:
            url, path = _split(item, flag, own)
            if url is None:
                raise ConfigError(f"{flag} {item[:80]!r}: no URL= and no --prometheus-url")
            if url in auth:
                raise ConfigError(f"{flag}: {url} has credentials configured twice")
            p = _existing(Path(path), flag)
            auth[url] = FileAuth(bearer=p) if kind == "bearer" else FileAuth(basic=p)
    raw_limit = str(args.prometheus_max_response_bytes).strip()
    if not raw_limit.isdigit() or int(raw_limit) < 1024:
        raise ConfigError(
            f"--prometheus-max-response-bytes {raw_limit[:40]!r}: expected a whole number of "
            "bytes, at least 1024"
        )
    return PrometheusConfig(
        max_response_bytes=int(raw_limit),
        own=own,
        allowed=allowed,
        ca_files=ca_files,
        insecure_skip_verify=bool(args.prometheus_insecure_skip_verify),
        auth=auth,
    )


def _existing(path: Path, flag: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{flag}: {path} does not exist")
    return path


def short_reason(exc: BaseException) -> str:
    """Why a query failed, in a few words: never the response body (a hostile or broken server
    controls it, and it would land in status and Events), never a traceback."""
    if isinstance(exc, HTTPStatusError):
        try:
            return f"HTTP {exc.code} {HTTPStatus(exc.code).phrase}"
        except ValueError:
            return f"HTTP {exc.code}"
    if isinstance(exc, AnswerTooLarge):
        return str(exc)
    if isinstance(exc, RedirectRefused):
        return "redirect refused"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not verified?)"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "redirect refused"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed"
    if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | TypeError):
        return "not a Prometheus API response"
    if isinstance(exc, OSError):  # a credential file that went away
        return f"credentials unreadable ({type(exc).__name__})"
    return type(exc).__name__


def session(config: PrometheusConfig, url: str) -> requests.Session:
    """A session for one address: its TLS verification, its credentials, no redirects (a
    redirect would take the operator, and possibly its credentials, somewhere not allowed), no
    cookies."""
    s = requests.Session()
    s.verify = config.verify(url)
    s.max_redirects = 0
    auth: Any = config.auth_for(url)
    if auth is not None:
        s.auth = auth
    # No proxies or netrc from the environment: the address is the whole destination.
    s.trust_env = False
    # No cookies: a Prometheus API needs none, and a jar that keeps whatever a server sets
    # (and sends it all back) grows with every answer of a hostile one.
    s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return mount(s)
