"""The todo item keys shared by the Queues and item Detail screens."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType

from broker.errors import Conflict, OpsbusError
from console.screens.base import ConsoleScreen
from console.widgets.confirm import ConfirmModal
from console.widgets.editor import EditorModal
from console.widgets.note import NoteModal

AUDIT_FILTER = "type LIKE 'opsbus.todo.%'"
"""The audit events that carry every change of every item (extension `todoid`)."""
ITEM_BINDINGS: list[BindingType] = [
    Binding("c", "claim", "Claim"),
    Binding("r", "release", "Release"),
    Binding("d", "resolve", "Resolve"),
    Binding("e", "reemit", "Re-emit"),
    Binding("n", "comment", "Comment"),
    Binding("z", "snooze", "Snooze"),
]
ITEM_MUTATING = frozenset({"claim", "release", "resolve", "reemit", "comment", "snooze"})


def reemit_body(original: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """The reemit request for an edited copy: changed attributes (null removes one) and
    data when it changed. `id` and `reemittedfrom` are the broker's to set."""
    fixed = {"id", "reemittedfrom", "data", "data_base64"}
    attributes: dict[str, Any] = {
        k: v for k, v in edited.items() if k not in fixed and original.get(k) != v}
    attributes.update({k: None for k in original if k not in fixed and k not in edited})
    body: dict[str, Any] = {}
    if attributes:
        body["attributes"] = attributes
    if edited.get("data") != original.get("data"):
        body["data"] = edited.get("data")
    return body


def action_params(event: dict[str, Any]) -> dict[str, Any]:
    """Parameters for a quick action, prefilled from the item's event: its attributes
    and the scalar members of its data as `data.NAME`, the names action templates use.
    The broker renders the action from the same event, so unedited values change
    nothing; an edited one overrides the event's field for this run."""
    fixed = {"specversion", "id", "time", "datacontenttype", "dataschema", "data",
             "data_base64"}
    params = {k: v for k, v in event.items() if k not in fixed}
    data = event.get("data")
    if isinstance(data, dict):
        params.update({f"data.{k}": v for k, v in data.items()
                       if not isinstance(v, dict | list)})
    return params


class ItemActionsScreen(ConsoleScreen):
    """A screen with a current todo item; subclasses provide `current_item` and
    `item_changed` (called with the item JSON the broker answered)."""

    MUTATING: ClassVar[frozenset[str]] = ITEM_MUTATING

    def current_item(self) -> dict[str, Any] | None:
        """The item the keys act on (the highlighted row, or the item shown); every
        subclass provides it."""
        raise NotImplementedError(f"{type(self).__name__} must provide current_item")

    def item_changed(self, item: dict[str, Any]) -> None:
        """The broker changed this item (the answer of an operation)."""

    async def operate(self, op: str, **body: Any) -> dict[str, Any] | None:
        """POST /v1/todos/{id}/{op} as this operator; notifies and returns the answer."""
        item = self.current_item()
        if item is None:
            self.notify("no item selected", severity="warning")
            return None
        try:
            answer = await self.console.client.todo_op(
                item["id"], op, operator=self.console.operator, **body)
        except OpsbusError as exc:
            if isinstance(exc, Conflict) and op == "release" and not body.get("force"):
                owner = item.get("owner") or "someone else"
                if await self.app.push_screen_wait(ConfirmModal(
                        f"Item {item['id']} is claimed by {owner}. Release it anyway?")):
                    return await self.operate(op, **body, force=True)
                return None
            self.notify(f"{op} #{item['id']}: {exc.detail}", severity="error")
            return None
        self.item_changed(answer["item"])
        done = {"claim": "claimed", "release": "released", "resolve": "resolved",
                "comment": "commented on", "snooze": "snoozed", "reemit": "re-emitted"}[op]
        extra = f" as seq {answer['event']['seq']}" if answer.get("event") else ""
        self.notify(f"{done} item {item['id']}{extra}", timeout=3)
        return answer

    @work(group="item-op")
    async def action_claim(self) -> None:
        await self.operate("claim")

    @work(group="item-op")
    async def action_release(self) -> None:
        await self.operate("release")

    @work(group="item-op")
    async def action_resolve(self) -> None:
        item = self.current_item()
        if item is None:
            return
        note = await self.app.push_screen_wait(NoteModal(
            f"Resolve #{item['id']} {item.get('title', '')}",
            placeholder="what was done (the resolution note)", required=True))
        if note:
            await self.operate("resolve", note=note)

    @work(group="item-op")
    async def action_comment(self) -> None:
        item = self.current_item()
        if item is None:
            return
        note = await self.app.push_screen_wait(NoteModal(
            f"Comment on #{item['id']}", placeholder="a note for the item's history",
            required=True))
        if note:
            await self.operate("comment", note=note)

    @work(group="item-op")
    async def action_snooze(self) -> None:
        item = self.current_item()
        if item is None:
            return
        duration = await self.app.push_screen_wait(NoteModal(
            f"Snooze #{item['id']} for", value="1h", placeholder="30m, 2h, 1d",
            required=True))
        if duration:
            await self.operate("snooze", **{"for": duration})

    @work(group="item-op")
    async def action_reemit(self) -> None:
        item = self.current_item()
        if item is None:
            return
        try:
            stored = await self.console.client.event(int(item["event_seq"]))
        except OpsbusError as exc:
            self.notify(f"cannot load event {item['event_seq']}: {exc.detail}",
                        severity="error")
            return
        original: dict[str, Any] = stored["event"]

        async def send(edited: dict[str, Any]) -> Any:
            body = reemit_body(original, edited)
            return await self.console.client.todo_op(
                item["id"], "reemit", operator=self.console.operator, seq=stored["seq"],
                **body)

        answer = await self.app.push_screen_wait(EditorModal(
            f"Re-emit seq {stored['seq']} of item #{item['id']} — edit, then ctrl+s to send "
            "(a new id is assigned)", original, send))
        if answer:
            self.item_changed(answer["item"])
            self.notify(f"re-emitted as seq {answer['event']['seq']}", timeout=3)
