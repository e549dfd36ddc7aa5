"""Helpers of the security suite: named tokens made through the API, calls as them."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.broker_process import AUTH, BrokerProcess


async def make_token(http: aiohttp.ClientSession, broker: BrokerProcess, name: str,
                     *scopes: str, sources: list[str] | None = None) -> str:
    """A named token created with the admin token; its secret."""
    async with http.post(broker.url + "/v1/tokens", headers=AUTH, json={
            "name": name, "scopes": list(scopes), "sources": sources or []}) as resp:
        assert resp.status == 201, await resp.text()
        secret: str = (await resp.json())["secret"]
        return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def call(http: aiohttp.ClientSession, method: str, url: str, secret: str | None, *,
               json: Any = None, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    """(status, decoded body, response) of a call made with `secret` (None: no token)."""
    sent = {"Authorization": f"Bearer {secret}" if secret else ""}
    async with http.request(method, url, json=json, data=data,
                            headers={**sent, **(headers or {})}) as resp:
        body = await resp.json() if resp.content_type.endswith("json") else await resp.text()
        return resp.status, body, resp
