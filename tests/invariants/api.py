"""A thin JSON client for the checker (its own, independent of broker/client.py)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.broker_process import BrokerProcess

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
NO_ANSWER = (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError)
"""What a request meets when the broker dies under it."""


def token_of(data_dir: Path) -> str | None:
    """The admin token a broker writes into its data directory, when it writes one."""
    path = data_dir / "admin.token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Api:
    """JSON in, JSON out against one broker (its port survives restarts). With `peers`
    (replicas on one PostgreSQL database), calls made with `spread` go round-robin to
    every replica; the others go to `broker`."""

    def __init__(self, session: aiohttp.ClientSession, broker: BrokerProcess,
                 peers: list[BrokerProcess] | None = None, store_url: str | None = None
                 ) -> None:
        self.session = session
        self.broker = broker
        self._operators: dict[str, dict[str, str]] = {}
        self.peers = peers or [broker]
        self.store_url = store_url
        """The PostgreSQL store the replicas share (None: the broker's SQLite file)."""
        self._turn = 0

    @property
    def url(self) -> str:
        return self.broker.url

    def spread_url(self) -> str:
        """The next replica's URL (the broker's own when it runs alone)."""
        self._turn += 1
        return self.peers[self._turn % len(self.peers)].url

    @property
    def headers(self) -> dict[str, str]:
        """The admin token: the suite's `--token`, which every replica accepts (each
        replica's own admin.token opens only that replica), else the data directory's."""
        token = self.broker.token or token_of(self.broker.data_dir)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def as_operator(self, name: str) -> dict[str, str]:
        """Headers that make a change as operator `name`: a named token with the read,
        operate and force scopes (created once, in the store every replica shares), or
        none where the broker runs without authentication and takes the body's
        `operator`."""
        if name not in self._operators:
            status, answer = await self.call("POST", "/v1/tokens", {
                "name": name, "scopes": ["read", "operate", "force"]})
            if status == 201:
                self._operators[name] = {"Authorization": f"Bearer {answer['secret']}"}
            elif status in (404, 405):
                self._operators[name] = {}
            else:
                raise AssertionError(f"could not create a token for {name}: {status} {answer}")
        return self._operators[name]

    async def call(self, method: str, path: str, body: Any = None, *,
                   params: dict[str, str] | None = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None, spread: bool = False
                   ) -> tuple[int, Any]:
        """(status, decoded JSON or None)."""
        if body is not None:
            data = orjson.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        # aiohttp warns that big raw bodies block the loop; a file-like one streams.
        payload: bytes | io.BytesIO | None = (
            io.BytesIO(data) if data is not None and len(data) > 256 * 1024 else data)
        base = self.spread_url() if spread else self.url
        async with self.session.request(method, base + path, data=payload, params=params,
                                        headers={**self.headers, **(headers or {})},
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                return resp.status, raw.decode(errors="replace")

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, answer = await self.call(method, path, body, **kw)
        if not 200 <= status < 300:
            raise AssertionError(f"{method} {path}: {status} {str(answer)[:300]}")
        return answer

    async def head(self) -> int:
        page = await self.ok("GET", "/v1/events", params={"order": "desc", "limit": "1"})
        return int(page["events"][0]["seq"]) if page["events"] else 0

    async def events(self, after: int = 0, until: int | None = None,
                     expression: str | None = None) -> list[dict[str, Any]]:
        """Stored events with after < seq (<= until), in seq order, optionally filtered."""
        out: list[dict[str, Any]] = []
        cursor: int | None = after
        while cursor is not None:
            params = {"after": str(cursor), "limit": "1000"}
            if expression is not None:
                params["filter"] = expression
            page = await self.ok("GET", "/v1/events", params=params)
            for item in page["events"]:
                if until is not None and item["seq"] > until:
                    return out
                out.append(item)
            cursor = page["next_after"]
            if until is not None and cursor is not None and cursor >= until:
                break
        return out
