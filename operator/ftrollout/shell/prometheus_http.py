"""One Prometheus API GET, bounded in time and in size, whatever the server does.

* Time: requests' `timeout` bounds each socket read, not the request, so a server trickling a
  byte now and then held a worker thread for as long as it liked, long after the operator had
  given up on the answer. A `Deadline` ends the request at the socket instead: the event loop
  expires it when the query's time is up, and `shutdown()` on the connection's socket makes
  whatever read the worker is blocked in (headers, body; Python already bounds a TLS handshake
  as a whole) return at once. (`close()` from another thread would not wake a blocked `recv` on
  Linux.) A `connect()` cannot be woken that way, so connecting gets what is left of the
  deadline, shared by the host's addresses in turn: a name resolving to many unreachable
  addresses no longer holds the worker for each address's full timeout.
* Size: the body is read in chunks and inflated by the operator itself with a bound on the
  output, so a gzip bomb (a few hundred kB inflating to hundreds of MB) stops at the cap. Only
  gzip is asked for; an answer in another encoding is refused. Error answers are not read at all:
  their status code is all the operator reports.
* Redirects are not followed and their bodies not read: a redirect could lead the operator, and
  its credentials, off the allow-list. The request goes through the transport adapter, not
  `Session.send`: the session reads (and inflates, without bound) the body of every 3xx answer
  before its caller sees the status, even with `allow_redirects=False`, and stores every
  Set-Cookie in its jar.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Any
from weakref import WeakKeyDictionary

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

CHUNK = 64 * 1024


class AnswerTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")


class HTTPStatusError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


class RedirectRefused(Exception):
    pass


class BadEncoding(ValueError):
    """An answer in an encoding the operator did not ask for, or a broken gzip stream."""


# The request each pooled connection currently serves: a deadline that expires late must not
# shut down a connection that has since gone back to the pool and on to another request.
_owners: WeakKeyDictionary[HTTPConnection, Deadline] = WeakKeyDictionary()
_owners_lock = threading.Lock()
_current = threading.local()


class Deadline:
    """The end of one request; `expire()` (from any thread) aborts it at the socket.

    `seconds`: when it ends (None: only when expired), for what a shutdown cannot wake."""

    def __init__(self, seconds: float | None = None) -> None:
        self.end = time.monotonic() + seconds if seconds is not None else float("inf")
        self._lock = threading.Lock()
        # Duplicates of the connection's socket: the TLS wrapper detaches the original socket
        # object during the handshake, a duplicate keeps a handle on the same connection.
        self._socks: list[tuple[HTTPConnection, socket.socket]] = []
        self.expired = False
        self._done = False

    def attach(self, conn: HTTPConnection, sock: socket.socket) -> None:
        with self._lock:
            if self._done:
                return
            try:
                dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
            except OSError:
                return
            with _owners_lock:
                _owners[conn] = self
            self._socks.append((conn, dup))
            if self.expired:
                _shutdown(dup)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for conn, dup in self._socks:
                with _owners_lock:
                    mine = _owners.get(conn) is self
                if mine:
                    _shutdown(dup)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            for conn, dup in self._socks:
                with _owners_lock:
                    if _owners.get(conn) is self:
                        del _owners[conn]
                dup.close()
            self._socks.clear()

    def remaining(self) -> float:
        return 0.0 if self.expired else self.end - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise TimeoutError("deadline")


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to wake
        sock.shutdown(socket.SHUT_RDWR)


def _attach(conn: HTTPConnection, sock: socket.socket | None) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.attach(conn, sock)


def _connect(conn: HTTPConnection, deadline: Deadline) -> socket.socket:
    """urllib3's create_connection, but every attempt within what is left of the deadline and
    no attempt once it has passed (urllib3 gives each resolved address the whole timeout)."""
    host = conn._dns_host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    # The connect timeout requests passed (what was left of the deadline when the request
    # started); the deadline itself bounds the attempts together.
    each = conn.timeout if isinstance(conn.timeout, int | float) else None
    err: OSError | None = None
    for family, kind, proto, _, address in infos:
        left = deadline.remaining()
        if left <= 0:
            break
        if each is not None:
            left = min(left, each)
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(left)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
            return sock
        except OSError as exc:
            err = exc
            sock.close()
        if deadline.remaining() <= 0:
            break  # the next address would get no time at all
    if err is None or isinstance(err, TimeoutError):
        raise ConnectTimeoutError(conn, "connect timed out")
    raise NewConnectionError(conn, "connection failed") from err


def _new_conn(conn: HTTPConnection) -> socket.socket | None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is None:
        return None
    sock = _connect(conn, deadline)
    _attach(conn, sock)  # from the first byte on: nothing on this connection outlives it
    return sock


class _DeadlineHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self, self.sock)  # a pooled connection serving another request
        super().request(*args, **kwargs)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _new_conn(self) or super()._new_conn()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self, self.sock)
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections register their sockets with the request's
    Deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def mount(s: requests.Session) -> requests.Session:
    adapter = DeadlineAdapter()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    # Only gzip, which the operator inflates itself with a bound (Prometheus speaks gzip).
    s.headers["Accept-Encoding"] = "gzip"
    return s


def get_body(
    s: requests.Session,
    url: str,
    params: Mapping[str, str],
    seconds: float,
    limit: int,
    deadline: Deadline,
    reuse: requests.PreparedRequest | None = None,
) -> bytes:
    """GET `url` and return its body, within `deadline` and `limit` decoded bytes. The
    connection is done with (and the deadline's hold on it released) when this returns.
    `reuse`: the request as `template` made it for the same session, url and params.

    Raises TimeoutError once the deadline expired (whatever the aborted read raised),
    HTTPStatusError, RedirectRefused, AnswerTooLarge, BadEncoding, or the requests exception
    of a connection that failed."""
    deadline.check()
    _current.deadline = deadline
    try:
        if reuse is None:
            prepared = s.prepare_request(requests.Request("GET", url, params=params))
        else:
            prepared = reuse.copy()
            if s.auth is not None:  # read now: a rotated token is used at once
                prepared.prepare_auth(s.auth)
        # The adapter, not s.send(): see the module docstring (3xx bodies, cookies). The
        # session only lends its headers, credentials and TLS verification.
        adapter = s.get_adapter(prepared.url or url)
        with adapter.send(
            prepared,
            stream=True,
            timeout=(max(min(deadline.remaining(), seconds), 0.001), seconds),
            verify=s.verify,
            cert=s.cert,
            proxies={},
        ) as response:
            if 300 <= response.status_code < 400:
                raise RedirectRefused()
            if response.status_code != 200:
                raise HTTPStatusError(response.status_code)
            body = read_capped(response, limit)
        # A shutdown socket reads as the end of the answer: what came before is not one.
        deadline.check()
        return body
    except Exception:
        deadline.check()  # an aborted read says so in its own words: the cause is the deadline
        raise
    finally:
        _current.deadline = None
        deadline.finish()


def template(s: requests.Session, url: str, params: Mapping[str, str]) -> requests.PreparedRequest:
    """The GET as `s` prepares it, without its credentials (`get_body` adds them at every
    request), to be copied by every request that asks the same thing. Preparing walks the
    URL byte by byte, three times (requests' and urllib3's percent-encoding checks): for the
    guardrail's 1.5 kB query every 5 s that was the largest part of the idle operator's request
    cost. The session's cookies are not taken: it keeps none (prometheus_config.session)."""
    prepared = requests.PreparedRequest()
    prepared.prepare(method="GET", url=url, headers=s.headers, params=params)
    return prepared


def get_json(
    s: requests.Session,
    url: str,
    params: Mapping[str, str],
    seconds: float,
    limit: int,
    deadline: Deadline,
) -> Any:
    """`get_body` parsed as JSON (ValueError for a body that is not JSON)."""
    return json.loads(get_body(s, url, params, seconds, limit, deadline))


def read_capped(response: requests.Response, limit: int) -> bytes:
    """The decoded body, or AnswerTooLarge as soon as it would exceed `limit` bytes."""
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "identity":
        inflater = None
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise AnswerTooLarge(limit)
    else:
        raise BadEncoding("content encoding not asked for")
    parts: list[bytes] = []
    size = 0
    raw = response.raw
    while True:
        chunk = raw.read(CHUNK, decode_content=False)
        if not chunk:
            break
        if inflater is None:
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(limit)
            parts.append(chunk)
            continue
        data = chunk
        while data and not inflater.eof:
            # At most one byte past the cap: enough to know it is exceeded, never more.
            out = inflater.decompress(data, limit - size + 1)
            size += len(out)
            if size > limit:
                raise AnswerTooLarge(limit)
            parts.append(out)
            data = inflater.unconsumed_tail
        if inflater.eof:
            break  # anything after the gzip stream is not read
    if inflater is not None and not inflater.eof:
        raise BadEncoding("truncated gzip stream")
    return b"".join(parts)
