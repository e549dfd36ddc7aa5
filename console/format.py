"""Pure formatting helpers for the console: ages, times, emit command lines."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

import orjson


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def age(seconds: float | None) -> str:
    """k9s-style age: `42s`, `5m`, `3h12m`, `2d4h`."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h}h" if h else f"{d}d"


def age_since(text: str | None, now: datetime) -> str:
    """Age of an RFC 3339 timestamp at `now`."""
    moment = parse_time(text)
    return age((now - moment).total_seconds()) if moment else "-"


def short_time(text: str | None) -> str:
    """`2026-11-25T14:06:12Z` as `11-25 14:06:12` (the table's time column)."""
    moment = parse_time(text)
    return moment.astimezone(UTC).strftime("%m-%d %H:%M:%S") if moment else ""


def pretty_json(value: Any) -> str:
    """Indented, key-order-preserving JSON."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


EMIT_FLAGS = ("id", "type", "source", "subject", "time")


def emit_command(event: dict[str, Any]) -> str:
    """The `opsbus emit` command line that publishes this event again."""
    parts = ["opsbus", "emit"]
    for name in EMIT_FLAGS:
        if event.get(name) is not None:
            parts += [f"--{name}", str(event[name])]
    if "data" in event:
        data = event["data"]
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        parts += ["--data", text]
        if event.get("datacontenttype") and event["datacontenttype"] != "application/json":
            parts += ["--content-type", str(event["datacontenttype"])]
    skip = {*EMIT_FLAGS, "specversion", "data", "data_base64", "datacontenttype"}
    for name, value in event.items():
        if name not in skip:
            parts += ["--ext", f"{name}={value}"]
    return shlex.join(parts)


def until_text(text: str | None, now: datetime) -> str | None:
    """A moment ahead as people read it: `14:36:05 (in 59m)`; None when absent."""
    moment = parse_time(text)
    if moment is None:
        return None
    seconds = (moment - now).total_seconds()
    when = moment.astimezone(UTC).strftime("%H:%M:%S")
    if moment.date() != now.astimezone(UTC).date():
        when = moment.astimezone(UTC).strftime("%m-%d %H:%M")
    return f"{when} (in {age(seconds)})" if seconds >= 0 else f"{when} ({age(-seconds)} ago)"
