"""Silences: time-boxed mutes that stop matching events from opening new todo items.

A silence matches on the item's group key (`{"key": "<glob>"}`) or on the event
(`{"filter": <dialect object or CESQL string>}`), optionally only in one queue. While
it holds, matching events are still stored and still attach to (and resolve) existing
items; they just open no new item. Silences end by themselves at `ends_at`.
"""

from __future__ import annotations

from datetime import timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from broker.errors import BadRequest, NotFound, OpsbusError
from broker.filters import Filter, compile_filter
from broker.routing import check_name
from broker.timeutil import parse_duration, parse_rfc3339, seconds_between, to_rfc3339
from broker.todos.model import Silence
from broker.todos.repository import SilenceRepository

if TYPE_CHECKING:
    from broker.bus import Bus, WriteContext
    from broker.clock import Clock

SILENCE_FIELDS = ("matcher", "queue", "duration", "ends_at", "comment", "operator")


def parse_matcher(matcher: Any) -> dict[str, Any]:
    """`{"key": glob}` or `{"filter": spec}`, normalised; BadRequest naming the problem."""
    if not isinstance(matcher, dict) or len(matcher) != 1:
        raise BadRequest('matcher must be {"key": "<glob>"} or {"filter": <filter>}',
                         field="matcher")
    ((kind, value),) = matcher.items()
    if kind == "key":
        if not isinstance(value, str) or not value:
            raise BadRequest("matcher.key must be a non-empty glob pattern", field="matcher")
        return {"key": value}
    if kind == "filter":
        # compile_filter reads null, "" and {} as match-all: here that is a slip, not a
        # wish to mute every queue, which `{"key": "*"}` says plainly.
        if value is None or value == {} or (isinstance(value, str) and not value.strip()):
            raise BadRequest('matcher.filter is empty; to silence everything use'
                             ' {"key": "*"}', field="matcher")
        try:
            return {"filter": compile_filter(value, strict=True).spec}
        except OpsbusError as exc:
            raise BadRequest(f"matcher.filter: {exc.detail}", field="matcher",
                             **exc.extra) from None
    raise BadRequest(f"matcher: unknown kind {kind!r} (use key or filter)", field="matcher")


def parse_end(body: dict[str, Any], start: str) -> str:
    """`ends_at` (RFC 3339) or `duration` (`2h`) from `start`: exactly one of them."""
    if ("duration" in body) == ("ends_at" in body):
        raise BadRequest("give either duration (like 2h) or ends_at (RFC 3339)",
                         field="duration")
    if "duration" in body:
        seconds = parse_duration(body["duration"], "duration")
        if seconds <= 0:
            raise BadRequest("duration must be longer than zero", field="duration")
        return to_rfc3339(parse_rfc3339(start) + timedelta(seconds=seconds))
    try:
        ends_at = to_rfc3339(parse_rfc3339(str(body["ends_at"])))
    except ValueError:
        raise BadRequest(f"ends_at {body['ends_at']!r} is not an RFC 3339 time",
                         field="ends_at") from None
    if ends_at <= start:
        raise BadRequest("ends_at is in the past", field="ends_at")
    return ends_at


def describe(silence: Silence, at: str) -> dict[str, Any]:
    """The API form at stamp `at`: the stored silence plus whether it holds and the
    seconds left."""
    remaining = seconds_between(at, silence.ends_at)
    return {"id": silence.id, "matcher": silence.matcher, "queue": silence.queue,
            "comment": silence.comment, "author": silence.author,
            "created_at": silence.created_at, "ends_at": silence.ends_at,
            "expired_by": silence.expired_by, "active": silence.is_active(at),
            "remaining_s": max(0, round(remaining))}


class Silences:
    """Create, end, list and match silences (the store is the only state)."""

    def __init__(self, repo: SilenceRepository, bus: Bus, clock: Clock) -> None:
        self.repo = repo
        self.bus = bus
        self.clock = clock
        self._filters: dict[int, Filter] = {}
        """Compiled `filter` matchers by silence id (a silence never changes its matcher)."""

    def describe(self, silence: Silence) -> dict[str, Any]:
        """The API form now (see `describe`)."""
        return describe(silence, self.clock.stamp())

    async def create(self, body: dict[str, Any], operator: str) -> Silence:
        unknown = sorted(set(body) - set(SILENCE_FIELDS))
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(unknown)}"
                             f" (known: {', '.join(SILENCE_FIELDS)})", field=unknown[0])
        matcher = parse_matcher(body.get("matcher"))
        queue = body.get("queue")
        if queue is not None:
            check_name(queue, "queue")
        comment = body.get("comment", "")
        if not isinstance(comment, str):
            raise BadRequest("comment must be a string", field="comment")
        created = self.clock.stamp()
        ends_at = parse_end(body, created)

        async def write(ctx: WriteContext) -> Silence:
            return await self.repo.writes(ctx.transaction).insert(
                matcher=matcher, queue=queue, comment=comment, author=operator,
                created_at=created, ends_at=ends_at)

        return await self.bus.run(write)

    async def expire(self, silence_id: int, operator: str) -> Silence:
        """End a silence now (a silence that already ended is returned unchanged)."""

        async def write(ctx: WriteContext) -> Silence | None:
            return await self.repo.writes(ctx.transaction).expire(
                silence_id, self.clock.stamp(), operator)

        silence = await self.bus.run(write)
        if silence is None:
            raise NotFound(f"no silence {silence_id}")
        return silence

    async def get(self, silence_id: int) -> Silence:
        silence = await self.repo.get(silence_id)
        if silence is None:
            raise NotFound(f"no silence {silence_id}")
        return silence

    async def matching(self, ctx: WriteContext, queue: str, key: str,
                       event: dict[str, Any], at: str) -> Silence | None:
        """The first silence holding at `at` that mutes this event in this queue."""
        for silence in await self.repo.writes(ctx.transaction).active(at):
            if silence.queue is not None and silence.queue != queue:
                continue
            if "key" in silence.matcher:
                if fnmatchcase(key, silence.matcher["key"]):
                    return silence
            elif self._filter(silence).matches(event):
                return silence
        return None

    def _filter(self, silence: Silence) -> Filter:
        compiled = self._filters.get(silence.id)
        if compiled is None:
            compiled = self._filters[silence.id] = compile_filter(silence.matcher["filter"])
        return compiled

    async def list(self, include_expired: bool = False) -> list[Silence]:
        """Silences holding now (every one with `include_expired`), newest first."""
        return await self.repo.recent(self.clock.stamp(), include_expired=include_expired)
