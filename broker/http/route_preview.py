"""`POST /v1/routes/test` (dry runs), `GET /v1/routes` with the config file's state, and
`GET /v1/config/status`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.core import Broker
from broker.dryrun import evaluate_events, history, with_draft
from broker.errors import BadRequest, InvalidConfig, NotFound, OpsbusError
from broker.events import validate_event
from broker.http.config_api import describe
from broker.http.util import broker_of, json_response, read_object
from broker.routing import CompiledRoute, compile_route, validate_route
from broker.timeutil import parse_since

routes = web.RouteTableDef()

MAX_TEST_EVENTS = 5000
"""Most events one test request evaluates (the CLI sends files in chunks)."""
MAX_HISTORY = 200_000
"""Most stored events one history run scans."""
CONFIG_KINDS = {"queue": "queues", "subscription": "subscriptions", "action": "actions"}
"""Target kinds whose names must be configuration objects."""


@routes.get("/v1/routes")
async def list_routes(request: web.Request) -> web.Response:
    """The generic list, plus `config_error`: why the last edit of the file was refused."""
    config = broker_of(request).config
    return json_response({"routes": [describe(o) for o in config.list("routes")],
                          "config_error": config.last_error})


@routes.get("/v1/config/status")
async def config_status(request: web.Request) -> web.Response:
    return json_response(broker_of(request).config.status())


@routes.post("/v1/routes/test")
async def test_routes(request: web.Request) -> web.Response:
    broker = broker_of(request)
    body = await read_object(request)
    unknown = sorted(set(body) - {"route", "events", "history"})
    if unknown:
        raise BadRequest(f"unknown member(s) {', '.join(unknown)}; expected route, events,"
                         " history", field=unknown[0])
    draft = _draft(body.get("route"))
    events, hist = body.get("events"), body.get("history")
    if (events is None) == (hist is None):
        raise BadRequest("give exactly one of 'events' (a list of events) and 'history'")
    answer: dict[str, Any] = {"draft": draft.name if draft else None}
    if events is not None:
        answer.update(_test_events(broker, draft, events))
    else:
        if draft is None:
            raise BadRequest("'history' runs a draft route: give it in 'route'", field="route")
        answer["history"] = await _test_history(broker, draft, hist)
    return json_response(answer)


def _draft(spec: Any) -> CompiledRoute | None:
    if spec is None:
        return None
    try:
        return compile_route(validate_route(spec))
    except InvalidConfig as exc:
        extra = dict(exc.extra)
        extra["field"] = f"route.{extra['field']}" if extra.get("field") else "route"
        raise InvalidConfig(exc.detail, **extra) from None


def _test_events(broker: Broker, draft: CompiledRoute | None, events: Any) -> dict[str, Any]:
    if not isinstance(events, list):
        raise BadRequest("'events' must be a list of structured-mode events", field="events")
    if len(events) > MAX_TEST_EVENTS:
        raise BadRequest(f"at most {MAX_TEST_EVENTS} events per test; send them in chunks",
                         field="events")
    checked: list[dict[str, Any] | str] = []
    for index, event in enumerate(events):
        try:
            checked.append(validate_event(event))
        except OpsbusError as exc:
            checked.append(f"events[{index}]: {exc.detail}")
    table = with_draft(broker.router.routes, draft)
    report = evaluate_events(table, broker.router.hop_limit, checked, draft)
    report["summary"]["unknown_targets"] = _unknown_targets(broker, report["summary"]["targets"])
    return report


def _unknown_targets(broker: Broker, targets: dict[str, int]) -> list[str]:
    """Targets naming a queue/subscription/action that is not configured."""
    missing = []
    for target in targets:
        kind, name = target.split(":", 1)
        config_kind = CONFIG_KINDS.get(kind)
        if config_kind in broker.config.kinds:
            try:
                broker.config.get(config_kind, name)
            except NotFound:
                missing.append(target)
    return missing


async def _test_history(broker: Broker, draft: CompiledRoute, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise BadRequest("'history' must be an object {since, until, limit}", field="history")
    since = spec.get("since", "24h")
    until = spec.get("until")
    limit = spec.get("limit", 10_000)
    if not isinstance(since, str) or (until is not None and not isinstance(until, str)):
        raise BadRequest("history.since and history.until are durations (24h) or RFC 3339",
                         field="history.since")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_HISTORY:
        raise BadRequest(f"history.limit must be an integer from 1 to {MAX_HISTORY}",
                         field="history.limit")

    now = broker.clock.now()
    # The live queues, as routing uses them: the preview decides with the engine's queue.
    return await history(broker.store.events, draft,
                         since=parse_since(since, "history.since", now),
                         until=parse_since(until, "history.until", now) if until else None,
                         limit=limit, queues=broker.todos.queues.queue,
                         hop_limit=broker.router.hop_limit)
