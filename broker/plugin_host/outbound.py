"""The outbound HTTP client lent to plugin actions: the broker's guarded session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from broker.clock import Clock
from broker.outbound import OutboundRequest, open_session, send

MAX_BODY = 4096


class GuardedHttp:
    """`api.HttpClient` over `broker.outbound`: link-local and metadata addresses are
    never called, loopback and private ones only with `allow_private_targets`."""

    def __init__(self, allow_private: bool, clock: Clock) -> None:
        self.allow_private = allow_private
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def post_json(self, url: str, payload: Any, *, timeout: float = 10.0,
                        headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        if self._session is None:
            self._session = open_session(self.allow_private)
        request = OutboundRequest("POST", str(URL(url)), {
            "Content-Type": "application/json", **(headers or {})}, orjson.dumps(payload))
        result = await send(self._session, request, timeout=timeout, now=self.clock.epoch,
                            body_limit=MAX_BODY)
        if result.status is None:
            raise (PermissionError if result.refused else ConnectionError)(result.error)
        return result.status, result.body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
