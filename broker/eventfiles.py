"""Reading CloudEvents from files and folders (JSON, NDJSON, batch arrays), with positions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from broker.errors import BadRequest, OpsbusError
from broker.events import validate_event

EVENT_SUFFIXES = (".json", ".ndjson", ".jsonl")
"""Files a folder walk reads; anything else in a folder (opsbus.toml, README.md) is skipped."""
LINE_SUFFIXES = (".ndjson", ".jsonl")


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One event read from a file, or the reason the entry at `where` is not one."""

    path: str
    where: str
    """`line 12` (NDJSON) or `item 3` (a JSON array) or `` (a single-event file)."""
    event: dict[str, Any] | None
    error: str | None = None

    @property
    def location(self) -> str:
        """`path:line 12`, for messages."""
        return f"{self.path}:{self.where}" if self.where else self.path


def event_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus event files under folders, recursively in name order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*")
                                if p.is_file() and p.suffix.lower() in EVENT_SUFFIXES
                                and not any(part.startswith(".") for part in
                                            p.relative_to(path).parts)))
        elif path.exists():
            found.append(path)
        else:
            raise BadRequest(f"{path}: no such file or folder")
    return found


def read_events(paths: Iterable[str | Path], *, validate: bool = True) -> Iterator[FileEvent]:
    """Every entry of every file in order; bad entries come out with `error` set and the
    reading goes on, so one broken line never hides the rest of a folder."""
    for path in event_files(paths):
        yield from read_file(path, validate=validate)


def read_file(path: Path, *, validate: bool = True) -> Iterator[FileEvent]:
    """The entries of one file: an event, a JSON array of events, or one per line."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        yield FileEvent(name, "", None, f"cannot read: {exc.strerror}")
        return
    stripped = raw.lstrip()
    if not stripped:
        return
    if path.suffix.lower() not in LINE_SUFFIXES:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            # Several objects, one per line, in a file named .json: read it as NDJSON.
            if stripped.startswith(b"{") and raw.count(b"\n") > 1:
                yield from _lines(name, raw, validate)
            else:
                yield FileEvent(name, f"line {exc.lineno} column {exc.colno}", None,
                                f"not valid JSON: {exc.msg}")
            return
        if isinstance(doc, list):
            for index, item in enumerate(doc):
                yield _entry(name, f"item {index}", item, validate)
        elif isinstance(doc, dict) and isinstance(doc.get("events"), list):
            # The answer of GET /v1/events saved to a file.
            for index, item in enumerate(doc["events"]):
                yield _entry(name, f"events[{index}]", item, validate)
        else:
            yield _entry(name, "", doc, validate)
        return
    yield from _lines(name, raw, validate)


def _lines(name: str, raw: bytes, validate: bool) -> Iterator[FileEvent]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield FileEvent(name, f"line {number}", None,
                            f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        yield _entry(name, f"line {number}", item, validate)


def _entry(name: str, where: str, item: Any, validate: bool) -> FileEvent:
    # `opsbus tail --json` lines and GET /v1/events entries wrap the event with its seq.
    if isinstance(item, dict) and isinstance(item.get("event"), dict) and "seq" in item:
        item = item["event"]
    if not isinstance(item, dict):
        return FileEvent(name, where, None, "not an event: expected a JSON object")
    if not validate:
        return FileEvent(name, where, item)
    try:
        return FileEvent(name, where, validate_event(item))
    except OpsbusError as exc:
        return FileEvent(name, where, None, exc.detail)
