"""Who may call what: the browser guard (Origin, JSON-only writes) and the bearer-token
check that sets `request["principal"]` and enforces each operation's scope, in one
middleware.

The scope an operation needs is in its entry of the OpenAPI table
(`broker.http.openapi_ops.OPERATIONS`), so the document and the check cannot drift."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractResource

from broker.auth.principal import ANONYMOUS, LOCAL, Principal
from broker.auth.tokens import Tokens
from broker.errors import Forbidden, Unauthorized, UnsupportedMediaType
from broker.http.openapi import GROUP
from broker.http.openapi_ops import OPERATIONS, Op
from broker.settings import Settings

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"application/json", "application/cloudevents+json",
                        "application/cloudevents-batch+json"})
BEARER_USED = "bearer_used"
"""Request key: the Authorization header carried the opsbus token (a proxy drops it)."""
UNKNOWN = Op("unknown", {}, scope="admin")
"""A served route missing from the table: it needs `admin` (closed, not open)."""


class Operations:
    """The table entry of the route a request matched, remembered per (resource,
    method) when the entry does not depend on the request's path values (one per app:
    the resources are its own)."""

    def __init__(self) -> None:
        self._fixed: dict[tuple[AbstractResource, str], Op] = {}

    def of(self, request: web.Request) -> Op | None:
        """None when no route matched (the router answers 404 or 405)."""
        match_info = request.match_info
        resource = match_info.route.resource
        if resource is None or match_info.http_exception is not None:
            return None
        method = "GET" if request.method == "HEAD" else request.method
        found = self._fixed.get((resource, method))
        if found is not None:
            return found
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path:
            return None
        pattern = info.get("pattern")
        fixed = True
        for name, _ in GROUP.findall(pattern.pattern if pattern is not None else ""):
            if name != "kind":  # the configuration kinds share one entry, `/v1/{kind}`
                path = path.replace("{" + name + "}", match_info.get(name, ""))
                fixed = False
        op = OPERATIONS.get((method, path), UNKNOWN)
        if fixed:
            self._fixed[(resource, method)] = op
        return op


def is_json(content_type: str) -> bool:
    return content_type in JSON_TYPES or (content_type.startswith("application/")
                                          and content_type.endswith("+json"))


def own_origins(settings: Settings) -> frozenset[str]:
    """Origins that are the broker itself: its listen address, and the loopback names
    of it when it listens on loopback or every interface."""
    scheme = "https" if settings.tls_cert else "http"
    port = settings.port
    hosts = {settings.host if ":" not in settings.host else f"[{settings.host}]"}
    if settings.host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""):
        hosts |= {"127.0.0.1", "localhost", "[::1]"}
    return frozenset(f"{scheme}://{h}:{port}" for h in hosts) | frozenset(settings.origins)


def browser_check(settings: Settings) -> Callable[[web.Request, Op | None], None]:
    """Web pages cannot drive the API: a request carrying another site's `Origin` is
    refused, and writes must be JSON (a cross-site form or `text/plain` fetch cannot
    send that without a CORS preflight, which this broker never grants)."""
    allowed = own_origins(settings)

    def check(request: web.Request, op: Op | None) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in allowed:
            raise Forbidden(f"requests from the web origin {origin!r} are refused: the API"
                            " takes calls from its own origin only (setting"
                            " allowed_origins)", origin=origin)
        if (request.method in WRITES and op is not None and op.tag not in ("sources", "proxy")
                and request.body_exists):
            binary_event = op.id == "publish_events" and "ce-specversion" in request.headers
            if not binary_event and not is_json(request.content_type):
                raise UnsupportedMediaType(
                    f"{request.method} {request.path} takes application/json, not"
                    f" {request.headers.get('Content-Type', 'a body without Content-Type')!r}",
                    content_type=request.headers.get("Content-Type"))

    return check


def bearer_secret(request: web.Request) -> str:
    """The secret of `Authorization: Bearer <secret>` (the scheme in any case)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("this needs an API token: 'Authorization: Bearer <token>' (the"
                           " broker's <data_dir>/admin.token, or one from `opsbus token"
                           " create`)")
    return secret.strip()


async def source_caller(request: web.Request, tokens: Tokens) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return await tokens.authenticate(secret.strip()) or ANONYMOUS
    return ANONYMOUS


def missing_scope(principal: Principal, scope: str) -> str:
    held = ", ".join(sorted(principal.scopes)) or "no scopes"
    return f"this needs the {scope!r} scope; token {principal.name!r} has {held}"


def access(settings: Settings, tokens: Callable[[], Tokens],
           public_mount: Callable[[str], bool]) -> Middleware:
    """The browser check, then `request["principal"]`: LOCAL with authentication off;
    else the token's, checked against the scope the operation needs (401 no or unknown
    token, 403 a token without the scope). One middleware for both: each layer is a
    coroutine more per request."""
    operations = Operations()
    browser = browser_check(settings)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        op = operations.of(request)
        browser(request, op)
        if not settings.auth:
            request["principal"] = LOCAL
            return await handler(request)
        scope = op.needs(request.method) if op is not None else "any"
        if scope is not None and op is not None and op.tag == "proxy" \
                and public_mount(request.match_info.get("name", "")):
            scope = None
        if scope is None:
            # A source may also be posted to with an API token; any other Authorization
            # header is the source's own business (its shared secret), not a 401.
            request["principal"] = ANONYMOUS
            if op is not None and op.auth == "source":
                request["principal"] = await source_caller(request, tokens())
            return await handler(request)
        principal = await tokens().authenticate(bearer_secret(request))
        if principal is None:
            raise Unauthorized("the API token is not valid (unknown or revoked)")
        if scope != "any" and not principal.has(scope):
            raise Forbidden(missing_scope(principal, scope), scope=scope,
                            token=principal.name)
        request["principal"] = principal
        request[BEARER_USED] = True
        return await handler(request)

    return authenticate
