"""Sources and proxy mounts authenticate apart from the API token: a source by its own
signature, its shared secret or an explicit `public = true`; a proxy mount by the API
token unless it says `public = true`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.security.support import call, make_token

SECRET = "am-shared-secret"
CONFIG = """
[plugins.alertmanager]
token_env = "AM_SECRET"

[plugins.webhook]
public = true

[plugins.webhook.mappings.ticket]
type = "ticket.created"
source = "helpdesk"
id = "{data.id}"

[[proxy]]
name = "closed"
upstream = "http://127.0.0.1:9"

[[proxy]]
name = "open"
upstream = "http://127.0.0.1:9"
public = true
"""
ALERTS = orjson.dumps({"version": "4", "status": "firing", "receiver": "opsbus",
                       "externalURL": "http://am.example", "groupKey": "g",
                       "alerts": [{"status": "firing", "labels": {"alertname": "Disk"},
                                   "annotations": {}, "startsAt": "2026-11-25T10:00:00Z",
                                   "fingerprint": "f1"}]})


@pytest.fixture(scope="module")
def sourced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder: Path = tmp_path_factory.mktemp("sources")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml",
                         env={"AM_SECRET": SECRET},
                         args=["--durability", "off", "--allow-private-targets"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_a_source_without_a_check_is_refused_until_made_public(sourced, bare):
    # grafana has no signature configured, no secret, and is not public.
    status, problem, _ = await call(bare, "POST", sourced.url + "/v1/sources/grafana", None,
                                    data=b'{"alerts": []}',
                                    headers={"Content-Type": "application/json"})
    assert status == 401, problem
    assert "public = true" in problem["detail"] and "[plugins.grafana]" in problem["detail"]
    status, answer, _ = await call(bare, "POST", sourced.url + "/v1/sources/webhook/ticket",
                                   None, json={"id": "T-1"})
    assert status == 200 and answer["events"][0]["id"] == "T-1", answer


async def test_a_source_secret_is_its_own_authentication(sourced, bare):
    url = sourced.url + "/v1/sources/alertmanager"
    json_type = {"Content-Type": "application/json"}
    for secret in (None, "wrong", "opsbus_not-a-token"):
        status, problem, _ = await call(bare, "POST", url, secret, data=ALERTS,
                                        headers=json_type)
        assert status == 401, (secret, problem)
    status, answer, _ = await call(bare, "POST", url, SECRET, data=ALERTS, headers=json_type)
    assert status == 200 and len(answer["events"]) == 1, answer
    status, answer, _ = await call(bare, "POST", url + f"?token={SECRET}", None, data=ALERTS,
                                   headers=json_type)
    assert status == 200, answer
    basic = base64.b64encode(f"alertmanager:{SECRET}".encode()).decode()
    for header in ({"Authorization": f"Basic {basic}"}, {"X-Opsbus-Source-Token": SECRET}):
        async with bare.post(url, data=ALERTS, headers={**json_type, **header}) as resp:
            assert resp.status == 200, (header, await resp.text())


async def test_an_api_token_with_publish_may_post_to_a_source(sourced, http, bare):
    reader = await make_token(http, sourced, "src-reader", "read")
    publisher = await make_token(http, sourced, "src-publisher", "publish")
    url = sourced.url + "/v1/sources/grafana"
    body = orjson.dumps({"alerts": [], "status": "firing"})
    json_type = {"Content-Type": "application/json"}
    assert (await call(bare, "POST", url, reader, data=body, headers=json_type))[0] == 401
    status, answer, _ = await call(bare, "POST", url, publisher, data=body, headers=json_type)
    assert status != 401, answer


async def test_proxy_mounts_need_read_unless_public(sourced, http, bare):
    status, problem, _ = await call(bare, "GET", sourced.url + "/proxy/closed/x", None)
    assert status == 401, problem
    publisher = await make_token(http, sourced, "proxy-publisher", "publish")
    status, problem, _ = await call(bare, "GET", sourced.url + "/proxy/closed/x", publisher)
    assert status == 403 and problem["scope"] == "read", problem
    reader = await make_token(http, sourced, "proxy-reader", "read")
    status, _, _ = await call(bare, "GET", sourced.url + "/proxy/closed/x", reader)
    assert status not in (401, 403)  # forwarded (the upstream is down: 502)
    status, _, _ = await call(bare, "GET", sourced.url + "/proxy/open/x", None)
    assert status not in (401, 403)
