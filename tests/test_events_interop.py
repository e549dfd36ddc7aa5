"""Interoperability with the CloudEvents Python SDK: what it produces we accept, and what
we send (webhooks in binary mode) it reads back with the same attributes and data."""

from __future__ import annotations

from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent, from_http

from broker.events import Limits, parse_request
from broker.events import to_binary as our_binary
from tests.conftest import make_event


def test_events_the_sdk_produces_parse_in_both_modes():
    sdk_event = CloudEvent(
        {"type": "deploy.finished", "source": "ci/main", "id": "sdk-1",
         "subject": "orders", "time": "2026-11-25T10:00:00Z", "correlationid": "inc-7",
         "datacontenttype": "application/json"},
        {"version": "4.12.0"},
    )
    for headers, body in (to_structured(sdk_event), to_binary(sdk_event)):
        events, batch = parse_request(headers.get("content-type"), headers, body, Limits())
        assert not batch
        (event,) = events
        assert (event["id"], event["source"], event["type"]) == ("sdk-1", "ci/main",
                                                                 "deploy.finished")
        assert event["subject"] == "orders" and event["correlationid"] == "inc-7"
        assert event["data"] == {"version": "4.12.0"}


def test_what_we_send_in_binary_mode_reads_back_in_the_sdk():
    # ASCII values only: the SDK does not percent-decode header values as the HTTP
    # binding requires (our own round trip of non-ASCII values is in test_events_parse).
    event = make_event(subject="orders-api", correlationid="inc-7", data={"n": 1})
    headers, body = our_binary(event)
    received = from_http(headers, body)
    for name in ("id", "source", "type", "subject", "correlationid"):
        assert received[name] == event[name]
    assert received.data == {"n": 1}
