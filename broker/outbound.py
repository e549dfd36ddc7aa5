"""Outbound HTTP for webhooks, actions, plugins and proxy mounts: one guarded client that refuses
link-local and cloud-metadata addresses always, and loopback/private ones unless allowed.

The check runs on the address actually connected to (the connector's socket factory sees
every address, literal or resolved, and every redirect hop) and on every address a name
resolves to, so DNS cannot smuggle a forbidden address past it. A refusal surfaces as
`OutboundRefused` inside aiohttp's connection error; `send` turns it into a result with
`refused=True`, never an exception.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import math
import socket
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from broker.numbers import whole_number_or

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS IPv6 metadata
    "100.100.100.200",  # Alibaba Cloud
))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.internal"})
SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not public
REDACTED = "***"
DEFAULT_BODY_LIMIT = 64 * 1024


class OutboundRefused(OSError):
    """An outbound call to a forbidden address; the reason names the address."""


def refusal(address: IPAddress | str, allow_private: bool) -> str | None:
    """Why connecting to `address` is forbidden, or None when it is allowed."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is link-local"
    if ip.is_loopback or ip.is_unspecified:  # before "reserved": ::1 is both
        return None if allow_private else (
            f"{ip} is a loopback address (set allow_private_targets to permit it)")
    if ip.is_multicast or ip.is_reserved:
        return f"{ip} is not a unicast address"
    if allow_private:
        return None
    if ip.is_private or ip in SHARED_SPACE:
        return f"{ip} is a private address (set allow_private_targets to permit it)"
    return None


def check_host(host: str) -> None:
    """Refuse metadata host names before any lookup (they resolve to link-local anyway)."""
    if host.rstrip(".").lower() in METADATA_NAMES:
        raise OutboundRefused(f"{host} is a cloud metadata host")


def literal_address(host: str) -> IPAddress | None:
    """The address a host names without a lookup: IPv4 and IPv6 literals, and the other
    spellings of IPv4 the system resolver accepts (`2852039166`, `0xa9fea9fe`, `0177.1`,
    `127.1`); None for a name that needs DNS."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(ch in "0123456789abcdefxABCDEFX." for ch in text):
        try:  # inet_aton is the parser getaddrinfo uses for numeric IPv4 hosts
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def target_refusal(host: str, allow_private: bool) -> str | None:
    """Why a configured target host is forbidden before any call is made (metadata names
    and forbidden literal addresses, however spelt), or None. Names are checked again on
    every address they resolve to when the call connects."""
    try:
        check_host(host)
    except OutboundRefused as exc:
        return str(exc)
    address = literal_address(host)
    return refusal(address, allow_private) if address is not None else None


class GuardedResolver(AbstractResolver):
    """Resolves with the default resolver, then refuses the whole answer if any address
    is forbidden (a name that also points at metadata is not one to trust)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        check_host(host)
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            reason = refusal(answer["host"], self.allow_private)
            if reason:
                raise OutboundRefused(f"{host} resolves to {reason}")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def _socket_factory(allow_private: bool) -> Any:
    def make(addr_info: Any) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        reason = refusal(sockaddr[0].split("%", 1)[0], allow_private)
        if reason:
            raise OutboundRefused(f"refused to connect: {reason}")
        return socket.socket(family, kind, proto)

    return make


_RESOLVERS: weakref.WeakKeyDictionary[aiohttp.ClientSession, GuardedResolver] = (
    weakref.WeakKeyDictionary())


def open_session(allow_private: bool, limit: int = 100, **options: Any
                 ) -> aiohttp.ClientSession:
    """The guarded session every outbound call uses (webhooks, actions, plugins, proxy
    mounts); `options` are further `ClientSession` arguments. Close it with
    `close_session`."""
    resolver = GuardedResolver(allow_private)
    connector = aiohttp.TCPConnector(
        limit=limit, resolver=resolver, socket_factory=_socket_factory(allow_private),
        ttl_dns_cache=10,
    )
    options.setdefault("timeout", aiohttp.ClientTimeout(total=None))
    # Every call stands alone: a cookie one receiver sets is never sent back, neither to
    # it nor to another subscription, action or plugin calling the same host.
    options.setdefault("cookie_jar", aiohttp.DummyCookieJar())
    session = aiohttp.ClientSession(connector=connector, trust_env=False, **options)
    _RESOLVERS[session] = resolver
    return session


@dataclass(slots=True)
class OutboundRequest:
    """A fully rendered HTTP request; `url` is already percent-encoded. Not frozen: one
    is made per webhook call and kept by nothing, and a frozen dataclass takes several
    times as long to build (every field set through `object.__setattr__`)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""
    secret_headers: frozenset[str] = field(default_factory=frozenset)
    """Lower-case names of headers whose values are redacted when recorded."""

    def recorded(self) -> dict[str, Any]:
        """What would be sent, secrets redacted (for replays and failure reports)."""
        headers = {k: (REDACTED if k.lower() in self.secret_headers else v)
                   for k, v in self.headers.items()}
        doc: dict[str, Any] = {"method": self.method, "url": self.url, "headers": headers}
        try:
            doc["body"] = self.body.decode()
        except UnicodeDecodeError:
            doc["body_base64"] = base64.b64encode(self.body).decode()
        return doc


@dataclass(slots=True)
class OutboundResult:
    """How a call ended. `status` is None when no response arrived. Not frozen, as
    `OutboundRequest`: one per call."""

    status: int | None
    latency_ms: float
    body: str = ""
    truncated: bool = False
    content_type: str | None = None
    error: str | None = None
    refused: bool = False
    retry_after: float | None = None
    succeeded: bool | None = None
    """Set by non-HTTP action kinds (a shell exit status is not an HTTP status)."""

    @property
    def ok(self) -> bool:
        if self.succeeded is not None:
            return self.succeeded
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Network errors, timeouts, 408, 429 and 5xx; never a refusal or another 4xx."""
        if self.refused:
            return False
        if self.status is None:
            return True
        return self.status in (408, 429) or self.status >= 500


RETRY_AFTER_CAP = 366 * 24 * 3600
"""The longest `Retry-After` taken from a peer, in seconds."""


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now` (Unix seconds): delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # A year at most: the retry policy caps the wait anyway, and a peer's huge number
        # must not reach float() or int() unchecked.
        return float(whole_number_or(value, RETRY_AFTER_CAP, maximum=RETRY_AFTER_CAP))
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def refused_reason(exc: BaseException) -> str | None:
    """The refusal hidden in an aiohttp connection error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutboundRefused):
            return str(current)
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, OutboundRefused):
            return str(os_error)
        current = current.__cause__ or current.__context__
    return None


class CallDeadlines:
    """The timeouts of many concurrent calls kept on one timer, for a sender that makes
    a great many (`send(..., deadlines=)`): aiohttp's own timeout makes a timer and a
    timer context per request, ~4 % of a webhook delivery's instructions. A call still
    out at its deadline has its task cancelled, as aiohttp's timeout does, and `send`
    reports it as timed out. One call per task at a time."""

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def enter(self, task: asyncio.Task[Any], seconds: float) -> None:
        """Start the clock on `task`'s call."""
        loop = task.get_loop()
        due = loop.time() + seconds
        self._due[task] = due
        if due < self._timer_at:  # calls come in deadline order unless timeouts differ
            self._arm(loop, due)

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """The call is over: forget its deadline. True when it was cancelled for having
        passed it."""
        self._due.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        # The loop may run a timer up to its clock's resolution early: whatever was due
        # by the time it was armed for counts as due.
        now = max(loop.time(), self._timer_at)
        self._timer, self._timer_at = None, math.inf
        following = math.inf
        for task, due in list(self._due.items()):
            if due <= now:
                del self._due[task]
                self._expired.add(task)
                task.cancel()
            else:
                following = min(following, due)
        if following < math.inf:
            self._arm(loop, following)


NO_TIMEOUT = aiohttp.ClientTimeout(total=None)


async def send(session: aiohttp.ClientSession, request: OutboundRequest, *,
               timeout: float, now: Callable[[], float],
               body_limit: int = DEFAULT_BODY_LIMIT,
               deadlines: CallDeadlines | None = None) -> OutboundResult:
    """Make the call; every failure becomes a result (refusals are not retryable).
    `now` gives the Unix time an HTTP-date `Retry-After` is measured from (the broker's
    clock). With `deadlines`, the timeout is kept there instead of by aiohttp."""
    started = time.perf_counter()
    task = asyncio.current_task() if deadlines is not None else None

    def elapsed() -> float:
        # Milliseconds to two places; round() to a whole number is a few times
        # cheaper than round(x, 2), which goes through a decimal string.
        return round((time.perf_counter() - started) * 100_000) / 100

    try:
        url, refused = _target(request.url)
        if url is None:
            return OutboundResult(None, elapsed(), error=refused, refused=True)
        if deadlines is not None and task is not None:
            deadlines.enter(task, timeout)
        # Awaited and released in `finally` rather than entered with `async with`: the
        # same release of the connection, without the context manager's two extra
        # coroutines per call (~2 % of a webhook delivery's instructions).
        resp = await session.request(
            request.method, url, headers=request.headers, data=request.body or None,
            allow_redirects=False, timeout=_timeout(timeout) if task is None else NO_TIMEOUT,
        )
        try:
            # Most answers have no body (204, or a length of 0): no reader to iterate.
            raw = b"" if resp.content.at_eof() else await _read_capped(resp, body_limit)
        finally:
            resp.release()
        status = resp.status
        headers = resp.headers
        retry_after = headers.get("Retry-After")
        return OutboundResult(
            status, elapsed(), raw[:body_limit].decode(errors="replace") if raw else "",
            len(raw) > body_limit, headers.get("Content-Type"),
            None if status < 400 else f"HTTP {status} {resp.reason or ''}".strip(),
            # The clock is read only when there is a date to measure against.
            retry_after=None if retry_after is None
            else retry_after_seconds(retry_after, now()),
        )
    except OutboundRefused as exc:
        return OutboundResult(None, elapsed(), error=str(exc), refused=True)
    except (aiohttp.ClientError, OSError) as exc:
        reason = refused_reason(exc)
        if reason:
            return OutboundResult(None, elapsed(), error=reason, refused=True)
        return OutboundResult(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    except TimeoutError:
        return OutboundResult(None, elapsed(), error=f"timed out after {timeout:g}s")
    except ValueError as exc:  # a URL yarl cannot parse
        return OutboundResult(None, elapsed(), error=f"bad request: {exc}", refused=True)
    except asyncio.CancelledError:
        # Cancelled by `deadlines` alone (not also by a stop): a timeout like aiohttp's.
        if deadlines is None or task is None or not deadlines.leave(task) or task.uncancel():
            raise
        return OutboundResult(None, elapsed(), error=f"timed out after {timeout:g}s")
    finally:
        if deadlines is not None and task is not None and deadlines.leave(task):
            # Cancelled for its deadline, but the cancel surfaced as another error: the
            # task is not left counted as cancelling (asyncio.timeout, TaskGroup read it).
            task.uncancel()


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One timeout object per distinct value: ClientTimeout is immutable, and building
    one is a measurable share of a call."""
    return aiohttp.ClientTimeout(total=seconds)


@functools.lru_cache(maxsize=256)
def _target(url: str) -> tuple[yarl.URL, None] | tuple[None, str]:
    """An encoded URL parsed and checked once (a webhook's URL is the same on every call,
    and yarl URLs are immutable): (the URL, None), or (None, why it is refused). A URL
    that cannot be parsed raises ValueError."""
    parsed = yarl.URL(url, encoded=True)
    if parsed.host is None or parsed.scheme not in ("http", "https"):
        return None, f"not an http(s) URL: {url}"
    try:
        check_host(parsed.host)
    except OutboundRefused as exc:
        return None, str(exc)
    return parsed, None


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of the body (one more tells that it was truncated)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(16384):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]


def clean_header_value(value: str) -> str:
    """A header value with CR, LF and other control characters removed: a value from
    event data can never start a new header or end the header block."""
    return "".join(ch for ch in value if ch == "\t" or not (ord(ch) < 32 or ord(ch) == 127))


def header_name_ok(name: str) -> bool:
    """An RFC 9110 token."""
    return bool(name) and all(ch.isascii() and (ch.isalnum() or ch in "!#$%&'*+-.^_`|~")
                              for ch in name)


def secret_headers(headers: Mapping[str, str], extra: frozenset[str] = frozenset()
                   ) -> frozenset[str]:
    """Header names (lower case) that carry credentials."""
    names = {"authorization", "proxy-authorization", "webhook-signature", "cookie",
             "x-api-key", "api-key"} | set(extra)
    return frozenset(n.lower() for n in headers if n.lower() in names)


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close the session and its resolver (a connector leaves a resolver it was given
    open), then give the transports a moment to release their sockets."""
    await session.close()
    resolver = _RESOLVERS.pop(session, None)
    if resolver is not None:
        await resolver.close()
    await asyncio.sleep(0)
