"""The todo item keys shared by the Queues and item Detail screens (one item, or every
marked item at once)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType

from broker.errors import Conflict, OpsbusError
from console.models.items import Item
from console.screens.base import ConsoleScreen
from console.widgets.action_picker import ActionPicker
from console.widgets.confirm import ConfirmModal
from console.widgets.editor import EditorModal
from console.widgets.note import NoteModal
from console.widgets.silence_dialog import SilenceDialog

AUDIT_FILTER = "type LIKE 'opsbus.todo.%'"
"""The audit events that carry every change of every item (extension `todoid`)."""
ITEM_BINDINGS: list[BindingType] = [
    Binding("c", "claim", "Claim"),
    Binding("r", "release", "Release", show=False),
    Binding("d", "resolve", "Resolve"),
    Binding("e", "reemit", "Re-emit", show=False),
    Binding("n", "comment", "Comment", show=False),
    Binding("z", "snooze", "Snooze", show=False),
    Binding("s", "silence", "Silence"),
    Binding("x", "quick_action", "Actions"),
]
ITEM_MUTATING = frozenset({"claim", "release", "resolve", "reemit", "comment", "snooze",
                           "silence", "quick_action"})
DONE = {"claim": "claimed", "release": "released", "resolve": "resolved",
        "comment": "commented on", "snooze": "snoozed", "reemit": "re-emitted"}


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


def describe(items: list[Item]) -> str:
    if len(items) == 1:
        return f"#{items[0]['id']} {items[0].get('title', '')}"
    return f"{len(items)} marked items"


class ItemActionsScreen(ConsoleScreen):
    """A screen with a current todo item; subclasses provide `current_item`, and may mark
    several items (`targets`) for bulk claim, release, resolve, snooze and silence."""

    MUTATING: ClassVar[frozenset[str]] = ITEM_MUTATING

    def current_item(self) -> Item | None:
        """The item the keys act on (the highlighted row, or the item shown); every
        subclass provides it."""
        raise NotImplementedError(f"{type(self).__name__} must provide current_item")

    def targets(self) -> list[Item]:
        """The items a bulk-capable key acts on: the marked ones, else the current one."""
        item = self.current_item()
        return [item] if item is not None else []

    def operations_done(self) -> None:
        """After a bulk operation (the Queues screen clears its marks)."""

    async def operate_one(self, item: Item, op: str, **body: Any) -> dict[str, Any] | None:
        """POST /v1/todos/{id}/{op} as this operator; the answer, or None (notified)."""
        try:
            answer = await self.console.client.todo_op(
                item["id"], op, operator=self.console.operator, **body)
        except Conflict as exc:
            if op == "release" and not body.get("force"):
                owner = item.get("owner") or "someone else"
                if await self.app.push_screen_wait(ConfirmModal(
                        f"Item {item['id']} is claimed by {owner}. Release it anyway?")):
                    return await self.operate_one(item, op, **body, force=True)
                return None
            self.notify(f"{op} #{item['id']}: {exc.detail}", severity="error")
            return None
        except OpsbusError as exc:
            self.notify(f"{op} #{item['id']}: {exc.detail}", severity="error")
            return None
        self.console.item_changed(answer["item"])
        return answer

    async def operate(self, op: str, items: list[Item] | None = None, **body: Any) -> int:
        """Apply `op` to the targets; notifies what was done; how many succeeded."""
        items = self.targets() if items is None else items
        if not items:
            self.notify("no item selected", severity="warning")
            return 0
        done = []
        for item in items:
            answer = await self.operate_one(item, op, **body)
            if answer is not None:
                done.append(answer)
        if len(items) == 1 and done:
            extra = f" as seq {done[0]['event']['seq']}" if done[0].get("event") else ""
            self.notify(f"{DONE[op]} item {items[0]['id']}{extra}", timeout=3)
        elif done:
            self.notify(f"{DONE[op]} {len(done)} of {len(items)} items", timeout=3)
        if len(items) > 1:
            self.operations_done()
        return len(done)

    @work(group="item-op")
    async def action_claim(self) -> None:
        await self.operate("claim")

    @work(group="item-op")
    async def action_release(self) -> None:
        await self.operate("release")

    @work(group="item-op")
    async def action_resolve(self) -> None:
        items = self.targets()
        if not items:
            self.notify("no item selected", severity="warning")
            return
        note = await self.app.push_screen_wait(NoteModal(
            f"Resolve {describe(items)}", placeholder="what was done (the resolution note)",
            required=True))
        if note:
            await self.operate("resolve", items, note=note)

    @work(group="item-op")
    async def action_comment(self) -> None:
        item = self.current_item()
        if item is None:
            return
        note = await self.app.push_screen_wait(NoteModal(
            f"Comment on #{item['id']}", placeholder="a note for the item's history",
            required=True))
        if note:
            await self.operate("comment", [item], note=note)

    @work(group="item-op")
    async def action_snooze(self) -> None:
        items = self.targets()
        if not items:
            return
        duration = await self.app.push_screen_wait(NoteModal(
            f"Snooze {describe(items)} for", value="1h", placeholder="30m, 2h, 1d",
            required=True))
        if duration:
            await self.operate("snooze", items, **{"for": duration})

    @work(group="item-op")
    async def action_silence(self) -> None:
        items = self.targets()
        queues = {i["queue"] for i in items}
        answer = await self.app.push_screen_wait(SilenceDialog(
            self.console.client, pattern=" | ".join(dict.fromkeys(i["key"] for i in items)),
            queue=queues.pop() if len(queues) == 1 else None))
        if not answer:
            return
        made = 0
        for matcher in answer["matchers"]:
            try:
                await self.console.client.add_silence(
                    matcher=matcher, duration=answer["duration"], comment=answer["comment"],
                    operator=self.console.operator,
                    **({"queue": answer["queue"]} if answer["queue"] else {}))
            except OpsbusError as exc:
                self.notify(f"cannot add the silence: {exc.detail}", severity="error")
                continue
            made += 1
        if made:
            self.notify(f"added {made} silence{'' if made == 1 else 's'}", timeout=3)
            self.console.silences_changed()
            if len(items) > 1:
                self.operations_done()

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
            self.console.item_changed(answer["item"])
            self.notify(f"re-emitted as seq {answer['event']['seq']}", timeout=3)

    async def item_with_actions(self, item: Item) -> Item | None:
        """The item as `GET /v1/todos/{id}` answers it (with its queue's actions)."""
        if "actions" in item:
            return item
        try:
            return await self.console.client.todo(int(item["id"]))
        except OpsbusError as exc:
            self.notify(f"cannot load item {item['id']}: {exc.detail}", severity="error")
            return None

    def action_done(self, name: str, answer: dict[str, Any]) -> None:
        """A quick action ran (subclasses reload what they show)."""

    @work(group="item-op")
    async def action_quick_action(self) -> None:
        current = self.current_item()
        if current is None:
            self.notify("no item selected", severity="warning")
            return
        item = await self.item_with_actions(current)
        if item is None:
            return
        if not item.get("actions"):
            self.notify(f"queue {item['queue']} has no quick actions (list them in the "
                        "queue's `actions` setting)", severity="warning", timeout=6)
            return
        name = await self.app.push_screen_wait(ActionPicker(
            f"Quick actions for #{item['id']} {item['title']} [{item['queue']}]",
            item["actions"]))
        if not name:
            return
        try:
            stored = await self.console.client.event(int(item["event_seq"]))
        except OpsbusError as exc:
            self.notify(f"cannot load event {item['event_seq']}: {exc.detail}",
                        severity="error")
            return

        async def run(params: dict[str, Any]) -> Any:
            return await self.console.client.run_todo_action(
                item["id"], name, self.console.operator, params)

        answer = await self.app.push_screen_wait(EditorModal(
            f"Run {name} on item #{item['id']} — parameters override the fields of event "
            f"seq {stored['seq']}; ctrl+s runs it, escape cancels", action_params(
                stored["event"]), run))
        if not answer:
            return
        self.action_done(name, answer)
        result = answer.get("result")
        job = answer.get("job") or {}
        if result is None:
            self.notify(f"{name} is still running (job {job.get('id')}); its result will "
                        "appear in the history", timeout=5)
        elif str(result["event"].get("type", "")).endswith("succeeded"):
            self.notify(f"{name} succeeded: result seq {result['seq']}", timeout=4)
        else:
            self.notify(f"{name} failed: result seq {result['seq']}", severity="error")
