"""Push subscriptions against real local receivers: signing, retries, dead letters,
ordering, circuit breaker, pause/resume, isolation of a slow receiver, replay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from broker.timeutil import seconds_between
from tests.broker_process import AUTH, BrokerProcess
from tests.delivery_support import (
    Receiver,
    call,
    events_of_type,
    eventually,
    publish,
    put_object,
)

SECRET_KEY = b"opsbus-test-signing-key-32-bytes!"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
FAST_RETRY = {"max_attempts": 5, "backoff": "50ms", "max_backoff": "200ms", "max_age": "1h"}

CONFIG = """
[[queues]]
name = "deadletter"
group_key = "{source}/{id}"
title = "{type} from {source}"
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module; every test uses its own subscription and event type."""
    folder = tmp_path_factory.mktemp("push")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml", args=[
        "--allow-private-targets", "--delivery-poll-s", "0.1", "--durability", "normal",
    ]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker on the manual clock: retries, backoffs and cool-downs wait for the test."""
    folder = tmp_path_factory.mktemp("push-clock")
    # No polling: the dispatcher wakes for commits and for what falls due, nothing else.
    proc = BrokerProcess(folder / "data", args=["--allow-private-targets",
                                                "--delivery-poll-s", "3600",
                                                "--durability", "normal"],
                         test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def subscribe(http, base: str, receiver: Receiver, **fields) -> tuple[str, str]:
    """A push subscription to `receiver` for its own event type: (name, type)."""
    name = fields.pop("name", unique("hook"))
    etype = f"test.{name}"
    spec = {"name": name, "type": "push", "url": receiver.url + "/hook",
            "filter": {"exact": {"type": etype}}, "retry": FAST_RETRY, **fields}
    await put_object(http, base, "subscriptions", spec)
    return name, etype


async def settled_counts(http, base: str, name: str) -> dict | None:
    """A subscription's delivery counts once nothing is pending or leased, else None."""
    counts = (await call(http, "GET", f"{base}/v1/subscriptions/{name}/status"))["counts"]
    return counts if counts["pending"] == counts["leased"] == 0 else None


def standard_webhooks_signature(key: bytes, headers: dict[str, str], body: bytes) -> str:
    """The Standard Webhooks algorithm, written independently of the broker's code."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


async def test_binary_delivery_is_signed_per_standard_webhooks(broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver, secret=SECRET,
                                  headers={"X-Team": "ops"})
    sent = await publish(http, broker.url, type=etype, subject="db-1", data={"n": 7})
    [got] = await receiver.wait_for(1)
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-signature"] == standard_webhooks_signature(SECRET_KEY, headers,
                                                                       got.body)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["ce-id"] == sent["id"] and headers["ce-source"] == "tests/suite"
    assert headers["ce-subject"] == "db-1" and headers["x-team"] == "ops"
    assert headers["content-type"] == "application/json" and got.json == {"n": 7}
    # The signing secret is never shown by the API.
    shown = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}", expect=200)
    assert shown["secret"] == "whsec_***" and shown["status"]["state"] == "active"
    listed = await call(http, "GET", f"{broker.url}/v1/subscriptions", expect=200)
    assert SECRET not in str(listed)


async def test_structured_mode_sends_the_event_json(broker, http, receiver):
    _, etype = await subscribe(http, broker.url, receiver, content_mode="structured")
    sent = await publish(http, broker.url, type=etype)
    [got] = await receiver.wait_for(1)
    assert got.headers["Content-Type"] == "application/cloudevents+json"
    assert got.json == sent["event"]


async def test_a_cookie_a_receiver_sets_is_never_sent_back(broker, http, receiver):
    """Webhook calls keep no cookies: what one subscription's receiver sets reaches
    neither it nor another subscription calling the same host (by a name, which a
    cookie jar would keep cookies for)."""
    url = f"http://localhost:{receiver.port}/hook"
    receiver.statuses = [(200, {"Set-Cookie": "session=first-subscription; Path=/"})]
    _, first = await subscribe(http, broker.url, receiver, url=url)
    _, second = await subscribe(http, broker.url, receiver, url=url)
    await publish(http, broker.url, type=first)
    await receiver.wait_for(1)
    await publish(http, broker.url, type=first)
    await publish(http, broker.url, type=second)
    calls = await receiver.wait_for(3)
    assert [c.headers.get("Cookie") for c in calls] == [None, None, None]


async def test_failures_are_retried_until_success_and_every_attempt_is_recorded(
        broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver, secret=SECRET)
    receiver.statuses = [500, (503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    await publish(http, broker.url, type=etype)
    got = await receiver.wait_for(4)
    # Every retry carries the same message id (receivers deduplicate on it).
    assert len({r.headers["webhook-id"] for r in got}) == 1

    async def delivered():
        page = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries"
                          "?state=delivered", expect=200)
        return page["deliveries"]

    [delivery] = await eventually(delivered)
    log = delivery["attempts_log"]
    assert [a["status"] for a in log] == [500, 503, 429, 200]
    assert [a["outcome"] for a in log] == ["retry", "retry", "retry", "delivered"]
    assert all(a["latency_ms"] is not None for a in log)
    assert log[0]["error"].startswith("HTTP 500")


async def test_a_retry_after_longer_than_the_backoff_is_honoured(broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver)  # backoff 50-200 ms
    receiver.statuses = [(503, {"Retry-After": "120"})]
    await publish(http, broker.url, type=etype)
    await receiver.wait_for(1)

    async def backing_off():
        page = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries"
                          "?state=pending", expect=200)
        return [d for d in page["deliveries"] if d["attempts"] == 1]

    [delivery] = await eventually(backing_off)
    assert delivery["last_status"] == 503
    # Due 120 s after the attempt was settled, not after the 200 ms backoff.
    assert seconds_between(delivery["updated_at"], delivery["next_at"]) >= 120


async def test_4xx_dead_letters_at_once_into_a_todo_item(broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver)
    receiver.statuses = [422]
    sent = await publish(http, broker.url, type=etype)
    await receiver.wait_for(1)

    async def dead():
        return await events_of_type(http, broker.url, "opsbus.delivery.deadlettered",
                                    subject=name)

    [notice] = await eventually(dead)
    assert notice["causationid"] == sent["id"]
    assert notice["data"]["event"]["id"] == sent["id"]
    assert notice["data"]["attempts"] == 1 and notice["data"]["last_status"] == 422
    # The dead letter is written with the delivery's final state: no retry can follow.
    assert len(receiver.requests) == 1

    async def item():
        page = await call(http, "GET", f"{broker.url}/v1/todos?queue=deadletter&limit=200",
                          expect=200)
        return [i for i in page["items"] if notice["id"] in i["key"]]

    [todo] = await eventually(item)
    assert todo["state"] == "open"
    status = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/status",
                        expect=200)
    assert status["counts"]["deadlettered"] == 1
    assert status["last_error"]["status"] == 422

    # An operator retries it once the receiver is fixed.
    [dead_delivery] = (await call(
        http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries?state=deadlettered",
        expect=200))["deliveries"]
    await call(http, "POST", f"{broker.url}/v1/subscriptions/{name}/deliveries/"
               f"{dead_delivery['id']}/retry", expect=200)
    await receiver.wait_for(2)
    await call(http, "POST", f"{broker.url}/v1/subscriptions/{name}/deliveries/"
               f"{dead_delivery['id']}/retry", expect=409)  # not dead any more

    async def redelivered():
        d = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries/"
                       f"{dead_delivery['id']}", expect=200)
        return d if d["state"] == "delivered" else None

    assert len((await eventually(redelivered))["attempts_log"]) == 2


async def test_exhausted_retries_dead_letter(broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver,
                                  retry={**FAST_RETRY, "max_attempts": 3},
                                  breaker={"failures": 100, "cooldown": "1s"})
    receiver.reply = lambda got: aiohttp.web.Response(status=502)
    await publish(http, broker.url, type=etype)
    await receiver.wait_for(3)

    async def dead():
        return await events_of_type(http, broker.url, "opsbus.delivery.deadlettered",
                                    subject=name)

    [notice] = await eventually(dead)
    assert notice["data"]["attempts"] == 3
    assert "gave up after 3 attempts" in notice["data"]["last_error"]
    assert len(receiver.requests) == 3  # dead-lettered with its last attempt: no more


async def test_ordered_mode_keeps_seq_order_under_retries(broker, http, receiver):
    _, etype = await subscribe(http, broker.url, receiver, ordered=True,
                                  content_mode="structured", max_in_flight=8)
    fail_once = {2, 5}

    def reply(got):
        n = got.json["data"]["n"]
        if n in fail_once:
            fail_once.discard(n)
            return aiohttp.web.Response(status=503)
        return aiohttp.web.Response(status=204)

    receiver.reply = reply
    for n in range(8):
        await publish(http, broker.url, type=etype, data={"n": n})
    got = await receiver.wait_for(10)
    order = [r.json["data"]["n"] for r in got]
    assert order == [0, 1, 2, 2, 3, 4, 5, 5, 6, 7]


async def test_unordered_subscription_runs_deliveries_concurrently(broker, http, receiver):
    _, etype = await subscribe(http, broker.url, receiver, max_in_flight=4)
    receiver.hold()
    for n in range(8):
        await publish(http, broker.url, type=etype, data={"n": n})
    # Four calls in flight at once (none answered yet), not one after the other.
    await receiver.wait_held(4)
    assert len(receiver.requests) == 4  # and no more than its max_in_flight
    receiver.release()
    await receiver.wait_for(8)


async def test_slow_receiver_does_not_slow_ingest_or_other_subscriptions(broker, http):
    slow, fast = await Receiver().start(), await Receiver().start()
    try:
        slow.hold()  # answers nothing for as long as the test runs
        etype = f"test.{unique('shared')}"
        for rec in (slow, fast):
            await put_object(http, broker.url, "subscriptions", {
                "name": unique("iso"), "url": rec.url, "max_in_flight": 2,
                "filter": {"exact": {"type": etype}}, "timeout": "10s"})
        for n in range(20):  # every publish answered while the slow calls hang
            await publish(http, broker.url, type=etype, data={"n": n})
        await fast.wait_for(20)
        assert slow.waiting == len(slow.requests) == 2  # its own slots only
    finally:
        await slow.stop()
        await fast.stop()


async def test_circuit_breaker_suspends_then_resumes(clocked, http, receiver):
    """On the manual clock the cool-down is exact: no probe a second before it ends, one
    probe when it does."""
    url = clocked.url
    name, etype = await subscribe(http, url, receiver,
                                  breaker={"failures": 2, "cooldown": "10m"},
                                  retry={**FAST_RETRY, "max_attempts": 50})
    healthy = False

    def reply(got):
        return aiohttp.web.Response(status=200 if healthy else 500)

    async def settled_after(attempts: int) -> bool:
        page = await call(http, "GET", f"{url}/v1/subscriptions/{name}/deliveries",
                          expect=200)
        [found] = page["deliveries"]
        return (found["state"], found["attempts"]) == ("pending", attempts)

    async def announced(kind: str):
        return await events_of_type(http, url, f"opsbus.subscription.{kind}", subject=name)

    async def probe_in() -> float:
        status = await call(http, "GET", f"{url}/v1/subscriptions/{name}/status")
        assert status["state"] == "suspended", status
        return float(status["breaker"]["probe_in_s"])

    receiver.reply = reply
    await publish(http, url, type=etype)
    await receiver.wait_for(1)
    await eventually(lambda: settled_after(1))
    await clocked.advance(http, 1)  # past the retry backoff: the second failure opens it
    [suspended] = await eventually(lambda: announced("suspended"))
    assert suspended["data"]["consecutive_failures"] == 2
    # While open, nothing is sent until the cool-down ends, then one probe.
    await clocked.advance(http, await probe_in() - 1)
    assert await settled_after(2) and len(receiver.requests) == 2
    await clocked.advance(http, 1.5)
    await receiver.wait_for(3)
    await eventually(lambda: settled_after(3))  # the probe failed and was recorded
    await clocked.advance(http, await probe_in() - 1)
    assert await settled_after(3) and len(receiver.requests) == 3
    healthy = True
    await clocked.advance(http, 1.5)
    await eventually(lambda: announced("resumed"))
    status = await call(http, "GET", f"{url}/v1/subscriptions/{name}/status")
    assert status["state"] == "active" and status["counts"]["delivered"] == 1
    assert len(receiver.requests) == 4


async def test_pause_holds_deliveries_until_resume(broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver)
    paused = await call(http, "POST", f"{broker.url}/v1/subscriptions/{name}/pause",
                        {"operator": "alice"}, expect=200)
    assert paused["state"] == "paused" and paused["paused_by"] == "alice"
    await publish(http, broker.url, type=etype)
    # A later event for another subscription: the dispatcher pass that sends it also
    # looked at the paused one, whose delivery was committed first.
    other = Receiver()
    await other.start()
    try:
        _, witness = await subscribe(http, broker.url, other)
        await publish(http, broker.url, type=witness)
        await other.wait_for(1)
    finally:
        await other.stop()
    page = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries",
                      expect=200)
    assert [(d["state"], d["attempts"]) for d in page["deliveries"]] == [("pending", 0)]
    assert receiver.requests == []
    await call(http, "POST", f"{broker.url}/v1/subscriptions/{name}/resume", expect=200)
    await receiver.wait_for(1, timeout=3)


async def test_deliveries_claimed_ahead_are_given_back_on_pause(broker, http, receiver):
    """One slot and a stalled receiver: the rest of the backlog waits claimed ahead of
    it. A pause gives those back unsent (pending again, for any process) when the call
    out ends, and a resume sends them: giving back uses up none of their attempts."""
    name, etype = await subscribe(http, broker.url, receiver, max_in_flight=1,
                                  retry={**FAST_RETRY, "max_attempts": 1})
    status_url = f"{broker.url}/v1/subscriptions/{name}/status"
    receiver.hold()
    for n in range(5):
        await publish(http, broker.url, type=etype, data={"n": n})
    await receiver.wait_held(1)

    async def counts_are(**expected: int) -> dict | None:
        counts = (await call(http, "GET", status_url))["counts"]
        return counts if all(counts[k] == v for k, v in expected.items()) else None

    await eventually(lambda: counts_are(leased=5))  # one sent, four claimed ahead
    await call(http, "POST", f"{broker.url}/v1/subscriptions/{name}/pause", expect=200)
    receiver.release()
    await eventually(lambda: counts_are(delivered=1, pending=4, leased=0))
    assert len(receiver.requests) == 1
    await call(http, "POST", f"{broker.url}/v1/subscriptions/{name}/resume", expect=200)
    await receiver.wait_for(5, timeout=3)
    assert sorted(r.json["n"] for r in receiver.requests) == [0, 1, 2, 3, 4]
    await eventually(lambda: counts_are(delivered=5))
    listed = await call(http, "GET", f"{broker.url}/v1/subscriptions/{name}/deliveries")
    assert [d["attempts"] for d in listed["deliveries"]] == [1] * 5, listed


async def test_metadata_address_is_refused_and_dead_lettered(broker, http):
    name = unique("meta")
    etype = f"test.{name}"
    await put_object(http, broker.url, "subscriptions", {
        "name": name, "url": "http://169.254.169.254/latest/meta-data/",
        "filter": {"exact": {"type": etype}}, "retry": FAST_RETRY})
    await publish(http, broker.url, type=etype)

    async def dead():
        return await events_of_type(http, broker.url, "opsbus.delivery.deadlettered",
                                    subject=name)

    [notice] = await eventually(dead)
    assert "metadata" in notice["data"]["last_error"]
    assert notice["data"]["attempts"] == 1


async def test_replayed_event_is_recorded_not_sent(broker, http, receiver):
    name, etype = await subscribe(http, broker.url, receiver, secret=SECRET,
                                  content_mode="structured")
    sent = await publish(http, broker.url, type=etype, replay="run-1")
    live = await publish(http, broker.url, type=etype, replay="run-2", replaylive=True)

    async def recorded():
        found = await events_of_type(http, broker.url, "opsbus.action.recorded",
                                     subject=f"subscription:{name}")
        return found

    [record] = await eventually(recorded)
    assert record["causationid"] == sent["id"]
    request = record["data"]["request"]
    assert request["method"] == "POST" and request["url"] == receiver.url + "/hook"
    assert request["headers"]["webhook-signature"] == "***"
    assert request["body"].startswith("{") and sent["id"] in request["body"]
    [got] = await receiver.wait_for(1)
    assert got.json["id"] == live["id"]  # replaylive does send
    # The replayed event was recorded instead of getting a delivery, in its own commit.
    assert len(receiver.requests) == 1


async def test_subscription_validation_names_the_field(broker, http):
    bad = [
        ({"name": "x1", "type": "push", "url": "ftp://h/"}, "url"),
        ({"name": "x2", "type": "push", "url": "http://h/", "secret": "nope"}, "secret"),
        ({"name": "x3", "type": "push", "url": "http://h/", "content_mode": "raw"},
         "content_mode"),
        ({"name": "x4", "type": "push", "url": "http://h/", "retry": {"backof": "1s"}},
         "backof"),
        ({"name": "x5", "type": "pull", "lease": "soon"}, "lease"),
        ({"name": "x6", "type": "push", "url": "http://h/", "dead_letter": "action:x"},
         "dead_letter"),
    ]
    for spec, field in bad:
        problem = await call(http, "POST", f"{broker.url}/v1/subscriptions", spec, expect=400)
        assert field in problem["detail"], problem


async def test_a_route_can_target_a_subscription_without_a_filter(broker, http, receiver):
    name = unique("routed")
    await put_object(http, broker.url, "subscriptions", {"name": name, "url": receiver.url})
    etype = f"test.{name}"
    await put_object(http, broker.url, "routes", {
        "name": name, "filter": {"exact": {"type": etype}},
        "targets": [f"subscription:{name}"]})
    sent = await publish(http, broker.url, type=etype)
    [got] = await receiver.wait_for(1)
    assert got.headers["ce-id"] == sent["id"]


async def test_restart_mid_retry_loses_nothing(tmp_path: Path, http, receiver):
    """Deliveries waiting for a retry survive a broker restart and are then delivered."""
    proc = BrokerProcess(tmp_path / "data", args=[
        "--allow-private-targets", "--delivery-poll-s", "3600"], test_clock=True).start()
    try:
        etype = "test.restart"
        await put_object(http, proc.url, "subscriptions", {
            "name": "restart", "url": receiver.url, "filter": {"exact": {"type": etype}},
            "retry": {"max_attempts": 20, "backoff": "400ms", "max_backoff": "400ms"},
            "breaker": {"failures": 1000, "cooldown": "1s"}})
        receiver.reply = lambda got: aiohttp.web.Response(status=503)
        ids = [(await publish(http, proc.url, type=etype, data={"n": n}))["id"]
               for n in range(5)]
        await receiver.wait_for(5)  # every event failed at least once
        proc.stop()
        receiver.reply = None
        before = len(receiver.requests)
        assert before == 5  # the clock stood still: no retry was made before the restart
        proc.start()

        async def all_delivered():
            async with aiohttp.ClientSession(headers=AUTH) as fresh:  # no old keep-alive
                await proc.advance(fresh, 0.5)  # past the retries' backoff
                status = await call(fresh, "GET",
                                    f"{proc.url}/v1/subscriptions/restart/status")
            return status["counts"]["delivered"] == 5 and status

        status = await eventually(all_delivered)
        assert status["counts"]["pending"] == 0 and status["counts"]["deadlettered"] == 0
        after = {r.headers["ce-id"] for r in receiver.requests[before:]}
        assert after == set(ids)
    finally:
        proc.stop()


async def test_a_last_attempt_cut_short_by_a_crash_is_made_again(tmp_path: Path, http,
                                                                   receiver):
    """The broker is SIGKILLed while its only permitted attempt is in flight: nobody knows
    whether the receiver took it, so once the lease lapses it is sent again (the
    receiver deduplicates by id) instead of being dead-lettered."""
    proc = BrokerProcess(tmp_path / "data", args=["--allow-private-targets",
                                                  "--delivery-poll-s", "3600"],
                         test_clock=True).start()
    try:
        await put_object(http, proc.url, "subscriptions", {
            "name": "last", "url": receiver.url, "filter": {"exact": {"type": "test.last"}},
            "timeout": "5s", "retry": {"max_attempts": 1}})
        receiver.hold()
        sent = await publish(http, proc.url, type="test.last")
        await receiver.wait_held(1)
        proc.kill()
        receiver.release()
        proc.start()
        async with aiohttp.ClientSession(headers=AUTH) as fresh:  # no old keep-alive
            await proc.advance(fresh, 5 + 5 + 1)  # the call's timeout and the lease margin
            counts = await eventually(lambda: settled_counts(fresh, proc.url, "last"))
        assert counts["delivered"] == 1 and counts["deadlettered"] == 0, counts
        assert [r.headers["ce-id"] for r in receiver.requests] == [sent["id"]] * 2
    finally:
        proc.stop()


async def test_a_call_still_out_when_its_lease_lapses_is_not_sent_twice(clocked, http,
                                                                          receiver):
    """The receiver is slow past the lease (timeout + margin on the broker's clock): the
    lapsed delivery is claimed again, but this process is still waiting for its answer,
    so the call in flight settles it; the receiver sees the event once."""
    name = unique("stalled")
    await put_object(http, clocked.url, "subscriptions", {
        "name": name, "url": receiver.url,
        "filter": {"exact": {"type": f"test.{name}"}}, "timeout": "60s"})
    receiver.hold()
    sent = await publish(http, clocked.url, type=f"test.{name}")
    await receiver.wait_held(1)
    await clocked.advance(http, 60 + 5 + 1)  # the call's timeout and the lease margin
    # A new event wakes the dispatcher: its pass claims the lapsed delivery with it.
    second = await publish(http, clocked.url, type=f"test.{name}")
    await receiver.wait_held(2)
    receiver.release()

    counts = await eventually(lambda: settled_counts(http, clocked.url, name))
    assert counts["delivered"] == 2, counts
    assert sorted(r.headers["ce-id"] for r in receiver.requests
                  if r.headers.get("ce-type") == f"test.{name}") == sorted(
        [sent["id"], second["id"]])


async def test_a_call_still_out_past_its_last_attempt_is_not_dead_lettered(clocked, http,
                                                                             receiver):
    """A single permitted attempt whose receiver stalls past the lease twice: this
    process still waits for the answer, so its lease is kept (no attempt is used up by
    claiming it again) and the late success delivers it instead of a dead letter."""
    name = unique("stalled-last")
    etype = f"test.{name}"
    await put_object(http, clocked.url, "subscriptions", {
        "name": name, "url": receiver.url, "filter": {"exact": {"type": etype}},
        "timeout": "60s", "retry": {"max_attempts": 1}})
    receiver.hold()
    sent = await publish(http, clocked.url, type=etype)
    await receiver.wait_held(1)
    for held in (2, 3):
        await clocked.advance(http, 60 + 5 + 1)  # past the lease
        await publish(http, clocked.url, type=etype)  # wakes a pass that sees it lapsed
        await receiver.wait_held(held)
    receiver.release()

    counts = await eventually(lambda: settled_counts(http, clocked.url, name))
    assert counts == {**counts, "delivered": 3, "deadlettered": 0}, counts
    ids = [r.headers["ce-id"] for r in receiver.requests if r.headers.get("ce-type") == etype]
    assert ids.count(sent["id"]) == 1
