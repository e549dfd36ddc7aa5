"""Fixtures of the security suite: one authenticated broker with a work queue, and an
HTTP session that carries no token of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.broker_process import BrokerProcess
from tests.todos_support import write_config


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker as shipped (authentication on) with the todo tests' queues."""
    folder = tmp_path_factory.mktemp("secured")
    proc = BrokerProcess(folder / "data", config=write_config(folder),
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def bare() -> AsyncIterator[aiohttp.ClientSession]:
    """A session without the suite's admin token: each call says which token it uses."""
    async with aiohttp.ClientSession() as session:
        yield session
