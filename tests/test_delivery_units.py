"""Unit checks of the pieces under delivery and actions: the outbound address guard,
signatures, backoff, the circuit breaker and template escaping."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import aiohttp
import pytest

from broker.actions.render import RenderError, compile_json, compile_url, render_json, render_url
from broker.clock import ManualClock
from broker.delivery import breaker
from broker.delivery.breaker import BreakerState
from broker.delivery.push import PushDispatcher
from broker.delivery.signing import signature_headers, verify
from broker.delivery.subscriptions import RetryPolicy, Subscription
from broker.dispatcher import DispatchSettings
from broker.metrics_delivery import DeliveryCounts
from broker.outbound import (
    CallDeadlines,
    GuardedResolver,
    OutboundRefused,
    OutboundRequest,
    OutboundResult,
    _socket_factory,
    clean_header_value,
    close_session,
    open_session,
    refusal,
    retry_after_seconds,
    send,
)
from broker.timeutil import later
from tests.delivery_support import Receiver


@pytest.mark.parametrize(("address", "private_ok", "refused"), [
    ("169.254.169.254", True, "metadata"), ("fd00:ec2::254", True, "metadata"),
    ("169.254.10.1", True, "link-local"), ("fe80::1", True, "link-local"),
    ("::ffff:169.254.169.254", True, "metadata"), ("224.0.0.1", True, "unicast"),
    ("127.0.0.1", False, "loopback"), ("::1", False, "loopback"),
    ("10.0.0.1", False, "private"), ("192.168.1.1", False, "private"),
    ("100.64.0.1", False, "private"), ("fd12::1", False, "private"),
    ("127.0.0.1", True, None), ("10.0.0.1", True, None), ("93.184.216.34", False, None),
])
def test_refusal_by_address(address, private_ok, refused):
    reason = refusal(address, private_ok)
    assert (reason is None) if refused is None else (refused in (reason or ""))


class _Answers:
    """Stands in for the system resolver (DNS is not ours to test)."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": h, "port": port, "family": family, "proto": 0,
                 "flags": 0} for h in self.hosts]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_metadata_is_refused_even_beside_public_addresses():
    resolver = GuardedResolver(allow_private=True)
    resolver._inner = _Answers("93.184.216.34", "169.254.169.254")  # type: ignore[assignment]
    with pytest.raises(OutboundRefused, match="metadata"):
        await resolver.resolve("rebind.example", 80)
    resolver._inner = _Answers("93.184.216.34")  # type: ignore[assignment]
    assert len(await resolver.resolve("ok.example", 80)) == 1
    with pytest.raises(OutboundRefused):
        await resolver.resolve("metadata.google.internal", 80)


def test_the_socket_factory_checks_the_address_actually_connected():
    make = _socket_factory(allow_private=False)
    with pytest.raises(OutboundRefused, match="loopback"):
        make((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(OutboundRefused, match="link-local"):
        make((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 80, 0, 2)))
    make((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))).close()


def test_signature_round_trip_and_tamper():
    headers = signature_headers(b"key", "msg_1", 1700000000, b'{"a":1}')
    assert verify(b"key", headers, b'{"a":1}')
    assert not verify(b"key", headers, b'{"a":2}')
    assert not verify(b"other", headers, b'{"a":1}')


def test_backoff_grows_with_jitter_and_is_capped():
    policy = RetryPolicy(max_attempts=10, backoff=1.0, max_backoff=8.0, max_age=3600)
    rng = random.Random(1)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1


def test_breaker_opens_probes_and_closes():
    t0 = "2026-01-01T00:00:00.000000Z"

    def at(s: float) -> str:
        return later(t0, s)

    def fail(h, s: float):
        return breaker.after_failure(h, "e", at(s), threshold=2, cooldown_s=10)

    health = breaker.closed("hook", t0)
    assert health.clean and breaker.wait_s(health, t0) is None
    health, suspended = fail(health, 0)
    assert not suspended and health.state is BreakerState.CLOSED and not health.clean
    health, suspended = fail(health, 1)
    assert suspended and health.state is BreakerState.OPEN
    assert not breaker.probe_due(health, at(5)) and breaker.wait_s(health, at(5)) == 6
    assert breaker.probe_due(health, at(11))
    probe = breaker.start_probe(health, at(11), lease_s=30)
    assert probe.state is BreakerState.HALF_OPEN
    assert not breaker.probe_due(probe, at(12))  # one probe at a time...
    assert breaker.probe_due(probe, at(41))  # ...until its claim lapses
    health, suspended = fail(probe, 12)
    assert not suspended and health.state is BreakerState.OPEN  # announced once only
    assert breaker.wait_s(health, at(12)) == 10
    health, resumed = breaker.after_success(health, at(23))
    assert resumed and health.clean
    assert breaker.after_success(health, at(24)) == (breaker.closed("hook", at(24)), False)


def test_retry_after_forms():
    now = 1445412400.0  # 2015-10-21T07:26:40Z
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 80
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now + 600) == 0
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_url_values_are_escaped_by_position():
    template = compile_url("https://api.example/v1/{subject}/x?q={data.q}#{id}", "url")
    event = {"id": "a b", "subject": "../../etc/passwd", "data": {"q": "1&admin=1"}}
    assert render_url(template, event, None) == \
        "https://api.example/v1/..%2F..%2Fetc%2Fpasswd/x?q=1%26admin%3D1#a%20b"
    assert render_url(template, {**event, "subject": "."}, None).startswith(
        "https://api.example/v1/%2E/x")
    with pytest.raises(RenderError, match="subject"):
        render_url(template, {"id": "1", "data": {}}, None)
    with pytest.raises(Exception, match="host"):
        compile_url("https://{data.host}/x", "url")


def test_params_override_event_fields():
    template = compile_url("https://api.example/{namespace}/{subject}", "url")
    event = {"subject": "pod-1", "namespace": "from-event"}
    assert render_url(template, event, {"namespace": "ops"}) == "https://api.example/ops/pod-1"


def test_json_body_substitutes_values_not_text():
    template = compile_json({"n": "{data.n}", "s": "x={data.n}", "l": ["{data.list}"],
                             "missing": "{data.nope}", "literal": 5}, "body")
    event = {"data": {"n": 3, "list": [1, "two"]}}
    assert render_json(template, event, None) == {
        "n": 3, "s": "x=3", "l": [[1, "two"]], "missing": None, "literal": 5}


def test_header_values_lose_control_characters():
    assert clean_header_value("a\r\nX-Evil: 1\x00\tb") == "aX-Evil: 1\tb"


class _StaleBreakerRepo:
    """The store's side of a pass: one open breaker whose cool-down ended (another
    process may hold the probe), nothing due."""

    def __init__(self, health: breaker.SubscriptionHealth) -> None:
        self.health = health
        self.reads = 0

    async def breakers(self) -> dict[str, breaker.SubscriptionHealth]:
        self.reads += 1
        return {self.health.subscription: self.health}

    async def next_due(self, subscription: str, ordered: bool = False) -> str | None:
        return None


class _OneSubscription:
    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    def push(self) -> list[Subscription]:
        return [self.sub]

    def get(self, name: str) -> Subscription | None:
        return self.sub if name == self.sub.name else None


async def test_a_pass_does_not_rearm_at_once_on_an_ended_cool_down():
    """A cool-down over by the breaker as read is no reason to pass again in 10 ms when
    this process may not take the probe (its own calls still out): such passes ran ~100
    times a second until the next poll. It waits for the poll, or the wake its calls
    bring when they end; once it may probe, the ended cool-down re-arms a pass."""
    clock = ManualClock()
    sub = Subscription("hook", "push", {}, None, "dead", url="http://127.0.0.1/")
    opened = breaker.SubscriptionHealth("hook", BreakerState.OPEN, 5, clock.stamp(-1),
                                        "HTTP 503", clock.stamp(-31))
    repo = _StaleBreakerRepo(opened)
    dispatcher = PushDispatcher(
        None, repo, clock,  # type: ignore[arg-type]
        DispatchSettings(poll_s=3600, concurrency=4, allow_private_targets=True),
        _OneSubscription(sub), lambda name: False, DeliveryCounts())  # type: ignore[arg-type]
    dispatcher._in_flight["hook"] = 1  # a call still out: no probe from here now
    assert await dispatcher._pass() == 3600
    assert await dispatcher._pass() == 3600
    dispatcher._in_flight["hook"] = 0
    assert await dispatcher._pass() == 0.01  # free to probe (nothing due to probe with)


async def test_a_target_url_is_refused_before_any_connection_every_time():
    """A metadata host name and a URL that is not http(s) are refused by `send` itself,
    before a lookup or a connection (a plain session here: no guarded resolver behind
    it), on a repeated call too, when the URL's check is remembered."""
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            for url, error in (
                ("http://metadata.google.internal/computeMetadata/v1/",
                 "metadata.google.internal is a cloud metadata host"),
                ("http://Metadata.Google.Internal./x",
                 "metadata.google.internal. is a cloud metadata host"),
                ("ftp://example.com/hook", "not an http(s) URL: ftp://example.com/hook"),
            ):
                result = await send(session, OutboundRequest("POST", url, {}, b"{}"),
                                    timeout=5, now=time.time, deadlines=CallDeadlines())
                assert (result.status, result.error, result.refused) == (None, error, True)


async def test_calls_timed_on_one_timer_end_as_timeouts_at_their_own_deadlines():
    """`CallDeadlines` keeps many calls' timeouts on one timer: a call with a shorter
    timeout than the one the timer waits for still ends at its own deadline, as a
    retryable timeout; an answer in time is untouched; the longer call ends at its
    deadline too, from the timer armed again."""
    receiver = await Receiver().start()
    session = open_session(allow_private=True)
    deadlines = CallDeadlines()
    request = OutboundRequest("POST", receiver.url + "/hook", {}, b"{}")
    calls: list[asyncio.Task[OutboundResult]] = []

    def call(timeout: float) -> asyncio.Task[OutboundResult]:
        calls.append(asyncio.create_task(send(session, request, timeout=timeout,
                                              now=time.time, deadlines=deadlines)))
        return calls[-1]

    try:
        receiver.hold()
        slow = call(1.5)
        await receiver.wait_held(1)
        short = call(0.2)
        # Waited for without being cancelled on the way: only the deadlines end them.
        await asyncio.wait([short], timeout=1.0)
        assert short.done() and not slow.done()
        assert (short.result().status, short.result().error, short.result().retryable) == (
            None, "timed out after 0.2s", True)
        await asyncio.wait([slow], timeout=5)
        assert slow.done()
        assert (slow.result().status, slow.result().error) == (None, "timed out after 1.5s")
        receiver.release()
        answered = await send(session, request, timeout=5, now=time.time,
                              deadlines=deadlines)
        assert answered.status == 200 and answered.error is None
    finally:
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await close_session(session)
        await receiver.stop()


async def test_a_call_cancelled_from_outside_is_not_taken_for_a_timeout():
    """A sender stopped mid-call (the broker shutting down) is cancelled, not given a
    timed-out result to record: only the deadlines' own cancel is a timeout."""
    receiver = await Receiver().start()
    session = open_session(allow_private=True)
    deadlines = CallDeadlines()
    request = OutboundRequest("POST", receiver.url + "/hook", {}, b"{}")
    try:
        receiver.hold()
        call = asyncio.create_task(send(session, request, timeout=60, now=time.time,
                                        deadlines=deadlines))
        await receiver.wait_held(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert not deadlines._due  # forgotten, not left for the timer
    finally:
        await close_session(session)
        await receiver.stop()


async def test_a_deadline_cancel_that_surfaces_as_another_error_leaves_no_cancel_pending():
    """Should the client turn the deadline's cancel into an error of its own, the call
    ends with that error and its task is not left counted as cancelling (which would
    cut short the sender's next asyncio.timeout)."""

    class Swallowing:
        async def request(self, *args: object, **kwargs: object) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise aiohttp.ClientConnectionError("connection closed") from None

    async def call() -> tuple[OutboundResult, int]:
        result = await send(Swallowing(), OutboundRequest(  # type: ignore[arg-type]
            "POST", "http://127.0.0.1:9/hook", {}, b"{}"), timeout=0.05, now=time.time,
            deadlines=CallDeadlines())
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    result, cancelling = await asyncio.wait_for(call(), 5)
    assert result.error == "ClientConnectionError: connection closed"
    assert cancelling == 0
