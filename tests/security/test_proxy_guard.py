"""Proxy mounts go through the outbound guard: SSRF targets refused when a mount is
created and when a call connects, and paths cannot leave a mount's upstream base."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.broker_process import ADMIN_TOKEN, BrokerProcess
from tests.upstream import Upstream

METADATA_FORMS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://0xa9fea9fe/",
    "http://2852039166/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./",
    "http://100.100.100.200/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/",
    "http://169.254.1.1/",
    "http://[fe80::1]/",
]
"""Never a proxy target, whatever allow_private_targets says."""

LOOPBACK_FORMS = [
    "http://127.0.0.1:8787/v1/routes",
    "http://127.1/",
    "http://127.0.0.2/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://2130706433/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
]
"""Loopback, unspecified and private spellings: refused unless allow_private_targets."""

ESCAPES = [
    "/proxy/up/../../v1/routes",
    "/proxy/up/..",
    "/proxy/up/orders/../../../status/200",
    "/proxy/up/%2e%2e/%2e%2e/v1/routes",
    "/proxy/up/%2E%2E/status/200",
    "/proxy/up/.%2e/status/200",
    "/proxy/up/orders/..%2f..%2f..%2fstatus%2f200",
    "/proxy/up/%252e%252e/%252e%252e/status/200",
    "/proxy/up/./orders/17",
    "/proxy/up//status/200",
    "/proxy/up/orders//17",
    "/proxy/up/orders\\..\\..\\..\\status\\200",
    "/proxy/up/orders%5c..%5c..%5cstatus",
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker with the guard in its default mode."""
    proc = BrokerProcess(tmp_path_factory.mktemp("guarded") / "data",
                         args=["--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def permissive(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
               ) -> Iterator[BrokerProcess]:
    """A broker allowed to reach loopback (the local upstream), with a mount `up` whose
    base path is /api/v1 on it."""
    root = tmp_path_factory.mktemp("permissive")
    config = root / "opsbus.toml"
    config.write_text(f'[[proxy]]\nname = "up"\nupstream = "{upstream.url}/api/v1"\n')
    proc = BrokerProcess(root / "data", config=config,
                         args=["--durability", "off", "--allow-private-targets"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def create_mount(http: aiohttp.ClientSession, broker: BrokerProcess, name: str,
                       upstream: str) -> tuple[int, dict]:
    async with http.put(f"{broker.url}/v1/proxy/{name}",
                        json={"name": name, "upstream": upstream}) as resp:
        return resp.status, await resp.json()


async def raw_get(broker: BrokerProcess, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written: HTTP clients normalise dot segments before sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", METADATA_FORMS + LOOPBACK_FORMS)
async def test_each_ssrf_form_is_refused_when_a_mount_is_created(guarded, http, target):
    status, problem = await create_mount(http, guarded, "ssrf", target)
    assert status == 400, (target, problem)
    assert problem["field"] == "upstream" and "refused" in problem["detail"], problem


@pytest.mark.parametrize("target", METADATA_FORMS)
async def test_metadata_is_refused_even_when_private_targets_are_allowed(permissive, http,
                                                                         target):
    status, problem = await create_mount(http, permissive, "ssrf", target)
    assert status == 400, (target, problem)
    assert problem["field"] == "upstream"


async def test_allow_private_targets_permits_loopback_mounts(permissive, http):
    for index, target in enumerate(LOOPBACK_FORMS):
        status, problem = await create_mount(http, permissive, f"local{index}", target)
        assert status in (200, 201), (target, problem)


async def test_a_name_resolving_to_loopback_is_refused_when_the_call_connects(
        guarded, upstream, http):
    port = urlsplit(upstream.url).port
    status, problem = await create_mount(http, guarded, "named", f"http://localhost:{port}/api/v1")
    assert status in (200, 201), problem  # a name is not resolved when the mount is made
    before = len(upstream.seen)
    async with http.get(guarded.url + "/proxy/named/orders/17") as resp:
        assert resp.status == 502
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
    assert problem["refused"] is True and "loopback" in problem["detail"], problem
    assert len(upstream.seen) == before


@pytest.mark.parametrize("path", ESCAPES)
async def test_paths_cannot_leave_the_mount_base(permissive, upstream, path):
    before = len(upstream.seen)
    status, body = await raw_get(permissive, path)
    assert status == 400, (path, body)
    assert b"proxy up" in body
    assert len(upstream.seen) == before, upstream.seen[before:]


async def test_a_legitimate_mount_still_forwards(permissive, upstream, http):
    async with http.get(permissive.url + "/proxy/up/orders/17?expand=lines") as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"id": "17", "query": {"expand": "lines"}}
    assert upstream.seen[-1]["path"] == "/api/v1/orders/17?expand=lines"
    status, _ = await raw_get(permissive, "/proxy/up/orders/v1..2")
    assert status == 200  # dots inside a segment are ordinary
    assert upstream.seen[-1]["path"] == "/api/v1/orders/v1..2"

