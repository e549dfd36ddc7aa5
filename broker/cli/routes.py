"""`opsbus routes list|apply|test|delete`: manage routes and dry-run events through them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from broker.cli import client_options, json_option, whole
from broker.cli.output import print_json, table
from broker.errors import BadRequest, InvalidConfig, OpsbusError

CHUNK = 500
"""Events per `POST /v1/routes/test` request."""
API_ONLY_FIELDS = ("origin", "version", "updated_at")
"""Members `routes list --json` adds; dropped on apply so its output applies back."""


def register(sub: Any) -> None:
    parser = sub.add_parser("routes", help="list, apply, test and delete routes",
                            description="Manage routes and see where events would go.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("list", help="list the routes")
    client_options(p)
    json_option(p)
    p.set_defaults(func=list_routes)

    p = verbs.add_parser("apply", help="create or replace routes from a TOML or JSON file",
                         epilog="The file holds [[routes]] tables (TOML), or a JSON list of "
                                "routes, {\"routes\": [...]}, or a single route object.")
    p.add_argument("file", type=Path)
    client_options(p)
    json_option(p)
    p.set_defaults(func=apply_routes)

    p = verbs.add_parser("delete", help="delete routes by name")
    p.add_argument("names", nargs="+", metavar="NAME")
    client_options(p)
    p.set_defaults(func=delete_routes)

    p = verbs.add_parser(
        "test", help="show which routes and targets events would hit (stores nothing)",
        description="Evaluate events from files (JSON, NDJSON, batch arrays; folders "
                    "recursively) against the route table without storing them: the running "
                    "broker's table, or with --config the routes of a file and no broker.",
    )
    p.add_argument("paths", nargs="*", metavar="FILE_OR_DIR")
    p.add_argument("--config", type=Path,
                   help="evaluate the [[routes]] of this opsbus.toml locally (no broker)")
    p.add_argument("--route", type=Path, metavar="FILE",
                   help="a draft route (TOML or JSON); replaces the route of the same name")
    p.add_argument("--history", metavar="SINCE",
                   help="run the draft route over events stored since SINCE (24h, RFC 3339)")
    p.add_argument("--until", help="end of the --history window")
    p.add_argument("--limit", type=whole(1), default=10_000,
                   help="most stored events --history scans (default %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="print the summary only")
    client_options(p)
    json_option(p)
    p.set_defaults(func=test_routes)


# -- reading route files -------------------------------------------------------------

def read_route_file(path: Path) -> list[dict[str, Any]]:
    """Routes from a TOML (`[[routes]]`, or one route's keys at top level) or JSON file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadRequest(f"{path}: {exc.strerror}") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            doc: Any = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidConfig(f"{path}: {exc}") from None
    else:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidConfig(f"{path}: not valid JSON: {exc}") from None
    if isinstance(doc, dict) and "routes" in doc:
        doc = doc["routes"]
    items = doc if isinstance(doc, list) else [doc]
    return [{k: v for k, v in item.items() if k not in API_ONLY_FIELDS}
            if isinstance(item, dict) else item for item in items]


def validated(path: Path, items: list[Any]) -> list[dict[str, Any]]:
    """Every route checked locally first, so a bad file changes nothing on the broker."""
    from broker.routing import validate_route

    specs = []
    for index, item in enumerate(items):
        try:
            specs.append(validate_route(item))
        except OpsbusError as exc:
            raise InvalidConfig(f"{path}: routes[{index}]: {exc.detail}") from None
    return specs


def filter_text(spec: Any) -> str:
    """A filter the way people write it: the CESQL text, or compact JSON."""
    if not spec:
        return "(every event)"
    if isinstance(spec, dict) and list(spec) == ["sql"]:
        return str(spec["sql"])
    return orjson.dumps(spec).decode()


# -- list, apply, delete -------------------------------------------------------------

async def list_routes(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        answer = await client.request("GET", "/v1/routes")
    routes = answer["routes"]
    if args.json:
        print_json(routes)
    else:
        print(table([[r["name"], "yes" if r.get("enabled", True) else "no",
                      filter_text(r.get("filter")), ", ".join(r["targets"]), r["origin"]]
                     for r in routes], ["name", "enabled", "filter", "targets", "origin"]))
    if answer.get("config_error"):
        print(f"opsbus: the config file's last edit was refused: {answer['config_error']}",
              file=sys.stderr)
    return 0


async def apply_routes(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    specs = validated(args.file, read_route_file(args.file))
    outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": [], "failed": []}
    errors: dict[str, str] = {}
    async with OpsbusClient(args.url, args.token) as client:
        current = {r["name"]: r for r in await client.list_objects("routes")}
        for spec in specs:
            name = spec["name"]
            old = current.get(name)
            if old is not None and {k: old.get(k) for k in spec} == spec:
                outcome["unchanged"].append(name)
                continue
            try:
                await client.put_object("routes", spec)
            except OpsbusError as exc:
                if exc.status < 400 or exc.status >= 500:  # unreachable, broker failure
                    raise
                outcome["failed"].append(name)
                errors[name] = exc.detail
                continue
            outcome["created" if old is None else "updated"].append(name)
    if args.json:
        print(orjson.dumps({**outcome, "errors": errors}).decode())
    else:
        print(", ".join(f"{len(v)} {k}" for k, v in outcome.items()))
        for verb in ("created", "updated"):
            for name in outcome[verb]:
                print(f"  {verb:<9} {name}")
        for name, detail in errors.items():
            print(f"  failed    {name}: {detail}", file=sys.stderr)
    return 1 if errors else 0


async def delete_routes(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        for name in args.names:
            await client.delete_object("routes", name)
            print(f"deleted {name}")
    return 0


# -- test ----------------------------------------------------------------------------

async def test_routes(args: argparse.Namespace) -> int:
    draft = None
    if args.route is not None:
        drafts = validated(args.route, read_route_file(args.route))
        if len(drafts) != 1:
            raise BadRequest(f"--route {args.route}: holds {len(drafts)} routes; give one")
        draft = drafts[0]
    if args.history:
        if draft is None:
            raise BadRequest("--history runs a draft route: give it with --route FILE")
        if args.config is not None:
            raise BadRequest("--history reads the broker's stored events; drop --config")
        return await _history(args, draft)
    if not args.paths:
        raise BadRequest("give event files or folders to test (or --history with --route)")
    from broker.eventfiles import read_events

    entries = list(read_events(args.paths))
    payload = [e.event if e.event is not None else str(e.error) for e in entries]
    if args.config is not None:
        report = _local(args.config, payload, draft)
    else:
        report = await _remote(args, payload, draft)
    for entry, result in zip(entries, report["results"], strict=True):
        result["path"], result["where"] = entry.path, entry.where
    if args.json:
        print(orjson.dumps(report).decode())
    else:
        if not args.quiet:
            for entry, result in zip(entries, report["results"], strict=True):
                print(_event_line(entry.location, result))
        _print_summary(report["summary"])
    return 1 if report["summary"]["invalid"] else 0


def _local(config: Path, events: list[Any], draft: dict[str, Any] | None) -> dict[str, Any]:
    """Compile the file's routes here and evaluate: no broker, nothing stored."""
    from broker.dryrun import evaluate_events, with_draft
    from broker.routing import compile_route
    from broker.settings import Settings, coerce_setting, load_config_file

    doc = load_config_file(config)
    specs = validated(config, doc.get("routes", []))
    server = doc.get("server", {})
    raw = server.get("hop_limit", Settings.hop_limit) if isinstance(server, dict) else None
    hop_limit = coerce_setting("hop_limit", raw, f"config file {config}")
    live = [compile_route(s) for s in specs if s["enabled"]]
    compiled = compile_route(draft) if draft is not None else None
    return evaluate_events(with_draft(live, compiled), hop_limit, events, compiled)


async def _remote(args: argparse.Namespace, events: list[Any], draft: dict[str, Any] | None
                  ) -> dict[str, Any]:
    from broker.client import OpsbusClient
    from broker.dryrun import summarize

    results: list[dict[str, Any]] = []
    unknown: set[str] = set()
    async with OpsbusClient(args.url, args.token) as client:
        for start in range(0, len(events), CHUNK):
            chunk = events[start:start + CHUNK]
            # Unreadable entries stay local; the broker sees only events.
            sendable = [e for e in chunk if isinstance(e, dict)]
            answer = await client.test_routes(sendable, route=draft) if sendable else {
                "results": [], "summary": {}}
            answers = iter(answer["results"])
            for offset, entry in enumerate(chunk):
                result = next(answers) if isinstance(entry, dict) else {"error": entry}
                result["index"] = start + offset
                results.append(result)
            unknown.update(answer["summary"].get("unknown_targets", []))
    summary = summarize(results)
    summary["unknown_targets"] = sorted(unknown)
    return {"results": results, "summary": summary}


def _event_line(location: str, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{location}  ! {result['error']}"
    what = "  ".join(str(x) for x in (result["type"], result.get("subject")) if x)
    if result.get("loop"):
        where = "(over the hop limit: stored, not routed)"
    elif not result["routes"]:
        where = "(no route)"
    else:
        by_route: dict[str, list[str]] = {}
        for hit in result["targets"]:
            by_route.setdefault(hit["route"], []).append(hit["target"])
        where = "; ".join(f"{r} → {', '.join(t)}" for r, t in by_route.items())
    draft = ""
    if "draft_error" in result:
        draft = f"  [draft: {result['draft_error']['message']}]"
    return f"{location}  {what}  ⇒ {where}{draft}"


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"\n{summary['events']} events: {summary['matched']} routed, "
          f"{summary['unmatched']} unmatched, {summary['invalid']} unreadable"
          + (f", {summary['loops']} over the hop limit" if summary["loops"] else ""))
    if summary["routes"]:
        print(table([[name, str(n)] for name, n in sorted(summary["routes"].items())],
                    ["route", "events"]))
    if summary["targets"]:
        print(table([[name, str(n)] for name, n in sorted(summary["targets"].items())],
                    ["target", "events"]))
    for target in summary.get("unknown_targets", []):
        print(f"warning: {target} is not configured on the broker", file=sys.stderr)


async def _history(args: argparse.Namespace, draft: dict[str, Any]) -> int:
    from broker.client import OpsbusClient

    async with OpsbusClient(args.url, args.token) as client:
        answer = await client.test_routes(route=draft, history={
            "since": args.history, "until": args.until, "limit": args.limit})
    report = answer["history"]
    if args.json:
        print(orjson.dumps(report).decode())
        return 0
    window = f"{report['since']} .. {report['until'] or 'now'}"
    more = " (limit reached: more events in the window)" if report["truncated"] else ""
    print(f"route {report['route']} over events received {window}: "
          f"scanned {report['scanned']}{more}, matched {report['matched']}")
    if report["matches"]:
        print(table([[str(m["seq"]), str(m["type"]), str(m["source"]), str(m["subject"] or "")]
                     for m in report["matches"]], ["seq", "type", "source", "subject"]))
        if report["matches_truncated"]:
            print(f"… and {report['matched'] - len(report['matches'])} more")
    for queue in report["queues"]:
        note = "" if queue["known"] else " (no such queue on the broker)"
        print(f"\nqueue:{queue['queue']}{note}, grouped by {queue['grouping']}: would open "
              f"{queue['opened']} items, attach {queue['attached']} events, resolve "
              f"{queue['resolved']}")
        if queue["items"]:
            print(table([[i["key"], str(i["count"]), i["state"], i["title"] or ""]
                         for i in queue["items"]], ["key", "events", "state", "title"]))
    return 0
