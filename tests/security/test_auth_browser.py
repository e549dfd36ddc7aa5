"""The remote-code-execution path a web page had: a cross-site `text/plain` write making
a shell action and a catch-all route. Each way in is refused and nothing is created."""

from __future__ import annotations

import orjson

from tests.broker_process import AUTH, BrokerProcess
from tests.security.support import call

SHELL_ACTION = {"name": "pwn", "kind": "shell", "command": ["id"]}
CATCH_ALL = {"name": "pwn", "filter": {"sql": "TRUE"}, "targets": ["action:pwn"]}


async def nothing_created(http, broker: BrokerProcess) -> None:
    for kind in ("actions", "routes"):
        async with http.get(broker.url + f"/v1/{kind}/pwn", headers=AUTH) as resp:
            assert resp.status == 404, kind


async def test_a_text_plain_write_is_refused_even_with_a_token(secured, http):
    for kind, spec in (("actions", SHELL_ACTION), ("routes", CATCH_ALL)):
        async with http.post(secured.url + f"/v1/{kind}", data=orjson.dumps(spec),
                             headers={"Content-Type": "text/plain"}) as resp:
            problem = await resp.json()
            assert resp.status == 415, problem
            assert "application/json" in problem["detail"]
    await nothing_created(http, secured)


async def test_a_foreign_origin_is_refused_even_with_json_and_a_token(secured, http):
    for origin in ("https://evil.example", "null", f"http://evil.example:{secured.port}"):
        async with http.post(secured.url + "/v1/routes", json=CATCH_ALL,
                             headers={"Origin": origin}) as resp:
            problem = await resp.json()
            assert resp.status == 403, problem
            assert origin in problem["detail"]
        async with http.get(secured.url + "/v1/events", headers={"Origin": origin}) as resp:
            assert resp.status == 403
    await nothing_created(http, secured)


async def test_the_broker_own_origin_is_accepted_and_no_cors_is_granted(secured, http):
    async with http.get(secured.url + "/v1/events",
                        headers={"Origin": f"http://127.0.0.1:{secured.port}"}) as resp:
        assert resp.status == 200
        assert not any(h.lower().startswith("access-control-") for h in resp.headers)
    async with http.options(secured.url + "/v1/routes", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status >= 400
        assert not any(h.lower().startswith("access-control-") for h in resp.headers)


async def test_no_token_is_refused_before_anything_is_written(secured, bare, http):
    for kind, spec in (("actions", SHELL_ACTION), ("routes", CATCH_ALL)):
        status, problem, _ = await call(bare, "POST", secured.url + f"/v1/{kind}", None,
                                        json=spec)
        assert status == 401, problem
    await nothing_created(http, secured)


async def test_a_shell_action_cannot_be_defined_over_the_api(secured, http):
    for method, path in (("POST", "/v1/actions"), ("PUT", "/v1/actions/pwn")):
        async with http.request(method, secured.url + path, json=SHELL_ACTION) as resp:
            problem = await resp.json()
            assert resp.status == 403, problem
            assert "config file" in problem["detail"]
    await nothing_created(http, secured)
