"""The folder source: event files dropped in a directory are published and moved aside."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import make_event
from tests.plugin_helpers import events_of, eventually


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Path]]:
    root = tmp_path_factory.mktemp("folder")
    drop = root / "drop"
    drop.mkdir()
    # Dropped before the broker starts: picked up at start.
    (drop / "early.json").write_bytes(orjson.dumps(make_event(id="early-1", source="tests/drop")))
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent(f"""
        [plugins.folder]
        path = "{drop}"
    """))
    proc = BrokerProcess(root / "data", config=config, args=["--durability", "off"]).start()
    try:
        yield proc, drop
    finally:
        proc.stop()


def drop_file(folder: Path, name: str, content: bytes) -> None:
    """Write beside, then rename in: how producers should drop files."""
    staging = folder.parent / f".{name}.part"
    staging.write_bytes(content)
    staging.replace(folder / name)


async def test_file_present_at_start_is_published(setup, http):
    broker, drop = setup

    async def done() -> bool:
        return (drop / "done" / "early.json").exists()

    assert await eventually(done)
    assert [e["id"] for e in await events_of(http, broker, source="tests/drop")] == ["early-1"]


async def test_ndjson_drop_is_published_and_moved_to_done(setup, http):
    broker, drop = setup
    events = [make_event(id=f"nd-{i}", source="tests/drop-nd") for i in range(3)]
    drop_file(drop, "batch.ndjson", b"\n".join(orjson.dumps(e) for e in events) + b"\n")

    async def done() -> bool:
        return (drop / "done" / "batch.ndjson").exists()

    assert await eventually(done)
    stored = await events_of(http, broker, source="tests/drop-nd")
    assert [e["id"] for e in stored] == ["nd-0", "nd-1", "nd-2"]
    assert not (drop / "batch.ndjson").exists()


async def test_bad_files_move_to_failed_with_an_error_file(setup, http):
    broker, drop = setup
    invalid = make_event(id="bad-1", source="tests/drop-bad")
    del invalid["type"]
    drop_file(drop, "invalid.json", orjson.dumps([make_event(source="tests/drop-bad"), invalid]))
    drop_file(drop, "broken.ndjson", b'{"specversion": "1.0"}\n{not json\n')

    async def failed() -> bool:
        return all((drop / "failed" / f"{n}.error").exists()
                   for n in ("invalid.json", "broken.ndjson"))

    assert await eventually(failed)
    assert (drop / "failed" / "invalid.json").exists()
    error = (drop / "failed" / "invalid.json.error").read_text()
    assert "index 1" in error and "type" in error
    assert "line 2" in (drop / "failed" / "broken.ndjson.error").read_text()
    assert not await events_of(http, broker, source="tests/drop-bad")  # all or nothing
