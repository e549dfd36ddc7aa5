"""`opsbus consume SUBSCRIPTION -- CMD ...`: a pull consumer for scripts.

Each event runs CMD once with the structured event JSON on stdin and OPSBUS_EVENT_*
variables. Exit 0 acks, 75 (EX_TEMPFAIL) releases for a retry, anything else rejects
(dead letter). A JSON object printed on stdout is published as the result event, caused
by the triggering event. The lease is renewed while CMD runs. SIGINT/SIGTERM stop taking
new events and let running commands finish within `--grace`; commands still running
then are stopped and their events released.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from broker.bus.lineage import hop_count
from broker.cli import client_options, json_option, whole
from broker.clock import SystemClock
from broker.errors import BadRequest, Conflict, OpsbusError
from broker.numbers import INT32_MAX
from broker.timeutil import parse_rfc3339

if TYPE_CHECKING:
    from broker.client import OpsbusClient

EX_TEMPFAIL = 75


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "consume", help="run a command for each event of a pull subscription",
        description="Pull events and run CMD for each: the event JSON on stdin, "
                    "OPSBUS_EVENT_{ID,TYPE,SOURCE,SUBJECT,SEQ} and OPSBUS_DELIVERY_COUNT in "
                    "the environment. Exit 0 acks, 75 releases for retry, other codes reject. "
                    "A JSON object on stdout is published as the result event.",
        epilog="Example: opsbus consume restarts --concurrency 4 -- ./restart.sh",
    )
    parser.add_argument("subscription", help="name of a pull subscription")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command and its arguments, after --")
    parser.add_argument("--concurrency", type=whole(1), default=1,
                        help="commands running at once (default %(default)s)")
    parser.add_argument("--max", type=whole(1), default=None, metavar="N",
                        help="exit after N events")
    parser.add_argument("--lease", type=float, default=None, metavar="SECONDS",
                        help="lease per event (default: the subscription's)")
    parser.add_argument("--wait", type=float, default=20.0, metavar="SECONDS",
                        help="long-poll wait per receive (default %(default)s)")
    parser.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGINT/SIGTERM, how long running commands may finish")
    parser.add_argument("--no-publish", action="store_true",
                        help="ignore stdout instead of publishing it as a result event")
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=consume, parser=parser)


def split_command(args: argparse.Namespace) -> list[str]:
    """The command after `--`. argparse consumes the `--` itself when the remainder
    starts right there; options written between SUBSCRIPTION and `--` stay in the
    remainder instead, and are parsed into `args` here."""
    rest = list(args.cmd)
    if rest and rest[0].startswith("-") and "--" not in rest:
        # Options and no `--`: running `--url` as the command would only confuse.
        raise BadRequest(f"no command to run: put it after --, e.g. opsbus consume"
                         f" {args.subscription} {' '.join(rest)} -- ./handle.sh")
    if "--" not in rest or not rest[0].startswith("-"):
        return rest
    cut = rest.index("--")
    if cut:
        args.parser.parse_args([*rest[:cut], args.subscription], namespace=args)
    return rest[cut + 1:]


def child_env(message: dict[str, Any]) -> dict[str, str]:
    event = message["event"]
    return {**os.environ,
            "OPSBUS_EVENT_ID": str(event["id"]), "OPSBUS_EVENT_TYPE": str(event["type"]),
            "OPSBUS_EVENT_SOURCE": str(event["source"]),
            "OPSBUS_EVENT_SUBJECT": str(event.get("subject") or ""),
            "OPSBUS_EVENT_SEQ": str(message["seq"]),
            "OPSBUS_DELIVERY_COUNT": str(message["delivery_count"])}


def result_event(output: bytes, trigger: dict[str, Any], subscription: str
                 ) -> dict[str, Any] | None:
    """The JSON object a command printed, completed into a derived CloudEvent; None when
    it printed no JSON object (plain output is just passed through to stderr)."""
    text = output.strip()
    if not text.startswith(b"{"):
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    doc.setdefault("specversion", "1.0")
    doc.setdefault("id", str(uuid.uuid4()))
    doc.setdefault("source", f"consume/{subscription}")
    doc.setdefault("time", SystemClock().stamp())
    doc["causationid"] = str(trigger["id"])
    doc["correlationid"] = str(trigger.get("correlationid") or trigger["id"])
    doc["hopcount"] = min(hop_count(trigger.get("hopcount")) + 1, INT32_MAX)
    return doc


@dataclass
class Consumer:
    """The consume loop's state: one client, counters, the stop signal."""

    client: OpsbusClient
    args: argparse.Namespace
    cmd: list[str]
    stop: asyncio.Event
    counts: Counter[str]
    reserved: int = 0

    def take_slot(self) -> bool:
        """Reserve one of `--max` events before receiving it."""
        if self.args.max is not None and self.reserved >= self.args.max:
            return False
        self.reserved += 1
        return True

    def note(self, message: dict[str, Any], outcome: str, detail: str) -> None:
        if not self.args.json:
            event = message["event"]
            print(f"{message['seq']:>8}  {event['type']}  {event['id']}  -> {outcome}"
                  f" ({detail})", file=sys.stderr, flush=True)

    async def worker(self) -> None:
        while not self.stop.is_set() and self.take_slot():
            receiving = asyncio.create_task(self.client.receive(
                self.args.subscription, max=1, wait_s=self.args.wait,
                lease_s=self.args.lease))
            stopping = asyncio.create_task(self.stop.wait())
            done, _ = await asyncio.wait({receiving, stopping},
                                         return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if receiving not in done:
                # A lease granted to the abandoned request simply expires and redelivers.
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, OpsbusError):
                    await receiving
                self.reserved -= 1
                return
            messages = receiving.result()
            if not messages:
                self.reserved -= 1
                continue
            for message in messages:
                await self.handle(message)

    async def handle(self, message: dict[str, Any]) -> None:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=child_env(message))
        running = asyncio.create_task(proc.communicate(orjson.dumps(message["event"])))
        renewing = asyncio.create_task(self.keep_lease(message))
        watcher = asyncio.create_task(self.stopped_for(running))
        try:
            await asyncio.wait({running, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            renewing.cancel()
        if not running.done():  # asked to stop and the grace period is over
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running), 5)
            if not running.done():
                proc.kill()
            await running
            await self.settle(message, "release", "stopped before it finished")
            return
        stdout, _ = running.result()
        self.counts["processed"] += 1
        code = proc.returncode
        elapsed = f"exit {code}, {time.monotonic() - started:.2f}s"
        if stdout and not self.args.no_publish:
            await self.publish_result(stdout, message)
        if code == 0:
            await self.settle(message, "ack", elapsed)
        elif code == EX_TEMPFAIL:
            await self.settle(message, "release", elapsed)
        else:
            await self.settle(message, "reject", elapsed)

    async def stopped_for(self, running: asyncio.Task[Any]) -> None:
        """Returns once a stop was asked and `--grace` has passed with CMD still running."""
        await self.stop.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(running), self.args.grace)

    async def keep_lease(self, message: dict[str, Any]) -> None:
        """Renew the lease at half its length while the command runs."""
        expires = message.get("lease_expires_at")
        left = (parse_rfc3339(expires) - SystemClock().now()).total_seconds() if expires else 0
        period = max(0.5, left / 2) if expires else 10.0
        while True:
            await asyncio.sleep(period)
            try:
                await self.client.settle(self.args.subscription, "renew", [message["lease"]],
                                         **({"lease_s": self.args.lease}
                                            if self.args.lease else {}))
            except OpsbusError as exc:
                print(f"opsbus: could not renew the lease of seq {message['seq']}: "
                      f"{exc.detail}", file=sys.stderr)
                return

    async def publish_result(self, stdout: bytes, message: dict[str, Any]) -> None:
        event = result_event(stdout, message["event"], self.args.subscription)
        if event is None:
            sys.stderr.buffer.write(stdout)
            sys.stderr.flush()
            return
        try:
            await self.client.publish(event)
            self.counts["published"] += 1
        except OpsbusError as exc:
            self.counts["publish_errors"] += 1
            print(f"opsbus: result of seq {message['seq']} not published: {exc.detail}",
                  file=sys.stderr)

    async def settle(self, message: dict[str, Any], verb: str, detail: str) -> None:
        try:
            await self.client.settle(self.args.subscription, verb, [message["lease"]])
            self.counts[{"ack": "acked", "release": "released", "reject": "rejected"}[verb]] += 1
            self.note(message, verb, detail)
        except Conflict:
            self.counts["lease_lost"] += 1
            self.note(message, "lease lost", f"{detail}; it will be redelivered")


async def consume(args: argparse.Namespace) -> int:
    from broker.client import OpsbusClient

    cmd = split_command(args)
    if not cmd:
        raise BadRequest("give the command to run after --, e.g. opsbus consume SUB -- ./handle.sh")
    if args.concurrency < 1 or (args.max is not None and args.max < 1):
        raise BadRequest("--concurrency and --max must be at least 1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    counts: Counter[str] = Counter()
    started = time.monotonic()
    async with OpsbusClient(args.url, args.token) as client:
        await client.subscription(args.subscription)  # fail fast on a wrong name
        consumer = Consumer(client, args, cmd, stop, counts)
        await asyncio.gather(*(consumer.worker() for _ in range(args.concurrency)))
    summary = {"subscription": args.subscription, "processed": counts["processed"],
               "acked": counts["acked"], "released": counts["released"],
               "rejected": counts["rejected"], "published": counts["published"],
               "lease_lost": counts["lease_lost"],
               "seconds": round(time.monotonic() - started, 3)}
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(f"opsbus: {summary['processed']} events: {summary['acked']} acked, "
              f"{summary['released']} released, {summary['rejected']} rejected, "
              f"{summary['published']} results published", file=sys.stderr)
    return 0
