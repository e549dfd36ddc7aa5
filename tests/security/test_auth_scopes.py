"""Tokens and scopes: 401 without a valid token, 403 naming the missing scope, one
representative route per scope, source patterns of publish, revocation."""

from __future__ import annotations

import uuid

import orjson

from tests.conftest import STRUCTURED, make_event
from tests.security.support import call, make_token
from tests.todos_support import item_of, publish, work_event


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_no_token_or_an_unknown_one_is_401_with_a_bearer_challenge(secured, bare):
    for secret in (None, "opsbus_not-a-token"):
        status, problem, resp = await call(bare, "GET", secured.url + "/v1/events", secret)
        assert status == 401, problem
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.content_type == "application/problem+json"
    async with bare.get(secured.url + "/v1/events", headers={"Authorization": "Basic eDp5"}
                        ) as resp:
        assert resp.status == 401


async def test_health_readiness_and_metrics_stay_open(secured, bare):
    for path in ("/healthz", "/readyz", "/metrics"):
        async with bare.get(secured.url + path) as resp:
            assert resp.status == 200, path


async def test_the_bearer_scheme_is_matched_in_any_case(secured, http, bare):
    secret = await make_token(http, secured, unique("reader"), "read")
    for scheme in ("bearer", "BEARER", "Bearer"):
        async with bare.get(secured.url + "/v1/events",
                            headers={"Authorization": f"{scheme} {secret}"}) as resp:
            assert resp.status == 200, scheme


async def test_each_scope_opens_its_routes_and_403_names_the_missing_one(secured, http, bare):
    item = await item_of(http, secured.url, await publish(http, secured.url,
                                                          work_event(unique("db"))))
    name = unique("bob")
    reader = await make_token(http, secured, name, "read")
    event = orjson.dumps(make_event())
    # (method, path, body, content headers, the scope it needs)
    representatives = [
        ("GET", "/v1/events", None, {}, "read"),
        ("POST", "/v1/events", event, STRUCTURED, "publish"),
        ("POST", f"/v1/todos/{item}/comment", orjson.dumps({"note": "hi"}),
         {"Content-Type": "application/json"}, "operate"),
        ("POST", "/v1/routes", orjson.dumps({"name": "r", "filter": {"exact": {"type": "x"}},
                                             "targets": ["queue:work"]}),
         {"Content-Type": "application/json"}, "admin"),
        ("GET", "/v1/tokens", None, {}, "admin"),
        ("POST", "/v1/admin/store/check", None, {}, "admin"),
    ]
    for method, path, body, headers, scope in representatives:
        status, problem, _ = await call(bare, method, secured.url + path, reader, data=body,
                                        headers=headers)
        if scope == "read":
            assert status == 200, (path, problem)
            continue
        assert status == 403, (path, problem)
        assert problem["detail"] == (f"this needs the {scope!r} scope; token {name!r} has"
                                     " read"), problem
        assert problem["scope"] == scope
    publisher = await make_token(http, secured, unique("ci"), "publish")
    status, problem, _ = await call(bare, "GET", secured.url + "/v1/events", publisher)
    assert status == 403 and problem["scope"] == "read"
    status, _, _ = await call(bare, "POST", secured.url + "/v1/events", publisher,
                              data=orjson.dumps(make_event()), headers=STRUCTURED)
    assert status == 201
    operator = await make_token(http, secured, unique("op"), "operate")
    status, problem, _ = await call(bare, "POST", secured.url + f"/v1/todos/{item}/comment",
                                    operator, json={"note": "looking"})
    assert status == 200, problem


async def test_publish_is_held_to_the_token_source_patterns(secured, http, bare):
    secret = await make_token(http, secured, unique("ci"), "publish", sources=["ci/*"])
    status, _, _ = await call(bare, "POST", secured.url + "/v1/events", secret,
                              data=orjson.dumps(make_event(source="ci/build")),
                              headers=STRUCTURED)
    assert status == 201
    status, problem, _ = await call(bare, "POST", secured.url + "/v1/events", secret,
                                    data=orjson.dumps(make_event(source="monitoring/x")),
                                    headers=STRUCTURED)
    assert status == 403 and "monitoring/x" in problem["detail"], problem
    batch = [make_event(source="ci/a"), make_event(source="prod/b")]
    status, problem, _ = await call(
        bare, "POST", secured.url + "/v1/events", secret, data=orjson.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"})
    assert status == 403 and "prod/b" in problem["detail"], problem
    status, page, _ = await call(bare, "GET", secured.url + "/v1/events?source=prod/b",
                                 None, headers={"Authorization": http.headers["Authorization"]})
    assert page["events"] == []  # the whole batch was refused, not half of it
    status, problem, _ = await call(
        bare, "POST", secured.url + "/v1/events", secret, data=b"x",
        headers={"Content-Type": "text/plain", "ce-specversion": "1.0", "ce-id": "b1",
                 "ce-source": "elsewhere/y", "ce-type": "t"})
    assert status == 403 and "elsewhere/y" in problem["detail"], problem


async def test_a_revoked_token_is_refused_from_the_next_request_on(secured, http, bare):
    name = unique("temp")
    secret = await make_token(http, secured, name, "read")
    assert (await call(bare, "GET", secured.url + "/v1/events", secret))[0] == 200
    async with http.delete(secured.url + f"/v1/tokens/{name}") as resp:
        assert resp.status == 204
    status, problem, _ = await call(bare, "GET", secured.url + "/v1/events", secret)
    assert status == 401, problem
    async with http.delete(secured.url + f"/v1/tokens/{name}") as resp:
        assert resp.status == 404


async def test_tokens_are_listed_without_secrets_and_names_are_checked(secured, http):
    name = unique("lister")
    secret = await make_token(http, secured, name, "read", "publish", sources=["ci/*"])
    async with http.get(secured.url + "/v1/tokens") as resp:
        listed = await resp.json()
    mine = next(t for t in listed["tokens"] if t["name"] == name)
    assert mine["scopes"] == ["publish", "read"] and mine["sources"] == ["ci/*"]
    assert mine["created_by"] == "admin"
    assert secret not in orjson.dumps(listed).decode()
    for body, field in (({"name": name, "scopes": ["read"]}, None),
                        ({"name": "admin", "scopes": ["read"]}, "name"),
                        ({"name": "x y", "scopes": ["read"]}, "name"),
                        ({"name": unique("n"), "scopes": ["root"]}, "scopes"),
                        ({"name": unique("n"), "scopes": []}, "scopes"),
                        ({"name": unique("n"), "scopes": ["read"], "sources": ["a/*"]},
                         "sources")):
        async with http.post(secured.url + "/v1/tokens", json=body) as resp:
            problem = await resp.json()
            assert resp.status == (409 if field is None else 400), problem
            assert field is None or problem["field"] == field


async def test_whoami_names_the_token(secured, http, bare):
    name = unique("who")
    secret = await make_token(http, secured, name, "read", "operate")
    status, me, _ = await call(bare, "GET", secured.url + "/v1/whoami", secret)
    assert status == 200 and me == {"name": name, "scopes": ["operate", "read"],
                                    "sources": [], "auth": True}


def test_every_operation_names_a_known_scope_and_writes_default_to_admin():
    from broker.auth.principal import SCOPES
    from broker.http.openapi_ops import OPERATIONS

    for (method, path), op in OPERATIONS.items():
        needed = op.needs(method)
        if op.auth != "bearer":
            assert needed is None, path
            continue
        assert needed in (*SCOPES, "any"), (method, path)
        if method != "GET" and op.scope is None:
            assert needed == "admin", (method, path)
    assert OPERATIONS[("POST", "/v1/{kind}")].needs("POST") == "admin"
    assert OPERATIONS[("POST", "/v1/tokens")].needs("POST") == "admin"
    assert OPERATIONS[("POST", "/v1/admin/backup")].needs("POST") == "admin"
    assert OPERATIONS[("POST", "/v1/events")].needs("POST") == "publish"
    assert OPERATIONS[("POST", "/v1/todos/{id}/{op}")].needs("POST") == "operate"
    assert {OPERATIONS[(m, p)].needs(m) for m, p in
            (("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"))} == {None}
