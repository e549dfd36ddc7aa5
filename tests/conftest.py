"""Shared fixtures: a real broker process, an HTTP session, event builders."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.broker_process import ADMIN_TOKEN, AUTH, BrokerProcess

# The CLI runs of the suite (subprocesses inheriting this environment) use the test
# brokers' admin token, as a user with OPSBUS_TOKEN set would.
os.environ.setdefault("OPSBUS_TOKEN", ADMIN_TOKEN)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker on a free port with its own data directory (durability as shipped)."""
    proc = BrokerProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     headers=AUTH) as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    """A local HTTP receiver (webhook or API endpoint) recording what it gets."""
    from tests.delivery_support import Receiver  # it builds on this module's helpers

    rec = await Receiver().start()
    try:
        yield rec
    finally:
        await rec.stop()


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid structured event; keyword arguments override or add attributes."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "tests/suite",
        "type": "test.event",
        "time": "2026-11-25T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"n": 1},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not ...}


STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
