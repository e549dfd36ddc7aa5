"""A drop folder: CloudEvents files put into a directory are published, then moved aside.

    [plugins.folder]
    path = "/var/spool/opsbus"    # created if missing

A `.json` file holds one structured event or a JSON array of them; a `.ndjson` file one
event per line. A file whose events are all published moves to `done/`; a file that
cannot be read or holds an invalid event moves to `failed/`, next to a `<name>.error`
file saying what was wrong (nothing of a failed file is published). Files already there
at start are picked up. Write files elsewhere and rename them in (or give them another
extension until complete): a half-written file would be read as invalid.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from broker.plugin_host.api import Event, Registry, ServiceContext

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1

SUFFIXES = (".json", ".ndjson")


def register(registry: Registry) -> None:
    path = registry.config.get("path")
    if not path:
        return  # nothing to watch until a folder is configured

    async def run(ctx: ServiceContext) -> None:
        await watch(Path(str(path)).expanduser(), ctx)

    registry.service("folder", run)


async def watch(folder: Path, ctx: ServiceContext) -> None:
    import watchfiles

    for sub in (folder, folder / "done", folder / "failed"):
        sub.mkdir(parents=True, exist_ok=True)
    ctx.log.info("watching %s for event files", folder)
    await sweep(folder, ctx)
    async for _ in watchfiles.awatch(folder, recursive=False, debounce=200, step=50):
        await sweep(folder, ctx)


async def sweep(folder: Path, ctx: ServiceContext) -> None:
    """Publish every complete event file in the folder (in name order)."""
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith("."):
            await process(path, ctx)


def read_events(path: Path) -> list[Event]:
    """The events in a file; ValueError saying where it is wrong."""
    text = path.read_bytes()
    if path.suffix == ".ndjson":
        events: list[Any] = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    events.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: not valid JSON: {exc}") from None
    else:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        events = doc if isinstance(doc, list) else [doc]
    if not events:
        raise ValueError("the file holds no events")
    return events


async def process(path: Path, ctx: ServiceContext) -> None:
    try:
        events = read_events(path)
        answers = await ctx.publish(events)
    except ValueError as exc:
        move(path, path.parent / "failed", error=str(exc))
        ctx.log.warning("event file %s failed: %s", path.name, exc)
        return
    except OSError as exc:  # vanished or unreadable: the next sweep tries again
        ctx.log.warning("event file %s not read: %s", path.name, exc)
        return
    # Any other error (the broker stopping) leaves the file for the next start.
    move(path, path.parent / "done")
    ctx.log.info("event file %s: %d events published", path.name, len(answers))


def move(path: Path, into: Path, error: str | None = None) -> None:
    """Move `path` into `into` without overwriting an earlier file of the same name."""
    target = into / path.name
    if target.exists():
        target = into / f"{path.stem}.{time.time_ns()}{path.suffix}"
    path.replace(target)
    if error is not None:
        target.with_name(target.name + ".error").write_text(error + "\n")
