"""`opsbus replay`: publish recorded events from files and folders, paced or at full speed."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from broker.cli import client_options, json_option, whole
from broker.clock import SystemClock
from broker.errors import BadRequest, Conflict, Forbidden, TooLarge
from broker.eventfiles import FileEvent
from broker.timeutil import parse_rfc3339, to_rfc3339

MAX_BATCH_BYTES = 2 * 1024 * 1024
"""Request size a batch stays under (the broker's default limit is 4 MiB)."""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "replay", help="publish events from files and folders",
        description="Publish events from JSON, NDJSON and batch-array files (folders "
                    "recursively, in name order). Each event gets a new id and a time "
                    "shifted so the first one is now (--keep-ids replays verbatim) and the "
                    "extension replay=<run id>: actions and webhooks are recorded, not sent, "
                    "unless --live.",
        epilog="Examples: opsbus replay sample_events/   ·   "
               "opsbus replay day.ndjson --order time --speed 60",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--order", choices=("file", "time"), default="file",
                        help="file order (default) or by event time across files")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=0.0,
                      help="keep the recorded spacing, sped up X times (1 = real time, "
                           "60 = a minute per second); 0 = as fast as possible (default)")
    pace.add_argument("--rate", type=float, default=None, help="send N events per second")
    parser.add_argument("--keep-ids", action="store_true",
                        help="keep ids and times: replay verbatim (a second run is a duplicate)")
    parser.add_argument("--live", action="store_true",
                        help="let actions and webhooks really run (sets replaylive=true)")
    parser.add_argument("--restore", action="store_true",
                        help="restore an export verbatim (implies --keep-ids), the broker's"
                             " own opsbus.* events included, which are stored marked"
                             " opsbusrestored=true; needs an admin token")
    parser.add_argument("--run-id", help="the replay extension's value (default: generated)")
    parser.add_argument("--batch", type=whole(1), default=100,
                        help="events per request when not paced (default %(default)s)")
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=replay)


@dataclass
class Outcome:
    """What a replay did, for the summary."""

    run: str
    files: int = 0
    events: int = 0
    sent: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.sent + self.duplicates + self.conflicts + len(self.rejected)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "files": self.files, "events": self.events, "sent": self.sent,
                "duplicates": self.duplicates, "conflicts": self.conflicts,
                "rejected": self.rejected, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "seconds": round(self.seconds, 3)}


def order_entries(entries: list[FileEvent], order: str) -> list[FileEvent]:
    """Entries in sending order; `time` sorts stably by event time, untimed ones last."""
    if order != "time":
        return entries
    epoch = SystemClock().now().replace(year=1)
    return sorted(entries, key=lambda e: (_time_of(e.event) is None,
                                          _time_of(e.event) or epoch))


def prepare(events: list[dict[str, Any]], run: str, *, keep_ids: bool, live: bool
            ) -> list[dict[str, Any]]:
    """Copies marked with the run id; with new ids (causation links kept) and times
    shifted so the first event is now, unless `keep_ids`."""
    times = [_time_of(e) for e in events]
    first = next((t for t in times if t is not None), None)
    shift = SystemClock().now() - first if first is not None else timedelta(0)
    new_ids: dict[str, str] = {}
    prepared = []
    for event, moment in zip(events, times, strict=True):
        copy = dict(event)
        if not keep_ids:
            new_ids[str(event["id"])] = copy["id"] = str(uuid.uuid4())
            copy["time"] = to_rfc3339(moment + shift) if moment else SystemClock().stamp()
            cause = copy.get("causationid")
            if isinstance(cause, str) and cause in new_ids:
                copy["causationid"] = new_ids[cause]
        copy["replay"] = run
        # A recorded live replay must not go live again unless asked to.
        copy.pop("replaylive", None)
        if live:
            copy["replaylive"] = True
        prepared.append(copy)
    return prepared


def schedule(events: list[dict[str, Any]], speed: float, rate: float | None) -> list[float]:
    """Seconds after the start at which each event is due (all 0: as fast as possible)."""
    if rate:
        return [i / rate for i in range(len(events))]
    if not speed:
        return [0.0] * len(events)
    times = [_time_of(e) for e in events]
    first = next((t for t in times if t is not None), None)
    due, last = [], 0.0
    for moment in times:
        # Time going backwards (file order across files) sends at once, never earlier.
        offset = (moment - first).total_seconds() / speed if moment and first else last
        last = max(last, offset)
        due.append(last)
    return due


def _time_of(event: dict[str, Any] | None) -> Any:
    if not event or not isinstance(event.get("time"), str):
        return None
    try:
        return parse_rfc3339(event["time"])
    except ValueError:
        return None


class Progress:
    """A bar on a terminal, a plain line every few seconds otherwise; always on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()

    def update(self, outcome: Outcome, final: bool = False) -> None:
        if not self.enabled:
            return
        current = time.monotonic()
        if not final and current - self.last < (0.1 if self.tty else 5.0):
            return
        self.last = current
        done = outcome.done
        counts = (f"{done}/{self.total}  sent {outcome.sent}  dup {outcome.duplicates}"
                  f"  rejected {len(outcome.rejected)}")
        if self.tty:
            filled = int(30 * done / self.total)
            end = "\n" if final else ""
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {counts}", end=end,
                  file=sys.stderr, flush=True)
        elif not final:
            print(f"replay: {counts}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self.enabled and self.tty:
            print("\r\033[K", end="", file=sys.stderr)
        print(text, file=sys.stderr, flush=True)


async def replay(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient
    from broker.eventfiles import event_files, read_events

    if args.speed < 0 or (args.rate is not None and args.rate <= 0):
        raise BadRequest("--speed must be >= 0 and --rate > 0")
    if not 1 <= args.batch <= 1000:
        raise BadRequest("--batch must be from 1 to 1000")
    outcome = Outcome(run=args.run_id or f"replay-{uuid.uuid4().hex[:12]}")
    outcome.files = len(event_files(args.paths))
    entries = order_entries(list(read_events(args.paths)), args.order)
    outcome.events = len(entries)
    progress = Progress(len(entries), enabled=not args.json)
    good = [e for e in entries if e.event is not None]
    for entry in entries:
        if entry.event is None:
            reject(outcome, progress, entry.location, str(entry.error))
    events = prepare([e.event for e in good if e.event is not None], outcome.run,
                     keep_ids=args.keep_ids or args.restore, live=args.live)
    due = schedule(events, args.speed, args.rate)
    paced = bool(args.speed or args.rate)
    started = time.monotonic()
    async with OpsbusClient(args.url, args.token) as client:
        i = 0
        while i < len(events):
            wait = due[i] - (time.monotonic() - started)
            if wait > 0:
                await asyncio.sleep(wait)
            # Everything due by now goes in one request: pacing never falls behind.
            elapsed = time.monotonic() - started
            j, size = i, 0
            limit = args.batch if not paced else 1000
            while (j < len(events) and j - i < limit and due[j] <= elapsed
                   and size < MAX_BATCH_BYTES):
                size += len(orjson.dumps(events[j]))
                j += 1
            j = max(j, i + 1)
            await send(client, events[i:j], good[i:j], outcome, progress,
                       restore=args.restore)
            progress.update(outcome)
            i = j
    outcome.seconds = time.monotonic() - started
    progress.update(outcome, final=True)
    print_summary(outcome, args.json)
    return 1 if outcome.rejected else 0


async def send(client: Any, events: list[dict[str, Any]], entries: list[FileEvent],
               outcome: Outcome, progress: Progress, *, restore: bool = False) -> None:
    """Publish a batch; when the broker refuses it, one by one to say which event and why."""
    try:
        if len(events) == 1:
            answers = [await client.publish(events[0], restore=restore)]
        else:
            answers = await client.publish_batch(events, restore=restore)
    except (BadRequest, TooLarge, Conflict, Forbidden) as exc:
        if isinstance(exc, Forbidden) and exc.extra.get("attribute") is None:
            raise  # the token may not do this at all (a missing scope): stop here
        if len(events) > 1:
            for event, entry in zip(events, entries, strict=True):
                await send(client, [event], [entry], outcome, progress, restore=restore)
            return
        if isinstance(exc, Conflict):
            outcome.conflicts += 1  # same (source, id), other content: --keep-ids rerun
            return
        reject(outcome, progress, entries[0].location, exc.detail)
        return
    for answer in answers:
        if answer["duplicate"]:
            outcome.duplicates += 1
        else:
            outcome.sent += 1
            outcome.first_seq = outcome.first_seq or answer["seq"]
            outcome.last_seq = answer["seq"]


def reject(outcome: Outcome, progress: Progress, location: str, reason: str) -> None:
    outcome.rejected.append({"location": location, "error": reason})
    progress.message(f"opsbus: {location}: {reason}")


def print_summary(outcome: Outcome, as_json: bool,
                  out: Callable[[str], None] = print) -> None:
    if as_json:
        out(orjson.dumps(outcome.to_dict()).decode())
        return
    parts = [f"{outcome.sent} sent", f"{outcome.duplicates} duplicates"]
    if outcome.conflicts:
        parts.append(f"{outcome.conflicts} already stored with other content")
    parts.append(f"{len(outcome.rejected)} rejected")
    out(f"replay {outcome.run}: {outcome.events} events from {outcome.files} files in "
        f"{outcome.seconds:.1f}s: {', '.join(parts)}")
    if outcome.first_seq is not None:
        out(f"stored as seq {outcome.first_seq}..{outcome.last_seq}; select them with "
            f"--filter \"replay = '{outcome.run}'\"")
    for item in outcome.rejected:
        out(f"  rejected {item['location']}: {item['error']}")

