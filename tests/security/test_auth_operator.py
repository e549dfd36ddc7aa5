"""The operator of a todo change is the token's name, never a field a caller makes up:
bob cannot act as alice, nor release her claim without the force scope."""

from __future__ import annotations

import uuid

from tests.security.support import call, make_token
from tests.todos_support import item_of, publish, work_event


async def two_operators(http, broker) -> tuple[str, str, str, str]:
    """alice-… and bob-… with read and operate; (alice, her secret, bob, his secret)."""
    tag = uuid.uuid4().hex[:6]
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    return (alice, await make_token(http, broker, alice, "read", "operate"),
            bob, await make_token(http, broker, bob, "read", "operate"))


async def test_changes_record_the_token_name(secured, http, bare):
    alice, alice_secret, _bob, _ = await two_operators(http, secured)
    item = await item_of(http, secured.url, await publish(http, secured.url,
                                                          work_event(f"k-{alice}")))
    url = f"{secured.url}/v1/todos/{item}"
    status, changed, _ = await call(bare, "POST", url + "/claim", alice_secret, json={})
    assert status == 200 and changed["item"]["owner"] == alice
    status, changed, _ = await call(bare, "POST", url + "/resolve", alice_secret,
                                    json={"operator": alice, "note": "fixed"})
    assert status == 200 and changed["item"]["state"] == "resolved"
    status, detail, _ = await call(bare, "GET", url, alice_secret)
    assert {h["operator"] for h in detail["history"] if h["action"] != "opened"} == {alice}
    audit = await call(bare, "GET", f"{secured.url}/v1/events?source=opsbus/todos&limit=1000",
                       alice_secret)
    mine = [e for e in audit[1]["events"] if e["event"]["data"].get("item", {}).get("id")
            == item or e["event"].get("subject") == str(item)]
    assert mine and all(alice in str(e["event"]["data"]) for e in mine)


async def test_bob_cannot_act_as_alice(secured, http, bare):
    alice, _, bob, bob_secret = await two_operators(http, secured)
    item = await item_of(http, secured.url, await publish(http, secured.url,
                                                          work_event(f"k-{bob}")))
    for op, body in (("claim", {}), ("resolve", {"note": "x"}), ("comment", {"note": "x"})):
        status, problem, _ = await call(bare, "POST", f"{secured.url}/v1/todos/{item}/{op}",
                                        bob_secret, json={"operator": alice, **body})
        assert status == 403, problem
        assert problem["field"] == "operator" and bob in problem["detail"]
    status, problem, _ = await call(bare, "POST", f"{secured.url}/v1/silences", bob_secret,
                                    json={"operator": "system", "matcher": {"key": "x"},
                                          "duration": "1h"})
    assert status == 403, problem
    status, detail, _ = await call(bare, "GET", f"{secured.url}/v1/todos/{item}", bob_secret)
    assert detail["state"] == "open" and len(detail["history"]) == 1


async def test_releasing_another_claim_needs_the_force_scope(secured, http, bare):
    alice, alice_secret, bob, bob_secret = await two_operators(http, secured)
    item = await item_of(http, secured.url, await publish(http, secured.url,
                                                          work_event(f"k-f-{bob}")))
    url = f"{secured.url}/v1/todos/{item}"
    assert (await call(bare, "POST", url + "/claim", alice_secret, json={}))[0] == 200
    status, problem, _ = await call(bare, "POST", url + "/release", bob_secret,
                                    json={"force": True})
    assert status == 403 and problem["scope"] == "force", problem
    assert "'force' scope" in problem["detail"]
    status, problem, _ = await call(bare, "POST", url + "/release", bob_secret, json={})
    assert status == 409, problem  # not his claim
    status, detail, _ = await call(bare, "GET", url, bob_secret)
    assert detail["owner"] == alice
    forcer = f"lead-{bob}"
    forcer_secret = await make_token(http, secured, forcer, "read", "operate", "force")
    status, changed, _ = await call(bare, "POST", url + "/release", forcer_secret,
                                    json={"force": True, "note": "on leave"})
    assert status == 200 and changed["item"]["state"] == "open"
    status, detail, _ = await call(bare, "GET", url, bob_secret)
    released = detail["history"][-1]
    assert released["operator"] == forcer
    assert released["detail"] == {"forced": True, "previous_owner": alice}


async def test_silences_are_created_and_ended_as_the_token(secured, http, bare):
    alice, alice_secret, _bob, bob_secret = await two_operators(http, secured)
    status, silence, _ = await call(bare, "POST", f"{secured.url}/v1/silences", alice_secret,
                                    json={"matcher": {"key": f"s-{alice}"}, "duration": "1h",
                                          "comment": "maintenance"})
    assert status == 201, silence
    assert alice in str(silence)
    status, problem, _ = await call(bare, "DELETE",
                                    f"{secured.url}/v1/silences/{silence['id']}?operator={alice}",
                                    bob_secret)
    assert status == 403, problem
    status, ended, _ = await call(bare, "DELETE", f"{secured.url}/v1/silences/{silence['id']}",
                                  bob_secret)
    assert status == 200 and ended["active"] is False
