"""Which Prometheus the operator may talk to, and whose answers it believes. Pure.

* Addresses: a rollout's `spec.analysis.prometheus.address` is parsed and normalised
  (http/https, host, optional port, optional path prefix; no userinfo, query or fragment) and
  must equal an entry of the operator's allow-list. A path or a trailing `?`/`#` would turn the
  operator's queries into arbitrary GETs; userinfo would smuggle credentials the platform did
  not configure. An entry may be reserved for some namespaces: a team's Prometheus comes with
  that team's credentials and CA, which another namespace's rollout must not borrow.
* Series: the batched guardrail query asks every registered Prometheus about every pod; a series
  from address A counts only in the namespaces of the rollouts that registered A. The operator's
  own Prometheus (`--prometheus-url`) is the platform's and counts everywhere.

No `urllib` here (the planner does no I/O and imports no network module): the grammar below is
deliberately narrower than RFC 3986, and anything outside it is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftrollout.model import api
from ftrollout.plan.metrics import read_vector

FIELD_ADDRESS = "spec.analysis.prometheus.address"
ALLOW_ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}

_SPLIT = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)"
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")


class AddressError(ValueError):
    """A Prometheus address that is malformed or not allowed; the text is for users."""


def normalise(raw: str) -> str:
    """The canonical form of a Prometheus base URL: `scheme://host[:port][/path]`.

    Lower-case scheme and host, the scheme's default port dropped, no trailing slash. Raises
    AddressError saying what is wrong (never echoing more than the offending part).
    """
    if not isinstance(raw, str) or not raw:
        raise AddressError("empty address")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in raw):
        raise AddressError("whitespace or control characters are not allowed")
    if "\\" in raw:
        raise AddressError("backslashes are not allowed")
    m = _SPLIT.match(raw)
    if m is None:
        raise AddressError("not an absolute URL (expected http://host[:port] or https://...)")
    rest = raw[m.end() :]
    if rest.startswith("?"):
        raise AddressError("a query (?...) is not allowed")
    if rest.startswith("#"):
        raise AddressError("a fragment (#...) is not allowed")
    scheme = m["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise AddressError(f"scheme {scheme[:16]!r} is not allowed: use http or https")
    authority = m["authority"]
    if "@" in authority:
        raise AddressError(
            "user information (user@host) is not allowed: credentials come from the "
            "operator's configuration"
        )
    host, port = _host_port(authority.lower())
    path = _path(m["path"])
    shown_port = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}{path}"


def _host_port(authority: str) -> tuple[str, int | None]:
    if not authority:
        raise AddressError("no host")
    if authority.startswith("["):
        end = authority.find("]")
        host, tail = authority[: end + 1], authority[end + 1 :]
        if end < 0 or not _IPV6.match(host):
            raise AddressError("malformed IPv6 host")
    else:
        host, sep, port_text = authority.partition(":")
        tail = sep + port_text
        if not _HOST.match(host) or len(host) > 253:
            raise AddressError("malformed host name")
    if not tail:
        return host, None
    if not tail.startswith(":") or not _PORT.match(tail[1:]):
        raise AddressError("malformed port")
    port = int(tail[1:])
    if not 1 <= port <= 65535:
        raise AddressError("port out of range 1..65535")
    return host, port


def _path(path: str) -> str:
    """A path prefix (Prometheus behind a reverse proxy at /prometheus), plain segments only:
    no percent-encoding, no dot segments, no empty segments."""
    trimmed = path.rstrip("/")
    if not trimmed:
        return ""
    segments = trimmed.split("/")[1:]
    for seg in segments:
        if not seg:
            raise AddressError("empty path segment (//) is not allowed")
        if seg in (".", ".."):
            raise AddressError("dot segments (. or ..) are not allowed in the path")
        if not _SEGMENT.match(seg):
            raise AddressError(
                "path may contain only letters, digits and . _ ~ - (no percent-encoding)"
            )
    return trimmed


@dataclass(frozen=True)
class AllowList:
    """Normalised addresses a rollout may name; `any_address` is the explicit `*` opt-in.

    `scopes`: addresses the platform reserved for some namespaces (a team's Prometheus, with
    that team's credentials and CA). A scoped address is usable only from its namespaces, even
    with `*`; an unscoped one from every namespace."""

    addresses: frozenset[str] = frozenset()
    any_address: bool = False
    scopes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, normalised: str, namespace: str | None = None) -> bool:
        scope = self.scopes.get(normalised)
        if scope is not None:
            return namespace in scope
        return self.any_address or normalised in self.addresses

    def usable_from(self, namespace: str | None) -> list[str]:
        return sorted(a for a in self.addresses if self.allows(a, namespace))


_NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def parse_allow_list(
    items: Iterable[str], own: str | None, scopes: Iterable[str] = ()
) -> AllowList:
    """The allow-list from flags/env (each item may be a comma list); the operator's own URL is
    always in it. `scopes`: `URL=NAMESPACE[,NAMESPACE...]` items reserving a listed address for
    those namespaces. Raises AddressError naming the bad entry."""
    addresses: set[str] = set()
    any_address = False
    for item in items:
        for entry in item.split(","):
            entry = entry.strip()
            if not entry:
                continue
            if entry == ALLOW_ANY:
                any_address = True
                continue
            try:
                addresses.add(normalise(entry))
            except AddressError as exc:
                raise AddressError(f"allow-list entry {entry[:80]!r}: {exc}") from None
    own_url = normalise(own) if own else None
    reserved: dict[str, set[str]] = {}
    for item in scopes:
        # A normalised URL has no '=' (no query), so the first '=' ends it.
        raw_url, sep, raw_spaces = item.partition("=")
        spaces = [n.strip() for n in raw_spaces.split(",") if n.strip()]
        if not sep or not spaces:
            raise AddressError(f"scope {item[:80]!r}: expected URL=NAMESPACE[,NAMESPACE...]")
        try:
            url = normalise(raw_url)
        except AddressError as exc:
            raise AddressError(f"scope {item[:80]!r}: {exc}") from None
        if url == own_url:
            raise AddressError(
                f"scope {item[:80]!r}: {url} is the operator's own Prometheus, the default of "
                "every namespace; give the team an address of its own instead"
            )
        if url not in addresses and not any_address:
            raise AddressError(f"scope {item[:80]!r}: {url} is not in the allow-list")
        for n in spaces:
            if not _NAMESPACE.match(n):
                raise AddressError(f"scope {item[:80]!r}: {n[:80]!r} is not a namespace name")
        reserved.setdefault(url, set()).update(spaces)
        addresses.add(url)
    if own_url:
        addresses.add(own_url)
    return AllowList(
        frozenset(addresses), any_address, {u: frozenset(n) for u, n in reserved.items()}
    )


def check_address(address: str, allowed: AllowList, namespace: str | None = None) -> str:
    """The normalised address if a rollout in `namespace` may make the operator query it;
    AddressError otherwise (None: namespace unknown, scoped addresses refused)."""
    url = normalise(address)
    if url in allowed.scopes and not allowed.allows(url, namespace):
        # Neither the namespaces it is reserved for nor the other addresses: a tenant learns
        # only what it may use.
        raise AddressError(
            f"{url} is reserved for other namespaces than {namespace!r} by the operator's "
            "configuration (--prometheus-address-namespaces, chart value "
            "prometheus.allowedAddresses[].namespaces); "
            f"allowed here: {', '.join(allowed.usable_from(namespace)) or 'none'}"
        )
    if not allowed.allows(url, namespace):
        known = ", ".join(allowed.usable_from(namespace)) or "none"
        raise AddressError(
            f"{url} is not in the operator's allow-list of Prometheus addresses "
            f"(--prometheus-allow, chart value prometheus.allowedAddresses); allowed: {known}"
        )
    return url


def address_error(
    spec: api.RolloutSpec, allowed: AllowList, namespace: str | None = None
) -> api.SpecError | None:
    """The spec error for a Prometheus address the operator must not use for a rollout in
    `namespace`, if any."""
    analysis = spec.analysis
    if analysis is None or analysis.prometheus.address is None:
        return None
    try:
        check_address(analysis.prometheus.address, allowed, namespace)
    except AddressError as exc:
        return api.SpecError(FIELD_ADDRESS, str(exc))
    return None


# ---------------------------------------------------------------- tenant isolation of series

# None: every namespace (the operator's own Prometheus).
Trust = frozenset[str] | None


def trusted_namespaces(registered: Iterable[tuple[str, str]], own: str | None) -> dict[str, Trust]:
    """For each Prometheus address, the namespaces whose pods its series may speak about.

    `registered` holds (address, namespace) of every rollout that uses the address (also those
    whose analysis ended recently and whose pods are still watched).
    """
    out: dict[str, set[str]] = {}
    for url, namespace in registered:
        out.setdefault(url, set()).add(namespace)
    trust: dict[str, Trust] = {url: frozenset(spaces) for url, spaces in out.items()}
    if own:
        trust[own] = None
    return trust


def series_for(series: Sequence[Mapping[str, Any]], trust: Trust) -> list[Mapping[str, Any]]:
    """The series of one answer that may count: well-formed (an object whose labels are all
    strings) and, from a team's address, labelled with a trusted namespace. Anything else is
    dropped rather than raised on: one malformed answer must not stop the guardrail round of
    every namespace."""
    if not isinstance(series, list):
        return []
    out = []
    for s in series:
        labels = s.get("metric", {}) if isinstance(s, Mapping) else None
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            continue
        if trust is None or labels.get("namespace") in trust:
            out.append(s)
    return out


@dataclass(frozen=True)
class ProbeSeries:
    """One guardrail series reduced to what the operator keeps of it."""

    namespace: str
    pod: str
    module: str
    value: float | None  # None: NaN, infinite, not a number or no value


def probe_series(
    series: Sequence[Mapping[str, Any]], trust: Trust, pods: Container[tuple[str, str]]
) -> list[ProbeSeries]:
    """`series_for`, then only the pods the operator knows (its cache), each reduced to its
    labels and value. The cost is the answer's, the result the known pods': the shell runs this
    in the query's worker, so a huge answer neither blocks the event loop nor leaves a reading
    for every pod name a hostile server invents."""
    out = []
    for s in series_for(series, trust):
        labels = s.get("metric", {})
        key = (labels.get("namespace", ""), labels.get("pod", ""))
        if key in pods:
            value = read_vector([dict(s)]).value
            out.append(ProbeSeries(key[0], key[1], labels.get("module", ""), value))
    return out


# ------------------------------------------------------------ guardrail queries (issue 22)

# Only twin pods (<target>-ft-<replicaset hash>-<suffix>): answers stay proportional to the
# free-threaded pods even where standard pods export the probe's metrics too.
TWIN_PODS = '{pod=~".+-ft-[a-z0-9]+-[a-z0-9]+"}'
GUARD_LABEL = "ftrollout_guard"  # which part of GUARD_QUERY a series answers


def _tagged(tag: str, expr: str) -> str:
    return f'label_replace({expr}, "{GUARD_LABEL}", "{tag}", "", "")'


# One request per Prometheus and round that answers only what is not healthy: a pod whose GIL
# value is not exactly 0 (on, NaN, anything odd: the worker reads it as before), whose build
# value is not exactly 1, a fallback module or an incident counter above 0, plus one number,
# how many twin pods report at all. At 1000 healthy rollouts the answer is that one number
# instead of four answers of 1000 series every 5 s (most of the operator's idle CPU).
GUARD_PARTS = {
    "gil": _tagged("gil", f"max by (namespace, pod) (python_gil_enabled{TWIN_PODS}) != 0"),
    "build": _tagged(
        "build", f"min by (namespace, pod) (python_freethreading_build{TWIN_PODS}) != 1"
    ),
    "fallback": _tagged(
        "fallback", f"sum by (namespace, pod, module) (python_gil_fallback_total{TWIN_PODS}) > 0"
    ),
    "incidents": _tagged(
        "incidents",
        f"sum by (namespace, pod) (python_freethreading_incidents_total{TWIN_PODS}) > 0",
    ),
    "reporting": _tagged(
        "reporting", f"count(group by (namespace, pod) (python_gil_enabled{TWIN_PODS}))"
    ),
}
GUARD_QUERY = " or ".join(GUARD_PARTS.values())
# When the fleet is not healthy (a base image that turns the GIL on everywhere) the one answer
# may pass the size cap: the parts are then asked one by one, each as large as one of the old
# per-metric answers at most.
# Which twin pods report a GIL value at all (GIL off vs not known yet): asked when the number
# of reporting pods, the pods in the cache or the trusted namespaces changed, and every minute
# (shell.scheduler.DENSE_SECONDS).
REPORTING_QUERY = f"group by (namespace, pod) (python_gil_enabled{TWIN_PODS})"


@dataclass(frozen=True)
class GuardAnswer:
    """GUARD_QUERY's answer from one Prometheus, reduced to what may count (trusted namespace,
    known pod) in the query's worker."""

    gil: tuple[ProbeSeries, ...] = ()
    build: tuple[ProbeSeries, ...] = ()
    fallback: tuple[ProbeSeries, ...] = ()
    incidents: tuple[ProbeSeries, ...] = ()
    reporting: int = 0  # twin pods with a python_gil_enabled series, any namespace


def guard_answer(
    series: Sequence[Mapping[str, Any]], trust: Trust, pods: Container[tuple[str, str]]
) -> GuardAnswer:
    parts: dict[str, list[ProbeSeries]] = {"gil": [], "build": [], "fallback": [], "incidents": []}
    reporting = 0
    if not isinstance(series, list):
        return GuardAnswer()
    for s in series:
        labels = s.get("metric", {}) if isinstance(s, Mapping) else None
        if not isinstance(labels, Mapping):
            continue
        tag = labels.get(GUARD_LABEL)
        if tag == "reporting":
            # Not about any namespace: it only decides whether REPORTING_QUERY is asked again
            # (a lie costs this address one more query per round, nothing else).
            value = read_vector([dict(s)]).value
            reporting = int(value) if value is not None and 0 <= value < 2**31 else -1
            continue
        if tag not in parts:
            continue
        parts[tag].extend(probe_series([s], trust, pods))
    return GuardAnswer(
        gil=tuple(parts["gil"]),
        build=tuple(parts["build"]),
        fallback=tuple(parts["fallback"]),
        incidents=tuple(parts["incidents"]),
        reporting=reporting,
    )


def merge_answers(parts: Iterable[GuardAnswer]) -> GuardAnswer:
    """GUARD_PARTS asked one by one, as one answer."""
    out = GuardAnswer()
    for a in parts:
        out = GuardAnswer(
            gil=out.gil + a.gil,
            build=out.build + a.build,
            fallback=out.fallback + a.fallback,
            incidents=out.incidents + a.incidents,
            reporting=max(out.reporting, a.reporting),
        )
    return out


def reporting_pods(
    series: Sequence[Mapping[str, Any]], trust: Trust, pods: Container[tuple[str, str]]
) -> tuple[frozenset[tuple[str, str]], int]:
    """REPORTING_QUERY's answer: the known, trusted pods that report, and how many series the
    answer had (what GUARD_QUERY's `reporting` number is compared with)."""
    n = len(series) if isinstance(series, list) else 0
    # Only which pods: no value read, no ProbeSeries made (the listing of 1000 pods every
    # minute was an eighth of the idle operator's CPU). The same pods as probe_series'.
    found = set()
    for s in series_for(series, trust):
        labels = s.get("metric", {})
        key = (labels.get("namespace", ""), labels.get("pod", ""))
        if key in pods:
            found.add(key)
    return frozenset(found), n
