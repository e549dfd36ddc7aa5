"""`/proxy/{name}/...`: forward any method to a mount's upstream, streaming both ways."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from broker.errors import UpstreamError
from broker.http.auth import BEARER_USED
from broker.http.util import broker_of
from broker.outbound import refused_reason
from broker.proxy import HOP_BY_HOP, BodyCapture, Mount, Proxy, check_tail, request_id

routes = web.RouteTableDef()

CHUNK = 64 * 1024


def _hop_by_hop(headers: MultiMapping[str]) -> frozenset[str]:
    """Hop-by-hop names: the fixed set plus those the Connection header lists."""
    named = {h.strip().lower() for v in headers.getall("Connection", []) for h in v.split(",")}
    return HOP_BY_HOP | named


def upstream_headers(request: web.Request, rid: str) -> CIMultiDict[str]:
    drop = _hop_by_hop(request.headers) | {"host", "expect"}
    if request.get(BEARER_USED):
        drop |= {"authorization"}  # the opsbus token is for the broker, not the upstream
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Request-Id"] = rid
    return headers


def client_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    drop = _hop_by_hop(upstream.headers)
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in drop)


async def _stream(request: web.Request, capture: BodyCapture | None) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        if capture is not None:
            capture.add(chunk)
        yield chunk


@routes.route("*", "/proxy/{name}")
# `[\s\S]`, not `.`: an encoded newline (%0A) in the path must still be forwarded.
@routes.route("*", r"/proxy/{name}/{tail:[\s\S]*}")
async def forward(request: web.Request) -> web.StreamResponse:
    proxy = broker_of(request).proxy
    mount = proxy.mount(request.match_info["name"])
    tail = request.match_info.get("tail", "")
    # The raw (still percent-encoded) tail, so `%2F` reaches the upstream as sent.
    raw_path = request.rel_url.raw_path
    prefix = f"/proxy/{request.match_info['name']}"
    raw_tail = raw_path[len(prefix) + 1:] if raw_path.startswith(prefix + "/") else tail
    check_tail(mount.name, raw_tail)
    rid = request_id(request.headers.get("X-Request-Id"))
    sent = BodyCapture(mount.max_body_capture if mount.capture_bodies else 0)
    received = BodyCapture(mount.max_body_capture if mount.capture_bodies else 0)
    call: dict[str, Any] = {
        "proxy": mount.name, "method": request.method, "path": "/" + tail,
        "query": {k: (vs if len(vs := request.query.getall(k)) > 1 else vs[0])
                  for k in request.query},
        "status": None, "latency_ms": None, "request_id": rid, "error": None,
    }
    started = time.perf_counter()
    body = _stream(request, sent) if request.body_exists else None
    try:
        upstream = await proxy.session.request(
            request.method, mount.target(raw_tail, request.rel_url.raw_query_string),
            headers=upstream_headers(request, rid), data=body, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=mount.timeout),
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        refused = refused_reason(exc)
        error = refused or (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        finish(proxy, mount, call, started, sent, received, status=502, error=error)
        if refused:
            raise UpstreamError(f"proxy {mount.name}: the call to {mount.upstream} was refused"
                                f" by the outbound guard ({refused})", proxy=mount.name,
                                request_id=rid, refused=True) from None
        raise UpstreamError(f"proxy {mount.name}: the upstream {mount.upstream} could not"
                            f" be reached ({error})", proxy=mount.name, request_id=rid) from None
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                  headers=client_headers(upstream))
    stream_error: str | None = None
    try:
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(CHUNK):
            received.add(chunk)
            await response.write(chunk)
        await response.write_eof()
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        # Headers are gone already: the client sees a cut-off body, the event says why.
        stream_error = f"{type(exc).__name__} while streaming: {exc}"
    finally:
        upstream.release()
        finish(proxy, mount, call, started, sent, received, status=upstream.status,
               error=stream_error)
    return response


def finish(proxy: Proxy, mount: Mount, call: dict[str, Any], started: float, sent: BodyCapture,
           received: BodyCapture, *, status: int, error: str | None) -> None:
    call.update(status=status, error=error,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
                request_bytes=sent.size, response_bytes=received.size)
    if mount.capture_bodies:
        call["request_body"] = sent.summary()
        call["response_body"] = received.summary()
    proxy.record(mount, call)
