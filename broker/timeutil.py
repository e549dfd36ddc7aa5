"""Time helpers: RFC 3339 timestamps and human durations like `30m`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from broker.errors import BadRequest

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def now() -> datetime:
    return datetime.now(UTC)


def to_rfc3339(moment: datetime) -> str:
    """UTC, microseconds, `Z` suffix: sorts as text in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return to_rfc3339(now())


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any offset, `Z` allowed); ValueError when it is not."""
    value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return value


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds in `90`, `1.5s`, `30m`, `2h`, `7d`; BadRequest naming `what` otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise BadRequest(f"{what} must not be negative")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise BadRequest(f"{what}: {text!r} is not a duration like 90s, 30m, 2h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_since(text: str, what: str = "since") -> str:
    """An RFC 3339 time or a duration back from now (`24h`), as an RFC 3339 string."""
    try:
        return to_rfc3339(parse_rfc3339(text))
    except ValueError:
        pass
    seconds = parse_duration(text, what)
    return to_rfc3339(now() - timedelta(seconds=seconds))
