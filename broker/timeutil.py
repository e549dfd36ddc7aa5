"""Time helpers: the broker's time encoding (RFC 3339 UTC stamps), human durations like
`30m`, and arithmetic on stamps. Nothing here reads the clock (see `broker.clock`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from broker.errors import BadRequest

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
MAX_DURATION_S = 100 * 365 * 86400
"""The longest duration accepted anywhere (100 years): longer ones are typos, and would
overflow the date arithmetic of leases, snoozes and silences."""


def to_rfc3339(moment: datetime) -> str:
    """UTC, microseconds, `Z` suffix: sorts as text in time order."""
    # isoformat, not strftime: `%Y` drops the leading zeros of years before 1000.
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def later(stamp: str, seconds: float) -> str:
    """The stamp `seconds` after `stamp`."""
    return to_rfc3339(parse_rfc3339(stamp) + timedelta(seconds=seconds))


def seconds_between(start: str, end: str) -> float:
    """Seconds from stamp `start` to stamp `end` (negative when `end` is earlier)."""
    return (parse_rfc3339(end) - parse_rfc3339(start)).total_seconds()


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any offset, `Z` allowed); ValueError when it is not."""
    value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    try:
        value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise ValueError(f"timestamp out of range: {text!r}") from None
    return value


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds in `90`, `1.5s`, `30m`, `2h`, `7d`; BadRequest naming `what` otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise BadRequest(f"{what} must not be negative")
        seconds = float(min(text, MAX_DURATION_S + 1))  # a huge int does not fit a float
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise BadRequest(f"{what}: {text!r} is not a duration like 90s, 30m, 2h or 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= MAX_DURATION_S:  # also catches inf from a 400-digit number
        raise BadRequest(f"{what}: {str(text)[:40]!r} is too long (at most 100 years)")
    return seconds


def parse_since(text: str, what: str, now: datetime) -> str:
    """An RFC 3339 time or a duration back from `now` (`24h`), as a stamp."""
    try:
        return to_rfc3339(parse_rfc3339(text))
    except ValueError:
        pass
    seconds = parse_duration(text, what)
    return to_rfc3339(now - timedelta(seconds=seconds))
