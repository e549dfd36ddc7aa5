"""Who may call what: the browser guard (Origin, JSON-only writes) and the bearer-token
check that sets `request["principal"]` and enforces each operation's scope, in the
guard every route's handler is wrapped in.

The scope an operation needs is in its entry of the OpenAPI table
(`broker.http.openapi_ops.OPERATIONS`), so the document and the check cannot drift."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import (
    AbstractResource,
    AbstractRoute,
    ResourceRoute,
    UrlMappingMatchInfo,
)

from broker.auth.principal import ANONYMOUS, LOCAL, Principal
from broker.auth.tokens import CACHE_MAX, UNCACHED, Tokens
from broker.errors import Forbidden, Unauthorized, UnsupportedMediaType
from broker.http.openapi import GROUP
from broker.http.openapi_ops import OPERATIONS, Op
from broker.http.problems import problem_for
from broker.settings import Settings

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import _InfoDict  # what get_info answers
    from yarl import URL

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"application/json", "application/cloudevents+json",
                        "application/cloudevents-batch+json"})
BEARER_USED = "bearer_used"
"""Request key: the Authorization header carried the opsbus token (a proxy drops it;
set on the proxy's routes only, its one reader)."""
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
        return self.of_request(request)[0]

    def of_request(self, request: web.Request) -> tuple[Op | None, bool]:
        """`of`, and whether the entry holds for every request of the route and method."""
        match_info = request.match_info
        resource = match_info.route.resource
        if resource is None or match_info.http_exception is not None:
            return None, True
        method = "GET" if request.method == "HEAD" else request.method
        found = self._fixed.get((resource, method))
        if found is not None:
            return found, True
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path:
            return None, True
        pattern = info.get("pattern")
        fixed = True
        for name, _ in GROUP.findall(pattern.pattern if pattern is not None else ""):
            if name != "kind":  # the configuration kinds share one entry, `/v1/{kind}`
                path = path.replace("{" + name + "}", match_info.get(name, ""))
                fixed = False
        op = OPERATIONS.get((method, path), UNKNOWN)
        if fixed:
            self._fixed[(resource, method)] = op
        return op, fixed


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


class _Plan:
    """What the checks of one route and method need, worked out on its first request."""

    __slots__ = ("binary_event", "json_body", "op", "proxy", "scope", "source_auth")

    def __init__(self, op: Op | None, method: str) -> None:
        self.op = op
        self.scope = op.needs(method) if op is not None else "any"
        """The scope a token needs; None when the route takes no API token."""
        self.json_body = (method in WRITES and op is not None
                          and op.tag not in ("sources", "proxy"))
        """A body must be JSON (browser_check)."""
        self.binary_event = op is not None and op.id == "publish_events"
        self.source_auth = op is not None and op.auth == "source"
        self.proxy = op is not None and op.tag == "proxy"


class Guard:
    """What every request passes before its handler, and the problem document for
    whatever the handler raises (`problems.problem_for`): the browser check, then
    `request["principal"]` — LOCAL with authentication off; else the token's, checked
    against the scope the operation needs (401 no or unknown token, 403 a token without
    the scope).

    It wraps each route's handler (`wrap`) instead of running as aiohttp middlewares:
    each middleware is a coroutine more per request and aiohttp adds one of its own as
    soon as there is any, so the two middlewares and their checks cost ~50,000
    instructions per request, as much as a sixth of aiohttp's whole request handling.
    What no route matches is answered by `unmatched`, the router's last resource, so a
    404 or 405 is checked and answered the same way."""

    def __init__(self, settings: Settings, tokens: Callable[[], Tokens],
                 public_mount: Callable[[str], bool]) -> None:
        self._settings = settings
        self._tokens = tokens
        self._public_mount = public_mount
        self._operations = Operations()
        self._origins = own_origins(settings)
        self._browser = browser_check(settings)
        self._secrets: dict[str, str] = {}
        """`Authorization` headers seen lately and the secret each carries."""

    def wrap(self, handler: Handler, *, matched: bool = True) -> Handler:
        """`handler` behind the checks, its errors answered as problem documents
        (`matched=False`: the handler of requests no route matches)."""
        plans: dict[str, _Plan] = {}
        plan_of = self._plan
        admit = self._admit

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                method = request.method
                plan = plans.get(method)
                if plan is None:
                    plan, fixed = plan_of(request, matched)
                    if fixed:
                        plans[method] = plan
                principal = admit(request, plan)
                if principal is UNCACHED:
                    principal = await self._admit_slowly(request, plan)
                request["principal"] = principal
                if plan.proxy and principal is not ANONYMOUS and principal is not LOCAL:
                    request[BEARER_USED] = True
                return await handler(request)
            except Exception as exc:
                return problem_for(request, exc)

        return guarded

    def _plan(self, request: web.Request, matched: bool) -> tuple[_Plan, bool]:
        """The request's plan, and whether it holds for every request of its route and
        method (not when the operation depends on a path value: `{verb:a|b}`)."""
        op, fixed = self._operations.of_request(request) if matched else (None, True)
        return _Plan(op, request.method), fixed

    def _scope(self, request: web.Request, plan: _Plan) -> str | None:
        scope = plan.scope
        if scope is not None and plan.proxy \
                and self._public_mount(request.match_info.get("name", "")):
            return None
        return scope

    def _admit(self, request: web.Request, plan: _Plan) -> Principal:
        """The principal of a request allowed in (Unauthorized or Forbidden otherwise);
        UNCACHED when the store has to be asked (`_admit_slowly`). Most requests carry a
        JSON Content-Type and a token seen before: those take a few lookups."""
        headers = request.headers
        # Header names as aiohttp's `istr` constants: a plain `str` name is folded to
        # its case-insensitive form on every lookup, ~500 instructions each.
        origin = headers.get(hdrs.ORIGIN)
        if (origin is not None and origin.rstrip("/") not in self._origins) or (
                plan.json_body and headers.get(hdrs.CONTENT_TYPE) not in JSON_TYPES):
            # The full check, which may still find nothing wrong (a body-less write, a
            # binary-mode event, a JSON type with parameters) or names the refusal.
            self._browser(request, plan.op)
        if not self._settings.auth:
            return LOCAL
        scope = self._scope(request, plan) if plan.proxy else plan.scope
        if scope is None:
            return UNCACHED if plan.source_auth else ANONYMOUS
        header = headers.get(hdrs.AUTHORIZATION, "")
        secret = self._secrets.get(header)
        if secret is None:
            secret = bearer_secret(request)
            if len(self._secrets) >= CACHE_MAX:
                self._secrets.clear()  # unknown headers must not grow it without bound
            self._secrets[header] = secret
        principal = self._tokens().cached(secret)
        if principal is UNCACHED or (principal is not None and (
                scope == "any" or "admin" in principal.scopes or scope in principal.scopes)):
            return principal  # `_allowed` of a principal allowed, without its frame
        return _allowed(principal, scope)

    async def _admit_slowly(self, request: web.Request, plan: _Plan) -> Principal:
        """`_admit` for a token to look up in the store, or a source's caller."""
        scope = self._scope(request, plan)
        if scope is None:
            # A source may also be posted to with an API token; any other Authorization
            # header is the source's own business (its shared secret), not a 401.
            return await source_caller(request, self._tokens())
        return _allowed(await self._tokens().authenticate(bearer_secret(request)), scope)

    def unmatched(self) -> AbstractResource:
        """The resource to register after every route: it takes any request no route
        took and answers 404, or 405 naming the methods its path takes (as aiohttp
        would), once the request passed the checks (a token is needed to learn that a
        path does not exist)."""
        resource = Unmatched()

        async def no_route(request: web.Request) -> web.StreamResponse:
            allowed: set[str] = set()
            for other in request.app.router.resources():
                if other is not resource:
                    allowed |= (await other.resolve(request))[1]
            if allowed:
                raise web.HTTPMethodNotAllowed(request.method, allowed)
            raise web.HTTPNotFound()

        resource.route = ResourceRoute("*", self.wrap(no_route, matched=False), resource)
        return resource


def _allowed(principal: Principal | None, scope: str) -> Principal:
    if principal is None:
        raise Unauthorized("the API token is not valid (unknown or revoked)")
    if scope != "any" and not principal.has(scope):
        raise Forbidden(missing_scope(principal, scope), scope=scope, token=principal.name)
    return principal


class Unmatched(AbstractResource):
    """Last in the router (indexed under `/`, which every path reaches last): matches
    what nothing before it did. Not a served route: it has no path to document."""

    def __init__(self) -> None:
        super().__init__()
        self.route: ResourceRoute | None = None

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, **kwargs: str) -> URL:
        raise RuntimeError("the unmatched requests' resource has no URL")

    async def resolve(self, request: web.Request) -> tuple[UrlMappingMatchInfo | None,
                                                           set[str]]:
        assert self.route is not None
        return UrlMappingMatchInfo({}, self.route), set()

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the unmatched requests' resource takes no prefix")

    def get_info(self) -> _InfoDict:
        return {}  # no path: openapi.served passes it by

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter([self.route] if self.route is not None else [])
