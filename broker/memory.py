"""Giving freed memory back to the system after a burst (stream buffers of dropped
readers): glibc keeps freed heap pages for reuse unless asked to return them."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.clock import Clock

log = logging.getLogger(__name__)

TRIM_DELAY_S = 1.0
"""Releases within this long of each other are served by one trim."""

SWEEP_S = 2.0
"""A buffer is freed when its connection closes, which may be long after its stream
ended: connections holding one are checked this often, and a trim follows when any
has let go of its buffer."""


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


_TRIM = _load_trim()
_pending: asyncio.TimerHandle | None = None
_ended = False
_held: weakref.WeakSet[asyncio.WriteTransport] = weakref.WeakSet()


def release_soon() -> None:
    """Ask for freed memory to go back to the system shortly (once per burst): large
    buffers freed together leave whole free pages the allocator would otherwise keep."""
    global _pending, _ended
    _ended = True
    if _TRIM is None or (_pending is not None and not _pending.cancelled()):
        return
    _pending = asyncio.get_running_loop().call_later(TRIM_DELAY_S, _trim)


def release_when_flushed(transport: asyncio.WriteTransport) -> None:
    """`transport` holds a large buffer its stream no longer needs: trim once it is
    written out or dropped (its connection closes on the client's own time)."""
    _held.add(transport)


async def sweep(clock: Clock) -> None:
    """Background service: trim when streams have ended or watched buffers have gone
    since the last look."""
    global _ended
    while True:
        await clock.sleep(SWEEP_S)
        for transport in [t for t in _held if not t.get_write_buffer_size()]:
            _held.discard(transport)
            _ended = True
        if _ended and _TRIM is not None:
            _ended = False
            started = time.perf_counter()
            _TRIM(0)
            log.debug("memory trimmed in %.1f ms", (time.perf_counter() - started) * 1000)


def _trim() -> None:
    global _pending
    _pending = None
    if _TRIM is not None:
        _TRIM(0)
