"""RFC 9457 problem+json for every error (`problem_for`, called by the guard every
handler is wrapped in); never a traceback."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from broker.errors import OpsbusError, TooLarge

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
DEFAULT_RETRY_AFTER_S = 1


def problem_response(doc: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=int(doc["status"]), body=orjson.dumps(doc), content_type=PROBLEM_TYPE,
        headers=headers,
    )


def _retry_after(status: int, seconds: int | None) -> dict[str, str] | None:
    """Every 503 and 429 says when to come back (a client without it retries at once, or
    never)."""
    if status not in (429, 503):
        return None
    return {"Retry-After": str(seconds if seconds is not None else DEFAULT_RETRY_AFTER_S)}


def _http_problem(exc: web.HTTPException, request: web.Request) -> dict[str, Any]:
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 404:
        detail = f"no such endpoint: {request.method} {request.path}"
    elif exc.status == 405:
        detail = f"{request.method} is not allowed on {request.path}"
    return {
        "type": "about:blank", "title": exc.reason, "status": exc.status, "detail": detail,
    }


def problem_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem document answering what a handler raised (an unexpected error is
    logged and answered 500); raises `exc` again when it is not answered here (a client
    gone, a timeout, an HTTP redirect)."""
    if isinstance(exc, OpsbusError):
        doc = exc.problem()
        doc.setdefault("instance", request.path)
        retry = getattr(exc, "retry_after", None)
        headers = _retry_after(exc.status, retry)
        if exc.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="opsbus"'}
        return problem_response(doc, headers=headers)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app._client_max_size
        return problem_response(TooLarge(
            f"request body over the limit of {limit} bytes (max_request_bytes)", limit=limit
        ).problem())
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        if "Retry-After" not in exc.headers:
            headers.update(_retry_after(exc.status, None) or {})
        return problem_response(_http_problem(exc, request), headers=headers)
    if isinstance(exc, ConnectionResetError | TimeoutError):
        raise exc
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem_response({
        "type": "about:blank", "title": "Internal Server Error", "status": 500,
        "detail": "the broker hit an unexpected error; it is logged",
    })
