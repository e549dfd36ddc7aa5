"""Who may call what: the browser guard (Origin, JSON-only writes) and the bearer-token
check that sets `request["principal"]` and enforces each operation's scope.

The scope an operation needs is in its entry of the OpenAPI table
(`broker.http.openapi_ops.OPERATIONS`), so the document and the check cannot drift."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

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


OPERATION = "operation"
"""Request key: the operation found for it (both middlewares ask)."""


def operation_of(request: web.Request) -> Op | None:
    """The table entry of the route this request matched; None when none matched
    (the router answers 404 or 405)."""
    if OPERATION in request:
        found: Op | None = request[OPERATION]
        return found
    request[OPERATION] = found = _operation_of(request)
    return found


def _operation_of(request: web.Request) -> Op | None:
    info = request.match_info.route.resource.get_info() \
        if request.match_info.route.resource is not None else {}
    path = info.get("path") or info.get("formatter")
    if not path or request.match_info.http_exception is not None:
        return None
    pattern = info.get("pattern")
    for name, _ in GROUP.findall(pattern.pattern if pattern is not None else ""):
        if name != "kind":  # the configuration kinds share one entry, `/v1/{kind}`
            path = path.replace("{" + name + "}", request.match_info.get(name, ""))
    method = "GET" if request.method == "HEAD" else request.method
    return OPERATIONS.get((method, path), UNKNOWN)


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


def browser_guard(settings: Settings) -> Middleware:
    """Web pages cannot drive the API: a request carrying another site's `Origin` is
    refused, and writes must be JSON (a cross-site form or `text/plain` fetch cannot
    send that without a CORS preflight, which this broker never grants)."""
    allowed = own_origins(settings)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in allowed:
            raise Forbidden(f"requests from the web origin {origin!r} are refused: the API"
                            " takes calls from its own origin only (setting"
                            " allowed_origins)", origin=origin)
        op = operation_of(request)
        if (request.method in WRITES and op is not None and op.tag not in ("sources", "proxy")
                and request.body_exists):
            binary_event = op.id == "publish_events" and "ce-specversion" in request.headers
            if not binary_event and not is_json(request.content_type):
                raise UnsupportedMediaType(
                    f"{request.method} {request.path} takes application/json, not"
                    f" {request.headers.get('Content-Type', 'a body without Content-Type')!r}",
                    content_type=request.headers.get("Content-Type"))
        return await handler(request)

    return guard


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


def authentication(settings: Settings, tokens: Callable[[], Tokens],
                   public_mount: Callable[[str], bool]) -> Middleware:
    """Sets `request["principal"]`: LOCAL with authentication off; else the token's,
    checked against the scope the operation needs (401 no or unknown token, 403 a
    token without the scope)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not settings.auth:
            request["principal"] = LOCAL
            return await handler(request)
        op = operation_of(request)
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
