"""Check real requests and answers against the broker's own OpenAPI document (openapi-core)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict


@dataclass
class CheckedRequest:
    """openapi-core's request protocol over what the test sent."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class CheckedResponse:
    """openapi-core's response protocol over what the broker answered."""

    status_code: int
    data: bytes
    content_type: str
    headers: Headers


class ApiChecker:
    """Makes calls with an aiohttp session and validates each request and answer against
    the document; `checked` lists (method, path template, status) of every call."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, doc: dict[str, Any],
                 token: str | None = None):
        self.http = http
        # A broker running without auth ignores the header; the document still asks for it.
        self.token = token or "no-auth"
        self.base_url = base_url
        json_types = ("application/cloudevents+json", "application/cloudevents-batch+json",
                      "application/problem+json")
        self.openapi = OpenAPI.from_dict(doc, config=Config(
            extra_media_type_deserializers={t: orjson.loads for t in json_types}))
        self.checked: list[tuple[str, str, int]] = []

    async def call(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                   check_request: bool = True) -> tuple[int, Any]:
        """Send, validate the answer (and the request when it was accepted), return
        (status, decoded JSON or text)."""
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        if json is not None:
            data = orjson.dumps(json)
            headers.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base_url + path, data=data, headers=headers,
                                     params=params) as resp:
            body = await resp.read()
            answer_headers = Headers(list(resp.headers.items()))
            status = resp.status
            url = resp.url
        split = urlsplit(str(url))
        request = CheckedRequest(
            host_url=f"{split.scheme}://{split.netloc}", path=split.path, method=method.lower(),
            body=data, content_type=headers.get("Content-Type", "").lower(),
            parameters=RequestParameters(query=ImmutableMultiDict(params or {}),
                                         header=Headers(list(headers.items()))))
        response = CheckedResponse(status, body,
                                   answer_headers.get("Content-Type", "").lower(),
                                   answer_headers)
        if check_request and status < 400:  # refused requests are often refused on purpose
            self.openapi.validate_request(request)
        self.openapi.validate_response(request, response)
        self.checked.append((method.upper(), split.path, status))
        is_json = "json" in response.content_type
        return status, orjson.loads(body) if is_json and body else body.decode(errors="replace")
