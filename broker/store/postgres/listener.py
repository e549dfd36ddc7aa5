"""The replica's one LISTEN connection: notifications are wake-ups, never the truth.

LISTEN first, then tell the owner to catch up from the table; on a lost connection,
reconnect and do the same. A notification can be lost with its connection, so the
owner polls the table anyway (docs/postgres.md, section 4)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from broker.clock import Clock, SystemClock

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

Signal = Callable[[str, str | None], None]
"""Called with (channel, payload); payload None means "reconnected: catch up"."""


class Listener:
    """Keeps a dedicated connection LISTENing on `channels` until stopped."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], channels: Sequence[str],
        signal: Signal, *, retry_s: float = 1.0, ping_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._connect = connect
        self._channels = tuple(channels)
        self._signal = signal
        self._retry_s = retry_s
        self._ping_s = ping_s
        self._clock = clock or SystemClock()
        """The broker's clock: the back-off and the ping wait on it, so a test on the
        manual clock decides when they happen."""
        self.connected = asyncio.Event()
        """Set while LISTEN is active (tests wait for it instead of sleeping)."""
        self.reconnects = 0

    def _notified(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self._signal(channel, str(payload))

    async def run(self) -> None:
        """Listen forever (cancel to stop), reconnecting after `retry_s` when lost."""
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:  # the database is away: the poll keeps things going
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc,
                            self._retry_s)
                await self._clock.sleep(self._retry_s)  # a back-off, not a synchronisation
                continue
            try:
                await self._listen(conn)
            except Exception as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                if not conn.is_closed():
                    conn.terminate()
            self.reconnects += 1

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        for channel in self._channels:
            await conn.add_listener(channel, self._notified)
        self.connected.set()
        for channel in self._channels:  # after LISTEN: whatever committed before is read now
            self._signal(channel, None)
        while not await self._clock.wait(lost, self._ping_s):
            # A half-open TCP connection delivers nothing and reports nothing: ask. (The
            # reply's own timeout is the driver's, in real seconds: it guards the socket.)
            await conn.fetchval("SELECT 1", timeout=self._ping_s)
