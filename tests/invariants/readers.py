"""Stream clients that disconnect and resume at random points: SSE readers that behave
like a standard EventSource (they resume from the last `id:` field they saw, nothing
else) and `opsbus tail` processes killed and restarted with `--after`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from tests.broker_process import ROOT

MARKER_TYPE = "inv.marker"
"""The type of the event published once the run is quiet; every reader's filter lets
it through, so reaching it means a reader has read everything before it."""
OPENING = re.compile(rb"^: opsbus stream after (\d+)$")
UNREACHABLE = 3
"""`opsbus` exit status when the broker cannot be reached."""


def with_marker(expression: str | None) -> str | None:
    """A reader's filter: its own expression, widened to let the end marker through."""
    return None if expression is None else f"({expression}) OR type = '{MARKER_TYPE}'"


@dataclass
class Segment:
    """One connection of a stream client: where it asked to start and what it read."""

    asked_after: int | None
    """Last-Event-ID (or ?after=, or --after) sent; None for a bare connection."""
    opened_after: int | None = None
    """Where the broker said the stream starts (an opening `id:` line, else its comment)."""
    opening_id: bool = False
    """True when an `id:` line opened the stream, before any event."""
    seqs: list[int] = field(default_factory=list)
    ended: str = "open"


class Gate:
    """Set while the broker is up; stream clients wait on it to reconnect after a kill."""

    def __init__(self) -> None:
        self.up = asyncio.Event()


class SseReader:
    """Reads `/v1/stream` with a filter, disconnects after a random number of events
    (zero included: before its first event) and resumes like a standard EventSource."""

    def __init__(self, name: str, base_url: str, expression: str | None, start: str,
                 rng: random.Random, gate: Gate, headers: dict[str, str]) -> None:
        self.name = name
        self.base_url = base_url
        self.expression = expression
        self.filter = with_marker(expression)
        self.start = start
        """`zero` (?after=0), `head` (?after=<head when started>) or `bare` (no position)."""
        self.start_after: int | None = None
        self.rng = rng
        self.gate = gate
        self.headers = headers
        self.segments: list[Segment] = []
        self.last_id: int | None = None
        self.target: int | None = None
        self.reached = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def run(self, session: aiohttp.ClientSession, head: int) -> None:
        if self.start == "zero":
            self.start_after = 0
        elif self.start == "head":
            self.start_after = head
        self._task = asyncio.create_task(self._loop(session), name=f"reader-{self.name}")

    def _budget(self) -> int | None:
        """Events to read before the next disconnect (None: stay connected)."""
        roll = self.rng.random()
        if roll < 0.15:
            return 0
        if roll < 0.35:
            return self.rng.randint(1, 3)
        if roll < 0.85:
            return self.rng.randint(4, 60)
        return None

    async def finish(self, marker: int, timeout: float) -> bool:
        """Read until the marker (seq `marker`) arrives; False if it did not in time."""
        self.target = marker
        if self.last_id is not None and self.last_id >= marker:
            self.reached.set()
        try:
            await asyncio.wait_for(self.reached.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self.gate.up.wait()
            params = {}
            if self.filter is not None:
                params["filter"] = self.filter
            if self.start_after is not None:
                params["after"] = str(self.start_after)
            headers = dict(self.headers)
            if self.last_id is not None:
                headers["Last-Event-ID"] = str(self.last_id)
            asked = self.last_id if self.last_id is not None else self.start_after
            segment = Segment(asked)
            budget = None if self.target is not None else self._budget()
            try:
                async with session.get(self.base_url + "/v1/stream", params=params,
                                       headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=None)) as resp:
                    if resp.status != 200:
                        segment.ended = f"status {resp.status}"
                        self.segments.append(segment)
                        await asyncio.sleep(0.05)  # a client's retry interval
                        continue
                    self.segments.append(segment)
                    segment.ended = await self._read(resp, segment, budget)
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                if segment not in self.segments:
                    self.segments.append(segment)
                segment.ended = f"error {type(exc).__name__}"
                if self.gate.up.is_set():
                    await asyncio.sleep(0.05)  # a client's retry interval

    async def _read(self, resp: aiohttp.ClientResponse, segment: Segment,
                    budget: int | None) -> str:
        block_id: int | None = None
        data = False
        opened = False
        while True:
            raw = await resp.content.readline()
            if not raw:
                return "closed by the broker"
            line = raw.rstrip(b"\r\n")
            if line:
                if line.startswith(b":"):
                    match = OPENING.match(line)
                    if match and segment.opened_after is None:
                        segment.opened_after = int(match.group(1))
                    continue
                name, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if name == b"id":
                    block_id = int(value)
                elif name == b"data":
                    data = True
                continue
            # A blank line ends a block: an event, or the opening (id / comment only).
            if block_id is not None:
                self.last_id = block_id  # what a standard EventSource remembers
                if data:
                    segment.seqs.append(block_id)
                elif not segment.seqs and not segment.opening_id:
                    segment.opening_id = True
                    segment.opened_after = block_id
            block_id, data = None, False
            if not opened:
                opened = True
                if budget == 0:
                    return "disconnected after the opening"
            if self.target is not None and self.last_id is not None \
                    and self.last_id >= self.target:
                self.reached.set()
                return "reached the marker"
            if budget is not None and budget > 0 and len(segment.seqs) >= budget:
                return "disconnected"


class TailClient:
    """An `opsbus tail --json` process, killed and restarted with `--after <last seq>`."""

    def __init__(self, name: str, base_url: str, expression: str | None, after: int,
                 env: dict[str, str], log: Path, gate: Gate) -> None:
        self.name = name
        self.base_url = base_url
        self.expression = expression
        self.filter = with_marker(expression)
        self.start_after = after
        self.env = env
        self.segments: list[Segment] = []
        self.last_seq: int | None = None
        self.target: int | None = None
        self.reached = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.log = log
        """Where the processes' stderr goes (it says why a tail stopped)."""
        self.gate = gate
        self._revival: asyncio.Task[None] | None = None
        self._killing = False

    async def start(self) -> None:
        after = self.last_seq if self.last_seq is not None else self.start_after
        segment = Segment(after, opened_after=after)
        self.segments.append(segment)
        cmd = [sys.executable, "-m", "broker", "tail", "--json", "--url", self.base_url,
               "--after", str(after)]
        if self.filter is not None:
            cmd += ["--filter", self.filter]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
        env.update({"PYTHONPATH": str(ROOT), **self.env})
        with open(self.log, "ab") as log:
            log.write(f"--- {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, stderr=log, env=env)
        self._reader = asyncio.create_task(self._read(self.proc, segment),
                                           name=f"tail-{self.name}")

    async def _read(self, proc: asyncio.subprocess.Process, segment: Segment) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line.endswith(b"\n"):
                code = await proc.wait()
                segment.ended = f"exited with {code}"
                if code == UNREACHABLE and not self._killing:
                    # Started while the broker was down: tail fails fast then, and a
                    # user runs it again once the broker is back.
                    self._revival = asyncio.create_task(self._revive())
                return  # end of output, or a line cut short by a kill: never printed whole
            seq = int(orjson.loads(line)["seq"])
            segment.seqs.append(seq)
            self.last_seq = seq
            if self.target is not None and seq >= self.target:
                self.reached.set()

    async def _revive(self) -> None:
        await self.gate.up.wait()
        self.proc = None
        await self.start()

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """End the process (SIGKILL or SIGTERM) and take every line it printed."""
        self._killing = True
        try:
            if self._revival is not None:
                revival, self._revival = self._revival, None
                await revival  # a process it starts is then ended below like any other
            if self.proc is None:
                return
            if self.proc.returncode is None:
                self.proc.send_signal(sig)
            await self.proc.wait()
            if self._reader is not None:
                await self._reader
            self.proc = None
        finally:
            self._killing = False

    async def restart(self, sig: int) -> None:
        await self.kill(sig)
        await self.start()

    async def finish(self, marker: int, timeout: float) -> bool:
        self.target = marker
        if self.last_seq is not None and self.last_seq >= marker:
            self.reached.set()
        try:
            await asyncio.wait_for(self.reached.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            await self.kill()
