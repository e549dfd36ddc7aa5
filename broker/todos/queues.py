"""Queue settings (`[[queues]]`, `/v1/queues`): validation, the compiled form routing
uses, the live registry of queues, and the one grouping decision (`place`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from broker.config.repository import ConfigObject
from broker.errors import InvalidConfig, OpsbusError
from broker.filters import Filter, compile_filter
from broker.routing import check_name, check_object
from broker.templates import Template, compile_template
from broker.timeutil import parse_duration

log = logging.getLogger(__name__)

DEFAULT_GROUP_KEY = "{source}/{subject}"
DEFAULT_TITLE = "{type} on {subject}"
QUEUE_FIELDS = ("name", "description", "group_key", "title", "priority", "priority_map",
                "lease", "resolve_filter", "actions")
ACTION_FIELDS = ("name", "runbook_url", "description")


def _fail(name: str, field_name: str, message: str, **extra: Any) -> InvalidConfig:
    return InvalidConfig(f"queue {name}: {field_name}: {message}", field=field_name, **extra)


def validate_queue(spec: Any) -> dict[str, Any]:
    """Check a queue's JSON form and return it normalised (InvalidConfig naming the field)."""
    name = check_object(spec, "queue", QUEUE_FIELDS)
    out: dict[str, Any] = {"name": name}
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise _fail(name, "description", "must be a string")
    out["description"] = description
    for key, default in (("group_key", DEFAULT_GROUP_KEY), ("title", DEFAULT_TITLE),
                         ("priority", None)):
        value = spec.get(key, default)
        if value is not None:
            try:
                compile_template(value, key)
            except InvalidConfig as exc:
                raise _fail(name, key, exc.detail) from None
        out[key] = value
    priority_map = spec.get("priority_map", {})
    if not isinstance(priority_map, dict) or not all(
            isinstance(v, str) for v in priority_map.values()):
        raise _fail(name, "priority_map", "must map rendered priorities to strings,"
                    " e.g. { critical = \"P1\" }")
    out["priority_map"] = dict(priority_map)
    lease = spec.get("lease")
    if lease is not None:
        try:
            seconds = parse_duration(lease, "lease")
        except OpsbusError as exc:
            raise _fail(name, "lease", exc.detail) from None
        if seconds <= 0:
            raise _fail(name, "lease", "must be longer than zero")
    out["lease"] = lease
    resolve = spec.get("resolve_filter")
    if resolve is not None:
        try:
            resolve = compile_filter(resolve, strict=True).spec
        except OpsbusError as exc:
            raise _fail(name, "resolve_filter", exc.detail, **exc.extra) from None
    out["resolve_filter"] = resolve
    out["actions"] = _validate_actions(name, spec.get("actions", []))
    return out


def _validate_actions(queue: str, actions: Any) -> list[dict[str, Any]]:
    """Quick actions an operator may run on an item: `"restart-pod"` or a table with
    `name`, `runbook_url` and `description`. Stored and listed; the actions feature runs them."""
    if not isinstance(actions, list):
        raise _fail(queue, "actions", "must be a list of action names or tables")
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(actions):
        where = f"actions[{index}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise _fail(queue, where, "must be an action name or a table with a name")
        unknown = sorted(set(entry) - set(ACTION_FIELDS))
        if unknown:
            raise _fail(queue, where, f"unknown field(s) {', '.join(unknown)}"
                        f" (known: {', '.join(ACTION_FIELDS)})")
        try:
            action = check_name(entry.get("name"), "action")
        except InvalidConfig as exc:
            raise _fail(queue, where, exc.detail) from None
        runbook = entry.get("runbook_url")
        if runbook is not None and not (isinstance(runbook, str)
                                        and runbook.startswith(("https://", "http://"))):
            raise _fail(queue, where, "runbook_url must be an http(s) URL")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise _fail(queue, where, "description must be a string")
        out.append({"name": action, "runbook_url": runbook, "description": description})
    return out


MEMO_SIZE = 4096
"""Renderings a queue remembers per template (then forgets at once): bounded whatever
the events' sources and subjects."""


class Rendered:
    """A template's renderings remembered by the values of its placeholders, when these
    are all context attributes (`{source}/{subject}`: most events of a busy queue repeat
    a few groups, and rendering is a loop over parts). A data path, or a value that is
    not text, renders every time."""

    __slots__ = ("_first", "_memo", "_names", "_render", "_second")

    def __init__(self, template: Template, render: Callable[[dict[str, Any]], str | None]
                 ) -> None:
        names = template.fields
        attributes = names and not any(n == "data" or n.startswith("data.") for n in names)
        self._names = names if attributes else None
        # The memo key of a template with one or two placeholders (the defaults have
        # two) is spelled out: a comprehension is a function call of its own.
        self._first = names[0] if attributes and len(names) <= 2 else None
        self._second = names[1] if attributes and len(names) == 2 else None
        self._render = render
        self._memo: dict[tuple[Any, ...], str | None] = {}

    def __call__(self, event: dict[str, Any]) -> str | None:
        if self._first is not None:
            second = self._second
            values: tuple[Any, ...] = (
                (event.get(self._first),) if second is None
                else (event.get(self._first), event.get(second)))
        elif self._names is None:
            return self._render(event)
        else:
            values = tuple([event.get(name) for name in self._names])
        try:
            return self._memo[values]
        except KeyError:
            pass
        rendered = self._render(event)
        # Only text or missing values: 1 and True are equal keys but render apart.
        if all(value is None or type(value) is str for value in values):
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[values] = rendered
        return rendered


@dataclass(frozen=True)
class Queue:
    """A queue ready for routing: templates and the resolving filter compiled."""

    name: str
    spec: dict[str, Any]
    configured: bool
    group_key: Template
    title: Template
    priority: Template | None
    priority_map: dict[str, str] = field(default_factory=dict)
    lease_s: float | None = None
    resolve_filter: Filter | None = None
    _key: Rendered = field(init=False, repr=False, compare=False)
    _title: Rendered = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every event a queue takes renders its group key and title.
        object.__setattr__(self, "_key", Rendered(self.group_key,
                                                  self.group_key.render_optional))
        object.__setattr__(self, "_title", Rendered(
            self.title, lambda event: self.title.render(event, missing="-")))

    @classmethod
    def from_spec(cls, spec: dict[str, Any], configured: bool = True) -> Queue:
        lease = spec.get("lease")
        resolve = spec.get("resolve_filter")
        return cls(
            spec["name"], spec, configured,
            compile_template(spec.get("group_key") or DEFAULT_GROUP_KEY, "group_key"),
            compile_template(spec.get("title") or DEFAULT_TITLE, "title"),
            compile_template(spec["priority"], "priority") if spec.get("priority") else None,
            dict(spec.get("priority_map") or {}),
            parse_duration(lease, "lease") if lease is not None else None,
            compile_filter(resolve) if resolve is not None else None,
        )

    @classmethod
    def unconfigured(cls, name: str) -> Queue:
        """A queue a route targets without a `[[queues]]` entry: default settings."""
        return cls.from_spec(validate_queue({"name": name}), configured=False)

    def key_of(self, event: dict[str, Any]) -> str:
        """The group key: the `dedupkey` extension when present, else the template
        (falling back to the default template when it renders to nothing)."""
        dedupkey = event.get("dedupkey")
        if dedupkey not in (None, ""):
            return str(dedupkey)
        key = self._key(event)
        if key is None:  # rendered apart: other attributes than the template's
            key = compile_template(DEFAULT_GROUP_KEY).render(event)
        return key

    def title_of(self, event: dict[str, Any]) -> str:
        title = self._title(event)
        assert title is not None
        return title

    def priority_of(self, event: dict[str, Any]) -> str | None:
        if self.priority is None:
            return None
        value = self.priority.render_optional(event)
        if value is None:
            return None
        return self.priority_map.get(value, value)

    def resolves(self, event: dict[str, Any]) -> bool:
        return self.resolve_filter is not None and self.resolve_filter.matches(event)


class Placement(StrEnum):
    """What a queue does with one routed event."""

    OPEN = "open"
    """A new item for the event's group."""
    ATTACH = "attach"
    """Counted into the group's open or claimed item."""
    RESOLVE = "resolve"
    """Resolves the group's item (the queue's resolve_filter matched)."""
    IGNORE = "ignore"
    """A resolving event for a group with no item: nothing opens."""


def place(queue: Queue, event: dict[str, Any], *, active: bool) -> Placement:
    """The grouping decision, given whether the event's group (`queue.key_of(event)`)
    has an open or claimed item. The engine (`todos.intake`) and the route dry run
    both call this, with the queue's own `key_of`, `title_of` and `priority_of`, so a
    preview can never disagree with what routing does. (Silences, which only keep an
    OPEN from happening, are state the dry run does not model.)"""
    if queue.resolves(event):
        return _RESOLVE if active else _IGNORE
    return _ATTACH if active else _OPEN


# An enum's member read off its class costs several times a plain attribute, and the
# placement is decided for every event a queue takes.
_OPEN, _ATTACH, _RESOLVE, _IGNORE = (Placement.OPEN, Placement.ATTACH, Placement.RESOLVE,
                                     Placement.IGNORE)


class QueueRegistry:
    """The live queues: configured ones (compiled, replaced whenever configuration
    changes) and, for a queue a route names without settings, the defaults."""

    def __init__(self) -> None:
        self.configured: dict[str, Queue] = {}
        self.objects: dict[str, ConfigObject] = {}
        """The configuration objects of the configured queues (spec, origin)."""
        self._defaults: dict[str, Queue] = {}

    def load(self, objects: Iterable[ConfigObject]) -> None:
        """Config listener: recompile the configured queues."""
        queues: dict[str, Queue] = {}
        found: dict[str, ConfigObject] = {}
        for obj in objects:
            if obj.kind != "queues":
                continue
            found[obj.name] = obj
            try:
                queues[obj.name] = Queue.from_spec(obj.spec)
            except OpsbusError as exc:  # stored before a validator change
                log.error("queue %s uses default settings: %s", obj.name, exc.detail)
        self.configured, self.objects = queues, found

    def queue(self, name: str) -> Queue:
        """The named queue; a queue with no settings works with the defaults."""
        queue = self.configured.get(name)
        if queue is None:
            queue = self._defaults.get(name)
            if queue is None:
                queue = self._defaults[name] = Queue.unconfigured(name)
        return queue

    def shortest_lease(self) -> float | None:
        """The shortest claim lease any configured queue has (the sweeper's pace)."""
        leases = [q.lease_s for q in self.configured.values() if q.lease_s]
        return min(leases) if leases else None
