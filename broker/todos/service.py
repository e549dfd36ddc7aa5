"""The todo service: what operators do to items (claim, release, resolve, comment,
snooze, re-emit), each change written and announced in one unit of work."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from broker.errors import BadRequest, NotFound
from broker.events import encoded_size, validate_event
from broker.reserved import RESTORED, ReservedEvent, refusal, reserved_attribute
from broker.timeutil import parse_duration, parse_rfc3339, to_rfc3339
from broker.todos import changes
from broker.todos.model import TodoItem
from broker.todos.queues import QueueRegistry
from broker.todos.repository import TodoRepository, TodoWrites

if TYPE_CHECKING:
    from broker.bus import Bus, EventLog, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

OPERATIONS = {
    "claim": ("note",),
    "release": ("note", "force"),
    "resolve": ("note",),
    "comment": ("note",),
    "snooze": ("note", "until", "for"),
    "reemit": ("note", "seq", "attributes", "data"),
}
"""Each operation and the body members it takes besides `operator`."""
DONE = {"claim": "claimed", "release": "released", "resolve": "resolved",
        "comment": "commented", "snooze": "snoozed", "reemit": "reemitted"}
"""The audit event / history action each operation records."""

Change = Callable[["WriteContext", TodoWrites, TodoItem, str], Awaitable[TodoItem]]


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", field=name)
    return value


class TodoService:
    """Operator operations on todo items."""

    def __init__(self, bus: Bus, repo: TodoRepository, events: EventLog,
                 queues: QueueRegistry, clock: Clock) -> None:
        self.bus = bus
        self.repo = repo
        self.events = events
        self.queues = queues
        self.clock = clock

    # -- operations ---------------------------------------------------------------------
    async def operate(self, todo_id: int, op: str, operator: str, body: dict[str, Any]
                      ) -> tuple[TodoItem, dict[str, Any] | None]:
        """Run `op` on an item for `operator` with the request body's members; returns
        the changed item and, for reemit, the published copy `{seq, id, source}`."""
        if op not in OPERATIONS:
            raise NotFound(f"no todo operation {op!r} (known: {', '.join(OPERATIONS)})")
        unknown = sorted(set(body) - set(OPERATIONS[op]) - {"operator"})
        if unknown:
            raise BadRequest(f"{op}: unknown field(s) {', '.join(unknown)}"
                             f" (known: operator, {', '.join(OPERATIONS[op])})",
                             field=unknown[0])
        note = _text(body, "note")
        if op == "reemit":
            return await self.reemit(todo_id, operator, body, note)
        if op == "comment" and not note:
            raise BadRequest("comment: note is required", field="note")
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise BadRequest("force must be true or false", field="force")
        until = self._snooze_end(body) if op == "snooze" else None

        async def change(ctx: WriteContext, writes: TodoWrites, item: TodoItem, at: str
                         ) -> TodoItem:
            changed, detail = self._transition(op, item, operator, at, note, force, until)
            await writes.save(changed)
            await changes.record(ctx, writes, changed, DONE[op], at, operator=operator,
                                 note=note, detail=detail)
            return changed

        return await self._change(todo_id, change), None

    def _transition(self, op: str, item: TodoItem, operator: str, at: str,
                    note: str | None, force: bool, until: str | None
                    ) -> tuple[TodoItem, dict[str, Any]]:
        """The item after `op` and the detail its history entry records."""
        if op == "claim":
            lease = self.queues.queue(item.queue).lease_s
            renewed = {"renewed": True} if item.owner == operator else {}
            return changes.claim(item, operator, at, lease), renewed
        if op == "release":
            forced = item.owner != operator and force
            detail: dict[str, Any] = (
                {"forced": True, "previous_owner": item.owner} if forced else {})
            return changes.release(item, operator, at, force), detail
        if op == "resolve":
            return changes.resolve(item, operator, note, at, auto=False), {}
        if op == "snooze" and until is not None:
            return changes.snooze(item, until, at), {"until": until}
        return changes.touch(item, at), {}  # comment

    def _snooze_end(self, body: dict[str, Any]) -> str:
        if ("until" in body) == ("for" in body):
            raise BadRequest("snooze: give either until (RFC 3339) or for (like 2h)",
                             field="until")
        if "for" in body:
            seconds = parse_duration(body["for"], "for")
            until = self.clock.stamp(seconds)
        else:
            try:
                until = to_rfc3339(parse_rfc3339(str(body["until"])))
            except ValueError:
                raise BadRequest(f"snooze: until {body['until']!r} is not an RFC 3339 time",
                                 field="until") from None
        if until <= self.clock.stamp():
            raise BadRequest("snooze: the end must be in the future", field="until")
        return until

    async def _change(self, todo_id: int, change: Change) -> TodoItem:
        """Run `change` on the locked item in the writer's transaction."""

        async def unit(ctx: WriteContext) -> TodoItem:
            writes = self.repo.writes(ctx.transaction)
            item = await writes.lock(todo_id)
            if item is None:
                raise NotFound(f"no todo item {todo_id}")
            return await change(ctx, writes, item, self.clock.stamp())

        return await self.bus.run(unit)

    async def reemit(self, todo_id: int, operator: str, body: dict[str, Any],
                     note: str | None) -> tuple[TodoItem, dict[str, Any]]:
        """Publish a copy of one of the item's events (the latest unless `seq`), with a
        new id, `reemittedfrom` and the edits; routed like any event, caused by the original."""
        item = await self.repo.get(todo_id)
        if item is None:
            raise NotFound(f"no todo item {todo_id}")
        seq = body.get("seq", item.event_seq)
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise BadRequest("reemit: seq must be an integer", field="seq")
        if seq != item.event_seq and seq not in await self.repo.event_seqs(todo_id):
            raise BadRequest(f"reemit: event {seq} is not one of item {todo_id}'s events",
                             field="seq")
        original = await self.events.get(seq)
        if original is None:
            raise NotFound(f"no event with seq {seq}")
        copy = reemitted_copy(original.event, body)

        async def unit(ctx: WriteContext) -> tuple[TodoItem, dict[str, Any]]:
            # An operator's act: the copy keeps its lineage but starts a budget of its own.
            result = await ctx.publish(copy, cause=original, fresh_root=True)
            # Routing the copy may have changed this very item (it can group into it),
            # so lock and read it only now.
            writes = self.repo.writes(ctx.transaction)
            current = await writes.lock(todo_id)
            if current is None:
                raise NotFound(f"no todo item {todo_id}")
            at = self.clock.stamp()
            current = changes.touch(current, at)
            await writes.save(current)
            published = {"seq": result.seq, "id": copy["id"], "source": copy["source"]}
            await changes.record(ctx, writes, current, "reemitted", at, operator=operator,
                                 note=note, cause=original, event_seq=result.seq,
                                 detail={**published, "from_seq": seq})
            return current, published

        return await self.bus.run(unit)


def reemitted_copy(original: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The event a reemit publishes: the original with a new id, `reemittedfrom`, the
    `attributes` edits (null removes one) and `data` when given; validated."""
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise BadRequest("reemit: attributes must be an object", field="attributes")
    for name in ("id", "reemittedfrom", "data", "data_base64"):
        if name in attributes:
            why = "use the data member" if name.startswith("data") else "it is set by reemit"
            raise BadRequest(f"reemit: attributes cannot set {name} ({why})",
                             field=f"attributes.{name}")
    copy = {**original, **attributes}
    # null unsets an attribute, as in the JSON event format.
    copy = {k: v for k, v in copy.items() if v is not None or k == "data"}
    if "data" in body:
        copy.pop("data_base64", None)
        copy["data"] = body["data"]
    copy["id"] = str(uuid.uuid4())
    copy["reemittedfrom"] = str(original["id"])
    if "opsbusrestored" not in attributes:
        copy.pop(RESTORED, None)  # the copy is published now, not restored
    reserved = reserved_attribute(copy)
    if reserved is not None:
        # An operator publishes the copy: the broker's own events stay the broker's.
        raise ReservedEvent(f"reemit: {refusal(copy, reserved)}", attribute=reserved,
                            field=f"attributes.{reserved}" if reserved in attributes else None)
    checked = validate_event(copy)
    encoded_size(checked)
    return checked
