"""The dedupe window: how far back a repeated (source, id) is still recognised.

The log is filed in periods (`log_partition`, a day by default); a repeat is recognised
while the original lies in the current period or one of the `dedupe_window - 1` before
it, so with the defaults for at least one day and at most two. Outside the window a
repeat is a new event with a new seq (docs/storage.md, "Dedupe: a window, not forever").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from broker.timeutil import to_rfc3339

DEFAULT_PERIOD_S = 86400
DEFAULT_WINDOW = 2


@dataclass(frozen=True, slots=True)
class DedupeWindow:
    """`periods` periods of `period_s` seconds; `periods == 0` means forever."""

    period_s: int = DEFAULT_PERIOD_S
    periods: int = DEFAULT_WINDOW

    @property
    def forever(self) -> bool:
        return self.periods == 0

    def start(self, recvtime: str) -> str:
        """The oldest recvtime (a stamp) a repeat received at `recvtime` is still a
        duplicate of; the empty string (older than any stamp) when forever or when
        `recvtime` is not a stamp."""
        if self.forever:
            return ""
        # Asked once per append with the transaction's stamp: the answer changes once a
        # period, so it is computed once per stamp.
        return _start(self.period_s, self.periods, recvtime)


@lru_cache(maxsize=16)
def _start(period_s: int, periods: int, recvtime: str) -> str:
    """`DedupeWindow.start` for a window of `periods` periods of `period_s` seconds."""
    start = period_start(recvtime, period_s)
    if start is None:
        return ""
    start -= (periods - 1) * period_s
    return to_rfc3339(datetime.fromtimestamp(max(start, 0), UTC))


def epoch_of(recvtime: str) -> int | None:
    """Whole epoch seconds of a stamp (naive ones read as UTC); None when it is not one."""
    try:
        moment = datetime.fromisoformat(recvtime.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def period_start(recvtime: str, period_s: int) -> int | None:
    """The start (epoch seconds) of the period of `period_s` seconds that `recvtime`
    falls in; None when `recvtime` is not a stamp."""
    epoch = epoch_of(recvtime)
    return None if epoch is None else epoch - epoch % period_s


def parse_window(text: str | int) -> int:
    """`dedupe_window`: a number of periods (at least 1), or `forever` (0)."""
    if str(text).strip().lower() == "forever":
        return 0
    value = int(str(text).strip())
    if value < 1:
        raise ValueError("dedupe_window must be at least 1 period, or forever")
    return value
