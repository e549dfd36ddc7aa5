"""The write transaction every repository writes in: opaque to the features that use it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager


class Transaction(ABC):
    """One write transaction of a backend, opened by the bus's writer for a group of
    units of work and committed (durably) when they are done.

    Features never look inside it: they hand it to their repository (`repo.writes(tx)`),
    which opens its write half on it. Write methods are coroutines, so a backend may run
    its statements on a connection's own thread or over the network; nothing may assume
    they run on the event loop's thread. A backend shared by several processes decides
    claims and leases inside the transaction (row locks, `FOR UPDATE SKIP LOCKED`), so
    a row a write method returned stays decided until the transaction ends.
    """

    committed: Callable[[], None] | None = None
    """Set by the writer before the transaction ends: run on the event loop once COMMIT
    has returned, ahead of whatever the loop does next. A backend that commits on
    another thread schedules it from there, so what it does (the live fan-out) waits
    for one turn of the loop rather than for the commit's result to travel back
    through the awaits that end the transaction."""

    @abstractmethod
    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested savepoint: what is written inside it is undone if the block raises."""


def settle_gathered(gathered: Iterable[object]) -> None:
    """The outermost savepoint of a transaction has ended: what its repositories gathered
    can no longer be undone but with the whole transaction (each that keeps an undo
    journal drops it)."""
    for deferred in gathered:
        settle = getattr(deferred, "settle", None)
        if settle is not None:
            settle()
