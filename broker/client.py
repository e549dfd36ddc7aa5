"""An async HTTP client for the broker, used by the CLI and the console."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import IO, Any, TypedDict, Unpack, cast
from urllib.parse import quote

import aiohttp
import orjson
import yarl

from broker.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    OpsbusError,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from broker.numbers import NumberError, whole_number

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8787"

_BY_STATUS: dict[int, type[OpsbusError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: TooLarge, 503: Unavailable,
}


def _restoring(restore: bool) -> dict[str, str]:
    return {"Opsbus-Restore": "true"} if restore else {}


class BrokerUnreachable(OpsbusError):
    """The broker could not be reached (refused, timed out, DNS)."""

    status = 503
    title = "Broker unreachable"
    slug = "unreachable"


class ClientError(OpsbusError):
    """The broker answered with an error; `problem` is its problem document."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("detail") or problem.get("title") or "error"))
        self.problem_doc = problem
        self.status = int(problem.get("status", 500))
        self.title = str(problem.get("title", "Error"))


class _RequestOptions(TypedDict, total=False):
    """The keyword arguments of `OpsbusClient.request`."""

    json: Any
    data: bytes | None
    headers: dict[str, str] | None
    params: dict[str, Any] | None
    timeout: float | None


def _error(status: int, body: bytes) -> OpsbusError:
    try:
        doc = orjson.loads(body)
        if not isinstance(doc, dict):
            raise ValueError
    except ValueError:
        doc = {"status": status, "title": "Error", "detail": body[:200].decode(errors="replace")}
    doc.setdefault("status", status)
    err = ClientError(doc)
    kind = _BY_STATUS.get(status)
    if kind is not None:
        typed = kind(err.detail, **{k: v for k, v in doc.items()
                                    if k not in ("type", "title", "status", "detail")})
        typed.problem_doc = doc  # type: ignore[attr-defined]
        return typed
    return err


def check_url(url: str) -> str:
    """The broker URL, or BadRequest saying what is wrong with it (before any request,
    which would fail with an error about something else)."""
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:
        raise BadRequest(f"broker URL {url!r} is invalid: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest(f"broker URL {url!r} is invalid: it must look like"
                         f" {DEFAULT_URL}")
    return url


class OpsbusClient:
    """`async with OpsbusClient(url) as client: await client.publish(event)`."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None,
                 timeout: float = 30.0) -> None:
        self.url = check_url(url).rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OpsbusClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=None, connect=10),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use the client inside 'async with'")
        return self._session

    async def request(self, method: str, path: str, *, json: Any = None,
                      data: bytes | None = None, headers: dict[str, str] | None = None,
                      params: dict[str, Any] | None = None, timeout: float | None = None
                      ) -> Any:
        """Call the API; the decoded JSON answer, or a typed error from its problem."""
        if json is not None:
            data = orjson.dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self.session.request(
                method, self.url + path, data=data, headers=headers, params=clean,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise _error(resp.status, body)
                if not body:
                    return None
                if resp.content_type.endswith("json"):
                    return orjson.loads(body)
                return body.decode()
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise BrokerUnreachable(f"cannot reach the broker at {self.url}: "
                                    f"{exc or type(exc).__name__}") from None

    # The API's answers are not validated here: each endpoint documents its shape, and
    # the casts below record which shape (object or array of objects) a method returns.
    async def _object(self, method: str, path: str, **options: Unpack[_RequestOptions]
                      ) -> dict[str, Any]:
        """`request` for an endpoint that answers a JSON object."""
        return cast("dict[str, Any]", await self.request(method, path, **options))

    async def _list(self, method: str, path: str, **options: Unpack[_RequestOptions]
                    ) -> list[dict[str, Any]]:
        """`request` for an endpoint that answers a JSON array of objects."""
        return cast("list[dict[str, Any]]", await self.request(method, path, **options))

    # -- events --------------------------------------------------------------------
    async def publish(self, event: dict[str, Any], *, restore: bool = False
                      ) -> dict[str, Any]:
        """Publish one structured event; {seq, id, duplicate}. `restore`: an administrator
        restores an export (the broker's own events are accepted, marked restored)."""
        return await self._object("POST", "/v1/events", data=orjson.dumps(event),
                                  headers={"Content-Type": "application/cloudevents+json",
                                           **_restoring(restore)})

    async def publish_batch(self, events: list[dict[str, Any]], *, restore: bool = False
                            ) -> list[dict[str, Any]]:
        """Publish a batch; one {seq, id, duplicate} per event, in order."""
        return await self._list(
            "POST", "/v1/events", data=orjson.dumps(events),
            headers={"Content-Type": "application/cloudevents-batch+json",
                     **_restoring(restore)})

    async def events(self, *, after: int = 0, limit: int = 100, filter: str | None = None,
                     **params: Any) -> dict[str, Any]:
        return await self._object("GET", "/v1/events", params={
            "after": after, "limit": limit, "filter": filter, **params})

    async def event(self, seq: int) -> dict[str, Any]:
        return await self._object("GET", f"/v1/events/{seq}")

    async def evaluate(self, event: dict[str, Any], expression: str | None = None,
                       filter: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"event": event}
        if filter is not None:
            body["filter"] = filter
        else:
            body["expression"] = expression
        return await self._object("POST", "/v1/filters/evaluate", json=body)

    # -- catalog ---------------------------------------------------------------------
    async def catalog(self) -> dict[str, Any]:
        """`GET /v1/catalog`: every catalogued source and type (no shapes)."""
        return await self._object("GET", "/v1/catalog")

    async def catalog_entry(self, source: str, type_: str) -> dict[str, Any]:
        """`GET /v1/catalog/{source}/{type}`: one entry with its inferred data shape."""
        path = f"/v1/catalog/{quote(source, safe='/')}/{quote(type_, safe='')}"
        return await self._object("GET", path)

    # -- configuration ---------------------------------------------------------------
    async def plugins(self) -> dict[str, Any]:
        """`GET /v1/plugins`: loaded plugins, versions, what they provide, load errors."""
        result: dict[str, Any] = await self.request("GET", "/v1/plugins")
        return result

    async def list_objects(self, kind: str) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", (await self._object("GET", f"/v1/{kind}"))[kind])

    async def put_object(self, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        return await self._object("PUT", f"/v1/{kind}/{quote(spec['name'], safe='')}",
                                  json=spec)

    async def whoami(self) -> dict[str, Any]:
        """The caller's token: name (the operator it records), scopes, source patterns."""
        return await self._object("GET", "/v1/whoami")

    async def tokens(self) -> list[dict[str, Any]]:
        """Named tokens (admin)."""
        return cast(list[dict[str, Any]], (await self._object("GET", "/v1/tokens"))["tokens"])

    async def create_token(self, name: str, scopes: list[str], sources: list[str]
                           ) -> dict[str, Any]:
        """A new named token (admin); `secret` is in this answer only."""
        return await self._object("POST", "/v1/tokens", json={
            "name": name, "scopes": scopes, "sources": sources})

    async def revoke_token(self, name: str) -> None:
        await self.request("DELETE", f"/v1/tokens/{quote(name, safe='')}")

    async def delete_object(self, kind: str, name: str) -> None:
        await self.request("DELETE", f"/v1/{kind}/{quote(name, safe='')}")

    # -- routes: dry runs and config status -------------------------------------------
    async def test_routes(self, events: list[dict[str, Any]] | None = None, *,
                          route: dict[str, Any] | None = None,
                          history: dict[str, Any] | None = None) -> dict[str, Any]:
        """`POST /v1/routes/test`: where `events` would go, or what the draft `route`
        would have matched over stored `history` ({since, until, limit}); no side effects."""
        return await self._object("POST", "/v1/routes/test", json={
            "route": route, "events": events, "history": history}, timeout=300)

    async def config_status(self) -> dict[str, Any]:
        """`GET /v1/config/status`: the config file, last reload and its error."""
        return await self._object("GET", "/v1/config/status")

    # -- queues, todo items and silences -------------------------------------------------
    async def queues(self) -> list[dict[str, Any]]:
        """Every queue with its open, claimed, snoozed and resolved counts."""
        return cast("list[dict[str, Any]]", (await self._object("GET", "/v1/queues"))["queues"])

    async def queue(self, name: str) -> dict[str, Any]:
        return await self._object("GET", f"/v1/queues/{quote(name, safe='')}")

    async def todos(self, *, queue: str | None = None, state: str | None = None,
                    owner: str | None = None, limit: int = 100, after: str | None = None
                    ) -> dict[str, Any]:
        """A page of items, newest activity first: {"items": [...], "next": cursor|None}."""
        return await self._object("GET", "/v1/todos", params={
            "queue": queue, "state": state, "owner": owner, "limit": limit, "after": after})

    async def todo(self, todo_id: int) -> dict[str, Any]:
        """One item with its events and history."""
        return await self._object("GET", f"/v1/todos/{int(todo_id)}")

    async def todo_op(self, todo_id: int, op: str, **body: Any) -> dict[str, Any]:
        """claim, release, resolve, comment, snooze or reemit; body members as keywords
        (`operator=` always). Answers {"item": {...}} (+ "event" for reemit)."""
        return await self._object("POST", f"/v1/todos/{int(todo_id)}/{quote(op, safe='')}",
                                  json=body)

    async def add_silence(self, **body: Any) -> dict[str, Any]:
        """matcher=, duration= or ends_at=, comment=, operator=, queue=."""
        return await self._object("POST", "/v1/silences", json=body)

    async def silences(self, *, all: bool = False) -> list[dict[str, Any]]:
        params = {"all": "true"} if all else None
        answer = await self._object("GET", "/v1/silences", params=params)
        return cast("list[dict[str, Any]]", answer["silences"])

    async def expire_silence(self, silence_id: int, operator: str | None = None
                             ) -> dict[str, Any]:
        return await self._object("DELETE", f"/v1/silences/{int(silence_id)}",
                                  json={"operator": operator} if operator else None)

    # -- subscriptions, pull consumers and actions ----------------------------------------
    async def subscription(self, name: str) -> dict[str, Any]:
        """A subscription's spec (secret redacted) with its `status`."""
        return await self._object("GET", f"/v1/subscriptions/{quote(name, safe='')}")

    async def deliveries(self, name: str, *, state: str | None = None, after: int = 0,
                         limit: int = 100) -> dict[str, Any]:
        """`{"deliveries": [... with "attempts_log"], "next"}`, oldest first."""
        return await self._object(
            "GET", f"/v1/subscriptions/{quote(name, safe='')}/deliveries",
            params={"state": state, "after": after, "limit": limit})

    async def retry_delivery(self, name: str, delivery_id: int) -> dict[str, Any]:
        return await self._object(
            "POST", f"/v1/subscriptions/{quote(name, safe='')}/deliveries/{delivery_id}/retry")

    async def pause_subscription(self, name: str, operator: str | None = None,
                                 *, resume: bool = False) -> dict[str, Any]:
        """Pause (or with `resume=True` resume) a subscription; its status."""
        verb = "resume" if resume else "pause"
        return await self._object("POST", f"/v1/subscriptions/{quote(name, safe='')}/{verb}",
                                  json={"operator": operator} if operator else {})

    async def receive(self, name: str, *, max: int = 10, wait_s: float = 20.0,
                      lease_s: float | None = None) -> list[dict[str, Any]]:
        """Long-poll a pull subscription: `[{"lease", "seq", "delivery_count", "event"}]`."""
        body: dict[str, Any] = {"max": max, "wait_s": wait_s}
        if lease_s is not None:
            body["lease_s"] = lease_s
        return await self._list("POST", f"/v1/subscriptions/{quote(name, safe='')}/receive",
                                  json=body, timeout=wait_s + self.timeout)

    async def settle(self, name: str, verb: str, leases: list[str], **extra: Any
                     ) -> dict[str, Any]:
        """`ack`, `release` (`delay=`), `reject` or `renew` (`lease_s=`) leases; Conflict
        (409) names the leases no longer held, and then nothing changed."""
        return await self._object("POST", f"/v1/subscriptions/{quote(name, safe='')}/{verb}",
                                  json={"leases": leases, **extra})

    async def action_jobs(self, name: str, *, after: int = 0, limit: int = 100
                          ) -> dict[str, Any]:
        return await self._object("GET", f"/v1/actions/{quote(name, safe='')}/jobs",
                                  params={"after": after, "limit": limit})

    async def run_todo_action(self, todo_id: int, action: str, operator: str,
                              params: dict[str, Any] | None = None, wait_s: float = 10.0
                              ) -> dict[str, Any]:
        """Run a queue's quick action on an item: `{"job", "result"}` (no result yet when
        the job outlasts `wait_s`)."""
        return await self._object(
            "POST", f"/v1/todos/{todo_id}/actions/{quote(action, safe='')}",
            json={"operator": operator, "params": params or {}, "wait_s": wait_s},
            timeout=wait_s + self.timeout)

    # -- administration ----------------------------------------------------------------
    async def store_check(self, quick: bool = False) -> dict[str, Any]:
        """`POST /v1/admin/store/check`: {ok, checks, findings, ...}."""
        return await self._object("POST", "/v1/admin/store/check",
                                  params={"quick": "true" if quick else None}, timeout=3600)

    async def download(self, path: str, out: IO[bytes],
                       progress: Callable[[int, int | None], None] | None = None
                       ) -> dict[str, str]:
        """POST `path` and write the answer's body to `out` as it arrives; the answer's
        headers. `progress(bytes so far, Content-Length)` after each chunk."""
        try:
            async with self.session.post(self.url + path,
                                         timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                done = 0
                async for chunk in resp.content.iter_chunked(1024 * 1024):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, resp.content_length)
                if resp.content_length is not None and done != resp.content_length:
                    raise BrokerUnreachable(f"the answer from {self.url} ended after {done}"
                                            f" of {resp.content_length} bytes")
                return dict(resp.headers)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise BrokerUnreachable(f"cannot reach the broker at {self.url}: "
                                    f"{exc or type(exc).__name__}") from None

    # -- stream ----------------------------------------------------------------------
    async def stream(self, *, after: int | None = None, filter: str | None = None,
                     reconnect: bool = True, retry_s: float = 1.0,
                     on_state: Any = None, q: str | None = None
                     ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """(seq, event) from `/v1/stream`, forever; reconnects and resumes after the
        last seq seen. `on_state("connected" | "disconnected", detail)` reports changes.
        `q` is a free-text search beside the CESQL `filter`."""
        last = after
        while True:
            params = {"filter": filter, "q": q}
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                async with self.session.get(
                    self.url + "/v1/stream", params={k: v for k, v in params.items() if v},
                    headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                ) as resp:
                    if resp.status >= 400:
                        raise _error(resp.status, await resp.read())
                    if on_state:
                        on_state("connected", None)
                    async for seq, event in _parse_sse(resp):
                        last = seq
                        if event is not None:  # None: the opening id, nothing to show
                            yield seq, event
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                if on_state:
                    on_state("disconnected", str(exc) or type(exc).__name__)
                if not reconnect:
                    raise BrokerUnreachable(f"stream from {self.url} ended: {exc}") from None
            else:
                if on_state:
                    on_state("disconnected", "the broker closed the stream")
                if not reconnect:
                    return
            await asyncio.sleep(retry_s)


async def _parse_sse(resp: aiohttp.ClientResponse
                     ) -> AsyncIterator[tuple[int, dict[str, Any] | None]]:
    """(seq, event) per cloudevent message; (seq, None) for a block that only sets the
    last event id (the stream's opening line), so a reconnect resumes from it."""
    seq: int | None = None
    seq_set = False
    data: list[bytes] = []
    kind = b"message"
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data and kind == b"cloudevent" and seq is not None:
                    yield seq, orjson.loads(b"\n".join(data))
                elif not data and seq is not None and seq_set:
                    yield seq, None
                data, kind, seq_set = [], b"message", False
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"id":
                try:
                    seq, seq_set = whole_number(value.decode("ascii", "replace")), True
                except NumberError:
                    raise OpsbusError(f"the stream sent id {value[:40]!r}, which is not an"
                                      " event seq: is this an opsbus broker?") from None
            elif field == b"data":
                data.append(value)
            elif field == b"event":
                kind = value
