"""`opsbus todo ...` and `opsbus silence ...`: triage todo items and mute noise from a shell."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

import orjson

from broker.cli import client_options, json_option, whole
from broker.cli.emit import parse_data, read_data
from broker.cli.output import print_json, print_table
from broker.errors import BadRequest


def _operator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operator", default=os.environ.get("OPSBUS_OPERATOR"),
                        help="who the change is recorded for (env OPSBUS_OPERATOR; default"
                             " the token's name; only an admin token may name someone else)")


def _common(parser: argparse.ArgumentParser, *, operator: bool = False) -> None:
    client_options(parser)
    json_option(parser)
    if operator:
        _operator_option(parser)


def register(sub: Any) -> None:
    todo = sub.add_parser("todo", help="list and work todo items",
                          description="List, inspect and change todo items.")
    ops = todo.add_subparsers(dest="todo_command", metavar="ACTION", required=True)

    p = ops.add_parser("list", help="list items (a table; --json for scripts)")
    p.add_argument("--queue", help="only this queue")
    p.add_argument("--state", help="open, claimed, snoozed, resolved or active"
                   " (default: active)", default="active")
    p.add_argument("--owner", help="only items claimed by this operator")
    p.add_argument("--limit", type=whole(1), default=50)
    p.add_argument("--all", action="store_true", help="every state")
    _common(p)
    p.set_defaults(func=todo_list)

    p = ops.add_parser("queues", help="queues with their counts")
    _common(p)
    p.set_defaults(func=todo_queues)

    p = ops.add_parser("show", help="one item with its events and history")
    p.add_argument("id", type=whole())
    _common(p)
    p.set_defaults(func=todo_show)

    for op, help_text in (("claim", "take an item (renews the lease if it is yours)"),
                          ("release", "give a claimed item back"),
                          ("resolve", "mark an item done"),
                          ("comment", "add a note to an item"),
                          ("snooze", "hide an item until a time"),
                          ("reemit", "publish a copy of the item's event again")):
        p = ops.add_parser(op, help=help_text)
        p.add_argument("id", type=whole())
        if op == "comment":
            p.add_argument("note", nargs="+", help="the comment")
        else:
            p.add_argument("--note", help="a note for the history")
        if op == "release":
            p.add_argument("--force", action="store_true", help="release someone else's claim")
        if op == "snooze":
            when = p.add_mutually_exclusive_group(required=True)
            when.add_argument("--for", dest="for_", metavar="DURATION", help="e.g. 2h")
            when.add_argument("--until", help="RFC 3339 time")
        if op == "reemit":
            p.add_argument("--seq", type=whole(),
                           help="which of the item's events (default latest)")
            p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                           help="change an attribute of the copy (repeatable)")
            p.add_argument("--data", help="new data: inline JSON, @FILE or - for stdin")
        _common(p, operator=True)
        p.set_defaults(func=todo_op, op=op)

    silence = sub.add_parser("silence", help="mute events that would open todo items",
                             description="Add, list and expire silences.")
    sops = silence.add_subparsers(dest="silence_command", metavar="ACTION", required=True)
    p = sops.add_parser("add", help="add a silence")
    match = p.add_mutually_exclusive_group(required=True)
    match.add_argument("--key", help="glob on the item group key, e.g. 'alertmanager/*'")
    match.add_argument("--filter", help="CESQL expression on the event")
    p.add_argument("--queue", help="only in this queue")
    end = p.add_mutually_exclusive_group(required=True)
    end.add_argument("--duration", help="e.g. 2h")
    end.add_argument("--until", help="RFC 3339 end time")
    p.add_argument("--comment", default="", help="why")
    _common(p, operator=True)
    p.set_defaults(func=silence_add)
    p = sops.add_parser("list", help="active silences")
    p.add_argument("--all", action="store_true", help="include ended silences")
    _common(p)
    p.set_defaults(func=silence_list)
    p = sops.add_parser("expire", help="end a silence now")
    p.add_argument("id", type=whole())
    _common(p, operator=True)
    p.set_defaults(func=silence_expire)


# -- output --------------------------------------------------------------------------


def age(since: str | None, at: datetime | None = None) -> str:
    """`42s`, `7m`, `3h`, `2d` since an RFC 3339 time."""
    if not since:
        return "-"
    seconds = ((at or datetime.now(UTC)) - datetime.fromisoformat(
        since.replace("Z", "+00:00"))).total_seconds()
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _state(item: dict[str, Any]) -> str:
    if item.get("snoozed_until") and item["state"] != "resolved":
        return f"{item['state']}, snoozed"
    return str(item["state"])


# -- commands ------------------------------------------------------------------------


async def todo_list(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        if args.queue is not None:
            await client.queue(args.queue)  # NotFound names the queue: not "no items"
        page = await client.todos(queue=args.queue, state=None if args.all else args.state,
                                  owner=args.owner, limit=args.limit)
    if args.json:
        print_json(page)
        return 0
    items = page["items"]
    if not items:
        print("no items")
        return 0
    rows = [[str(i["id"]), i["queue"], i.get("priority") or "-", _state(i),
             i.get("owner") or "-", str(i["count"]), age(i["first_seen"]), i["title"]]
            for i in items]
    print_table(rows, ["ID", "QUEUE", "PRIORITY", "STATE", "OWNER", "COUNT", "AGE", "TITLE"])
    if page.get("next"):
        print(f"(more: --limit {args.limit * 2})")
    return 0


async def todo_queues(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        queues = await client.queues()
    if args.json:
        print_json(queues)
        return 0
    rows = []
    for q in queues:
        oldest = q.get("oldest_open_age_s")
        rows.append([q["name"], str(q["open"]), str(q["claimed"]), str(q["snoozed"]),
                     str(q["resolved"]), "-" if oldest is None else age_s(oldest),
                     q.get("description") or ""])
    print_table(rows, ["QUEUE", "OPEN", "CLAIMED", "SNOOZED", "RESOLVED", "OLDEST",
                       "DESCRIPTION"])
    return 0


def age_s(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


async def todo_show(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        item = await client.todo(args.id)
    if args.json:
        print_json(item)
        return 0
    print(f"#{item['id']} [{item['queue']}] {item['title']}")
    print(f"  state {_state(item)}  owner {item.get('owner') or '-'}  priority"
          f" {item.get('priority') or '-'}  count {item['count']}  key {item['key']}")
    print(f"  first seen {item['first_seen']}  last seen {item['last_seen']}"
          + (f"  lease until {item['lease_expires']}" if item.get("lease_expires") else "")
          + (f"  snoozed until {item['snoozed_until']}" if item.get("snoozed_until") else ""))
    print("events:")
    for e in item["events"]:
        print(f"  {e['seq']:>8}  {e.get('time') or '-':<24}  {e['type']}  {e['source']}"
              f"  {e.get('subject') or ''}")
    print("history:")
    for h in item["history"]:
        note = f"  {h['note']}" if h.get("note") else ""
        print(f"  {h['at']}  {h['action']:<10} {h.get('operator') or '-'}{note}")
    return 0


async def todo_op(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    body: dict[str, Any] = {"operator": args.operator} if args.operator else {}
    note = " ".join(args.note) if isinstance(args.note, list) else args.note
    if note:
        body["note"] = note
    if args.op == "release" and args.force:
        body["force"] = True
    if args.op == "snooze":
        body.update({"for": args.for_} if args.for_ else {"until": args.until})
    if args.op == "reemit":
        if args.seq is not None:
            body["seq"] = args.seq
        attributes: dict[str, Any] = {}
        for item in args.set:
            name, sep, value = item.partition("=")
            if not sep:
                raise BadRequest(f"--set {item!r} must be NAME=VALUE")
            attributes[name] = value
        if attributes:
            body["attributes"] = attributes
        raw = read_data(args.data)
        if raw is not None:
            member, body["data"], _ = parse_data(raw, None)
            if member != "data":
                raise BadRequest("--data: reemit sends JSON or UTF-8 text, and this is"
                                 " neither")
    async with OpsbusClient(args.url, args.token) as client:
        answer = await client.todo_op(args.id, args.op, **body)
    if args.json:
        print_json(answer)
        return 0
    item = answer["item"]
    extra = f"; published seq {answer['event']['seq']}" if answer.get("event") else ""
    print(f"#{item['id']} {_state(item)}{' by ' + item['owner'] if item.get('owner') else ''}"
          f"{extra}")
    return 0


async def silence_add(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    body: dict[str, Any] = {
        "matcher": {"key": args.key} if args.key is not None else {"filter": args.filter},
        "comment": args.comment,
    }
    if args.operator:
        body["operator"] = args.operator
    if args.queue:
        body["queue"] = args.queue
    body.update({"duration": args.duration} if args.duration else {"ends_at": args.until})
    async with OpsbusClient(args.url, args.token) as client:
        silence = await client.add_silence(**body)
    if args.json:
        print_json(silence)
    else:
        print(f"silence {silence['id']} until {silence['ends_at']}")
    return 0


def _matcher(matcher: dict[str, Any]) -> str:
    if "key" in matcher:
        return f"key {matcher['key']}"
    return f"filter {orjson.dumps(matcher['filter']).decode()}"


async def silence_list(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        silences = await client.silences(all=args.all)
    if args.json:
        print_json(silences)
        return 0
    if not silences:
        print("no silences")
        return 0
    rows = [[str(s["id"]), s.get("queue") or "*", s["author"],
             age_s(s["remaining_s"]) if s["active"] else "ended", s["ends_at"],
             f"{_matcher(s['matcher'])}  {s['comment']}".strip()] for s in silences]
    print_table(rows, ["ID", "QUEUE", "AUTHOR", "LEFT", "ENDS", "MATCHER / COMMENT"])
    return 0


async def silence_expire(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        silence = await client.expire_silence(args.id, operator=args.operator)
    if args.json:
        print_json(silence)
    else:
        print(f"silence {silence['id']} ended at {silence['ends_at']}")
    return 0
