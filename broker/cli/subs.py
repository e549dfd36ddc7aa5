"""`opsbus subs list|apply|pause|resume|deliveries|retry` and `opsbus actions list|apply|jobs`:
the automation objects (subscriptions and API actions) from the command line."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import orjson

from broker.cli import client_options, json_option, whole
from broker.cli.output import print_json, print_table
from broker.errors import BadRequest, InvalidConfig, OpsbusError

API_ONLY_FIELDS = ("origin", "version", "updated_at", "status")
"""Members the list output adds; dropped on apply so `list --json` output applies back."""


def register(sub: Any) -> None:
    subs = sub.add_parser("subs", help="list, apply, pause, resume subscriptions; deliveries",
                          description="Manage push and pull subscriptions.")
    verbs = subs.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("list", help="subscriptions with their state and counts")
    _common(p, list_subs)
    p = verbs.add_parser("apply", help="create or replace subscriptions from a TOML/JSON file",
                         epilog="The file holds [[subscriptions]] tables (TOML), a JSON list, "
                                "{\"subscriptions\": [...]}, or one object.")
    p.add_argument("file", type=Path)
    _common(p, apply_kind, kind="subscriptions")
    for verb in ("pause", "resume"):
        p = verbs.add_parser(verb, help=f"{verb} a subscription's deliveries")
        p.add_argument("name")
        p.add_argument("--operator", help="who (recorded with the pause)")
        _common(p, pause_sub, resume=verb == "resume")
    p = verbs.add_parser("deliveries", help="a subscription's deliveries and attempts")
    p.add_argument("name")
    p.add_argument("--state", choices=("pending", "leased", "delivered", "deadlettered"))
    p.add_argument("--limit", type=whole(1), default=50)
    p.add_argument("--after", type=whole(), default=0, help="delivery id to start after")
    _common(p, list_deliveries)
    p = verbs.add_parser("retry", help="retry a dead-lettered delivery")
    p.add_argument("name")
    p.add_argument("delivery", type=whole())
    _common(p, retry_delivery)

    actions = sub.add_parser("actions", help="list and apply API actions; their jobs",
                             description="Manage API actions.")
    verbs = actions.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("list", help="the configured actions")
    _common(p, list_actions)
    p = verbs.add_parser("apply", help="create or replace actions from a TOML/JSON file",
                         epilog="The file holds [[actions]] tables (TOML), a JSON list, "
                                "{\"actions\": [...]}, or one object.")
    p.add_argument("file", type=Path)
    _common(p, apply_kind, kind="actions")
    p = verbs.add_parser("jobs", help="an action's recent jobs")
    p.add_argument("name")
    p.add_argument("--limit", type=whole(1), default=50)
    p.add_argument("--after", type=whole(), default=0)
    _common(p, list_jobs)


def _common(parser: argparse.ArgumentParser, func: Any, **defaults: Any) -> None:
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=func, **defaults)


def read_objects(path: Path, kind: str) -> list[dict[str, Any]]:
    """Objects of `kind` from a TOML (`[[kind]]`) or JSON file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadRequest(f"{path}: {exc.strerror}") from None
    try:
        doc: Any = (tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml"
                    else orjson.loads(raw))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise InvalidConfig(f"{path}: {exc}") from None
    if isinstance(doc, dict) and kind in doc:
        doc = doc[kind]
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) for i in items):
        raise InvalidConfig(f"{path}: each {kind[:-1]} must be a table/object")
    return [{k: v for k, v in i.items() if k not in API_ONLY_FIELDS} for i in items]


def validated(path: Path, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every object checked locally first, so a bad file changes nothing on the broker."""
    from broker.actions.spec import validate_action
    from broker.delivery.subscriptions import validate_subscription

    check = validate_subscription if kind == "subscriptions" else validate_action
    out = []
    for index, item in enumerate(items):
        try:
            out.append(check(item))
        except OpsbusError as exc:
            raise InvalidConfig(f"{path}: {kind}[{index}]: {exc.detail}") from None
    return out


async def apply_kind(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    specs = validated(args.file, args.kind, read_objects(args.file, args.kind))
    applied = []
    async with OpsbusClient(args.url, args.token) as client:
        for spec in specs:
            applied.append(await client.put_object(args.kind, spec))
    if args.json:
        print_json(applied)
    else:
        for obj in applied:
            print(f"applied {args.kind[:-1]} {obj['name']} (version {obj['version']})")
    return 0


async def list_subs(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        subs = (await client.request("GET", "/v1/subscriptions"))["subscriptions"]
    if args.json:
        print_json(subs)
        return 0
    rows = []
    for s in subs:
        counts = s["status"]["counts"]
        error = (s["status"].get("last_error") or {}).get("error") or ""
        rows.append([s["name"], s["type"], s["status"]["state"], s.get("url", ""),
                     str(counts["pending"] + counts["leased"]), str(counts["delivered"]),
                     str(counts["deadlettered"]), error])
    print_table(rows, ["name", "type", "state", "url", "open", "delivered", "dead", "last error"])
    return 0


async def pause_sub(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        status = await client.pause_subscription(args.name, args.operator, resume=args.resume)
    if args.json:
        print_json(status)
    else:
        print(f"subscription {args.name} is {status['state']}")
    return 0


async def list_deliveries(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        page = await client.deliveries(args.name, state=args.state, after=args.after,
                                       limit=args.limit)
    if args.json:
        print_json(page)
        return 0
    rows = []
    for d in page["deliveries"]:
        last = d["attempts_log"][-1] if d["attempts_log"] else {}
        rows.append([str(d["id"]), str(d["seq"]), d["state"], str(d["attempts"]),
                     str(last.get("status") or ""), f"{last.get('latency_ms') or ''}",
                     d["last_error"] or "", d["updated_at"]])
    print_table(rows, ["id", "seq", "state", "attempts", "status", "ms", "last error", "updated"])
    return 0


async def retry_delivery(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        delivery = await client.retry_delivery(args.name, args.delivery)
    if args.json:
        print_json(delivery)
    else:
        print(f"delivery {delivery['id']} is {delivery['state']} again")
    return 0


async def list_actions(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        actions = await client.list_objects("actions")
    if args.json:
        print_json(actions)
        return 0
    print_table([[a["name"], a.get("kind", "http"), a.get("method", ""), a.get("url", ""),
             a.get("rate") or "", a["origin"]] for a in actions],
           ["name", "kind", "method", "url", "rate", "origin"])
    return 0


async def list_jobs(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        page = await client.action_jobs(args.name, after=args.after, limit=args.limit)
    if args.json:
        print_json(page)
        return 0
    print_table([[str(j["id"]), str(j["seq"]), j["state"], str(j["attempts"]),
             str(j["result_seq"] or ""), j["operator"] or "", j["last_error"] or ""]
            for j in page["jobs"]],
           ["id", "seq", "state", "attempts", "result", "operator", "last error"])
    return 0
