"""Unit tests of the CloudEvents 1.0 parser and validator (broker/events.py)."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import InvalidEvent, OpsbusError, TooLarge, UnsupportedMediaType
from broker.events import (
    Limits,
    dumps,
    new_event,
    parse_batch,
    parse_binary,
    parse_request,
    parse_structured,
    to_binary,
    validate_event,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
LIMITS = Limits()


def event(**overrides: Any) -> dict[str, Any]:
    """A valid structured event; keyword arguments replace or add members."""
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "//alertmanager/prod",
        "type": "io.prometheus.alert.firing",
    }
    base.update(overrides)
    return base


def structured(obj: object, content_type: str = STRUCTURED) -> dict:
    events, is_batch = parse_request(content_type, {}, orjson.dumps(obj), LIMITS)
    assert not is_batch
    assert len(events) == 1
    return events[0]


def invalid(obj: object) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj)
    return info.value


def binary_headers(**attrs: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "//ci/builds",
        "ce-type": "dev.ci.build.finished",
    }
    headers.update({f"ce-{k}": v for k, v in attrs.items()})
    return headers


# --- structured mode -------------------------------------------------------------------


def test_structured_minimal_event() -> None:
    assert structured(event()) == event()


def test_structured_content_type_parameters_and_case() -> None:
    got = structured(event(), "Application/CloudEvents+JSON; charset=UTF-8")
    assert got["id"] == "evt-1"


def test_structured_full_event_normalized_order() -> None:
    obj = {
        "data": {"b": 1, "a": 2},
        "zeta": "z",
        "alpha": 7,
        "time": "2024-05-01T12:00:00.123456+02:00",
        "type": "t",
        "dataschema": "https://schemas.example.com/alert.json",
        "subject": "node-17",
        "source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "id": "x",
        "datacontenttype": "application/json",
        "specversion": "1.0",
        "flag": True,
    }
    got = structured(obj)
    assert list(got) == [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "alpha",
        "flag",
        "zeta",
        "data",
    ]
    assert got["time"] == "2024-05-01T12:00:00.123456+02:00"  # original string kept
    assert got["data"] == {"b": 1, "a": 2}
    # dumps is compact JSON of the normalized event and parses back to it
    assert orjson.loads(dumps(got)) == got
    assert b" " not in dumps(event())


def test_structured_ignores_ce_headers() -> None:
    body = orjson.dumps(event())
    events, _ = parse_request(STRUCTURED, {"ce-id": "other", "ce-specversion": "0.3"}, body, LIMITS)
    assert events[0]["id"] == "evt-1"


def test_validate_event_does_not_modify_input() -> None:
    obj = event(subject=None, ext="v")
    before = dict(obj)
    validate_event(obj)
    assert obj == before


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"\xff\xfe", b"{'a': 1}", b"NaN"])
def test_structured_body_not_json(body: bytes) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_request(STRUCTURED, {}, body, LIMITS)
    assert info.value.attribute is None
    assert "not valid JSON" in info.value.detail


@pytest.mark.parametrize("top", [[event()], "event", 1, None, True])
def test_structured_top_level_not_object(top: object) -> None:
    with pytest.raises(InvalidEvent, match="JSON object"):
        parse_structured(orjson.dumps(top))


# --- null handling ---------------------------------------------------------------------


def test_null_subject_is_unset() -> None:
    got = structured(event(subject=None))
    assert "subject" not in got


def test_null_optional_attributes_and_extensions_removed() -> None:
    got = validate_event(
        event(time=None, datacontenttype=None, dataschema=None, unsetext=None, data_base64=None)
    )
    assert got == event()


def test_explicit_null_data_kept() -> None:
    got = validate_event(event(data=None))
    assert "data" in got
    assert got["data"] is None


def test_null_data_next_to_data_base64_ignored() -> None:
    got = validate_event(event(data=None, data_base64="AAEC"))
    assert got["data_base64"] == "AAEC"
    assert "data" not in got


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type"])
def test_null_required_attribute_is_missing(name: str) -> None:
    err = invalid(event(**{name: None}))
    assert err.attribute == name
    assert "missing" in err.detail


# --- required attributes and specversion -----------------------------------------------


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type"])
def test_missing_required_attribute(name: str) -> None:
    obj = event()
    del obj[name]
    err = invalid(obj)
    assert err.attribute == name
    assert err.status == 400


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "subject"])
def test_empty_string_attribute(name: str) -> None:
    assert invalid(event(**{name: ""})).attribute == name


@pytest.mark.parametrize("version", ["0.3", "1.0.2", "2.0", "1"])
def test_unsupported_specversion(version: str) -> None:
    err = invalid(event(specversion=version))
    assert err.attribute == "specversion"
    assert "1.0" in err.detail


def test_specversion_number_rejected() -> None:
    assert invalid(event(specversion=1.0)).attribute == "specversion"


# --- attribute types -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("id", 5),
        ("id", True),
        ("source", ["a"]),
        ("type", {"a": 1}),
        ("subject", {}),
        ("subject", 3.5),
        ("time", 1714564800),
        ("datacontenttype", 1),
        ("dataschema", False),
    ],
)
def test_core_attribute_wrong_type(name: str, value: object) -> None:
    err = invalid(event(**{name: value}))
    assert err.attribute == name
    assert "must be a string" in err.detail


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], 1.5, 5.0, 2**31, -(2**31) - 1, 2**63, 1e300])
def test_extension_wrong_type_or_range(value: object) -> None:
    err = invalid(event(myext=value))
    assert err.attribute == "myext"


@pytest.mark.parametrize("value", ["text", "", 0, -(2**31), 2**31 - 1, True, False])
def test_extension_valid_values(value: object) -> None:
    assert validate_event(event(myext=value))["myext"] == value


@pytest.mark.parametrize("value", ["a\nb", "tab\there", "\x00", "\x7f", "\x85", "\ufdd0", "\uffff"])
def test_string_with_disallowed_character(value: str) -> None:
    assert invalid(event(subject=value)).attribute == "subject"
    assert invalid(event(myext=value)).attribute == "myext"


@pytest.mark.parametrize("value", ["Euro € 😀", "nbsp\u00a0x", "zero\u200bwidth", "line\u2028x"])
def test_string_with_allowed_unicode(value: str) -> None:
    assert validate_event(event(subject=value))["subject"] == value


# --- attribute names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["MyExt", "my_ext", "my-ext", "my.ext", "", "ümlaut", "ext ", "DATA", "\uff41"]
)
def test_invalid_attribute_name(name: str) -> None:
    err = invalid(event(**{name: "v"}))
    assert err.attribute == name
    assert "lowercase" in err.detail


def test_attribute_name_length_limit() -> None:
    assert validate_event(event(**{"a" * 20: "v"}))["a" * 20] == "v"
    err = invalid(event(**{"a" * 21: "v"}))
    assert err.attribute == "a" * 21
    assert "20" in err.detail


def test_invalid_name_rejected_even_when_null() -> None:
    assert invalid(event(BadName=None)).attribute == "BadName"


def test_digits_only_name_allowed() -> None:
    assert validate_event(event(**{"42": "v"}))["42"] == "v"


# --- time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01t12:00:00z",
        "2024-05-01 12:00:00+00:00",
        "2024-02-29T23:59:59.999999999-05:30",
        "2016-12-31T23:59:60Z",
    ],
)
def test_valid_time(value: str) -> None:
    assert validate_event(event(time=value))["time"] == value


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-05-01",
        "2024-05-01T12:00:00",  # no offset
        "2024-05-01T12:00Z",
        "2023-02-29T12:00:00Z",
        "2024-13-01T12:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00+0100",
        "2024-05-01T12:00:00+24:00",
        "20240501T120000Z",
        "2024-05-01T12:00:00Z ",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # full-width digits
    ],
)
def test_invalid_time(value: str) -> None:
    err = invalid(event(time=value))
    assert err.attribute == "time"
    assert "RFC 3339" in err.detail


# --- source, dataschema, datacontenttype -----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/sensors/tn-1234567/alerts",
        "1-555-123-4567",
        "https://github.com/cloudevents",
        "mailto:ops@example.com",
        "10.0.0.1:9090",
        "/path%20with%2Fescapes",
    ],
)
def test_valid_source(value: str) -> None:
    assert validate_event(event(source=value))["source"] == value


@pytest.mark.parametrize("value", ["has space", "a<b>", "bad%zz", "trail%2", "ünï", 'q"uote'])
def test_invalid_source(value: str) -> None:
    assert invalid(event(source=value)).attribute == "source"


def test_dataschema_must_be_absolute_uri() -> None:
    ok = "https://schemas.example.com/a.json#/defs/x"
    assert validate_event(event(dataschema=ok))["dataschema"] == ok
    for bad in ["/relative/schema.json", "schema.json", "1http://x", "", "http://a b"]:
        assert invalid(event(dataschema=bad)).attribute == "dataschema"


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "text/plain; charset=utf-8",
        'multipart/mixed; boundary="a;b c"',
        "application/vnd.apache.thrift.binary",
        "application/cloudevents+json",
    ],
)
def test_valid_datacontenttype(value: str) -> None:
    assert validate_event(event(datacontenttype=value))["datacontenttype"] == value


@pytest.mark.parametrize(
    "value", ["json", "application/", "/json", "text/plain; charset", 'a/b; x="open', "a b/c"]
)
def test_invalid_datacontenttype(value: str) -> None:
    assert invalid(event(datacontenttype=value)).attribute == "datacontenttype"


# --- data / data_base64 ----------------------------------------------------------------


def test_data_and_data_base64_both_present() -> None:
    err = invalid(event(data={"a": 1}, data_base64="AAEC"))
    assert err.attribute == "data"
    assert "not both" in err.detail


@pytest.mark.parametrize("value", ["not base64!", "AAE", "AA==AA", "ÄÖ==", 5])
def test_invalid_data_base64(value: object) -> None:
    assert invalid(event(data_base64=value)).attribute == "data_base64"


def test_valid_data_base64() -> None:
    encoded = base64.b64encode(b"\x00\x01binary").decode()
    got = validate_event(event(datacontenttype="application/octet-stream", data_base64=encoded))
    assert got["data_base64"] == encoded


def test_non_json_content_type_requires_string_data() -> None:
    assert validate_event(event(datacontenttype="application/xml", data="<a/>"))["data"] == "<a/>"
    err = invalid(event(datacontenttype="application/xml", data={"a": 1}))
    assert err.attribute == "data"


@pytest.mark.parametrize("ctype", [None, "application/json", "application/problem+json"])
def test_json_data_any_value(ctype: str | None) -> None:
    for data in [{"a": [1, 2]}, [1], "a string", 3.25, False]:
        got = validate_event(event(datacontenttype=ctype, data=data))
        assert got["data"] == data


# --- batched mode ----------------------------------------------------------------------


def test_batch_returns_all_events() -> None:
    body = orjson.dumps([event(id=str(i)) for i in range(3)])
    events, is_batch = parse_request(BATCH, {}, body, LIMITS)
    assert is_batch
    assert [e["id"] for e in events] == ["0", "1", "2"]
    assert parse_batch(body) == events


def test_batch_reports_index_of_bad_event() -> None:
    body = orjson.dumps([event(id="0"), event(id="1"), event(id=5)])
    with pytest.raises(InvalidEvent) as info:
        parse_request(BATCH, {}, body, LIMITS)
    assert info.value.index == 2
    assert info.value.attribute == "id"
    assert info.value.detail.startswith("batch entry 2:")
    assert info.value.problem()["index"] == 2


def test_batch_entry_not_object() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_batch(orjson.dumps([event(), "nope"]))
    assert info.value.index == 1


def test_batch_empty_rejected() -> None:
    with pytest.raises(InvalidEvent, match="empty"):
        parse_request(BATCH, {}, b"[]", LIMITS)


@pytest.mark.parametrize("body", [b"{}", orjson.dumps(event()), b"null", b"[", b"x"])
def test_batch_not_array(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_request(BATCH, {}, body, LIMITS)


def test_batch_over_event_count() -> None:
    body = orjson.dumps([event(id=str(i)) for i in range(4)])
    with pytest.raises(TooLarge) as info:
        parse_request(BATCH, {}, body, Limits(max_batch_events=3))
    assert info.value.status == 413
    assert info.value.extra["limit"] == 3
    assert info.value.extra["size"] == 4


# --- size limits -----------------------------------------------------------------------


def test_request_body_over_limit_checked_before_parsing() -> None:
    with pytest.raises(TooLarge) as info:
        parse_request(STRUCTURED, {}, b"x" * 101, Limits(max_request_bytes=100))
    assert info.value.extra == {"limit": 100, "size": 101}


def test_single_event_over_limit() -> None:
    limits = Limits(max_event_bytes=500)
    small = orjson.dumps(event(data="x" * 100))
    assert parse_request(STRUCTURED, {}, small, limits)[0]
    with pytest.raises(TooLarge) as info:
        parse_request(STRUCTURED, {}, orjson.dumps(event(data="x" * 600)), limits)
    assert info.value.extra["limit"] == 500
    assert info.value.extra["size"] > 500


def test_batch_event_over_limit_names_index() -> None:
    limits = Limits(max_event_bytes=500)
    body = orjson.dumps([event(), event(id="2", data="x" * 600)])
    with pytest.raises(TooLarge) as info:
        parse_request(BATCH, {}, body, limits)
    assert info.value.extra["index"] == 1


def test_binary_event_over_limit() -> None:
    with pytest.raises(TooLarge):
        parse_request("text/plain", binary_headers(), b"y" * 600, Limits(max_event_bytes=500))


# --- content type selection ------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    [
        "application/cloudevents+avro",
        "application/cloudevents+protobuf; charset=utf-8",
        "application/cloudevents-batch+avro",
        "application/cloudevents",
    ],
)
def test_unknown_cloudevents_format(ctype: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        parse_request(ctype, binary_headers(), orjson.dumps(event()), LIMITS)
    assert info.value.status == 415


def test_mode_from_content_type_only() -> None:
    # A structured-looking body with application/json is binary mode: the JSON is data.
    body = orjson.dumps(event())
    events, _ = parse_request("application/json", binary_headers(), body, LIMITS)
    assert events[0]["id"] == "evt-1"
    assert events[0]["source"] == "//ci/builds"
    assert events[0]["data"] == event()
    # ... and without ce- headers that is an error naming the missing header.
    with pytest.raises(InvalidEvent) as info:
        parse_request("application/json", {}, body, LIMITS)
    assert info.value.attribute == "specversion"
    assert "ce-specversion" in info.value.detail


# --- binary mode -----------------------------------------------------------------------


def test_binary_json_data() -> None:
    headers = binary_headers(subject="build-42", time="2024-05-01T12:00:00Z", attempt="3")
    headers["Content-Type"] = "application/json; charset=utf-8"
    events, is_batch = parse_request(headers["Content-Type"], headers, b'{"ok": true}', LIMITS)
    assert not is_batch
    got = events[0]
    assert got["datacontenttype"] == "application/json; charset=utf-8"
    assert got["data"] == {"ok": True}
    assert got["subject"] == "build-42"
    assert got["attempt"] == "3"  # headers carry no type: extensions stay strings
    assert parse_binary(headers, b'{"ok": true}') == got


def test_binary_headers_case_insensitive() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "1",
        "ce-SOURCE": "/s",
        "Ce-Type": "t",
        "CONTENT-TYPE": "text/plain",
    }
    got = parse_binary(headers, b"hello")
    assert got["id"] == "1"
    assert got["data"] == "hello"
    assert got["datacontenttype"] == "text/plain"


def test_binary_plus_json_and_invalid_json() -> None:
    got = parse_request("application/vnd.api+json", binary_headers(), b"[1,2]", LIMITS)[0][0]
    assert got["data"] == [1, 2]
    with pytest.raises(InvalidEvent) as info:
        parse_request("application/json", binary_headers(), b"{not json", LIMITS)
    assert info.value.attribute == "data"


def test_binary_text_data() -> None:
    got = parse_request("text/plain; charset=utf-8", binary_headers(), "ünï".encode(), LIMITS)
    assert got[0][0]["data"] == "ünï"
    # Not UTF-8 (or another charset): kept as bytes, losslessly.
    raw = "ünï".encode("latin-1")
    got = parse_request("text/plain; charset=iso-8859-1", binary_headers(), raw, LIMITS)
    assert base64.b64decode(got[0][0]["data_base64"]) == raw
    got = parse_request("text/plain", binary_headers(), b"\xff\xfe", LIMITS)
    assert base64.b64decode(got[0][0]["data_base64"]) == b"\xff\xfe"


def test_binary_other_content_type_is_base64() -> None:
    got = parse_request("application/octet-stream", binary_headers(), b"\x00\x01", LIMITS)[0][0]
    assert got["datacontenttype"] == "application/octet-stream"
    assert got["data_base64"] == "AAE="
    assert "data" not in got


def test_binary_without_content_type() -> None:
    got = parse_request(None, binary_headers(), b"disk full", LIMITS)[0][0]
    assert "datacontenttype" not in got
    assert got["data"] == "disk full"
    got = parse_request(None, binary_headers(), b"\xc3\x28", LIMITS)[0][0]
    assert "datacontenttype" not in got
    assert base64.b64decode(got["data_base64"]) == b"\xc3\x28"


@pytest.mark.parametrize("ctype", [None, "application/json", "text/plain"])
def test_binary_empty_body_has_no_data(ctype: str | None) -> None:
    got = parse_request(ctype, binary_headers(), b"", LIMITS)[0][0]
    assert "data" not in got
    assert "data_base64" not in got


def test_binary_invalid_content_type() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_request("garbage", binary_headers(), b"x", LIMITS)
    assert info.value.attribute == "datacontenttype"


def test_binary_rejects_ce_datacontenttype_header() -> None:
    headers = binary_headers(datacontenttype="application/json")
    with pytest.raises(InvalidEvent) as info:
        parse_request("application/json", headers, b"{}", LIMITS)
    assert info.value.attribute == "datacontenttype"


@pytest.mark.parametrize("name", ["data", "data_base64"])
def test_binary_rejects_data_headers(name: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_binary(binary_headers(**{name: "AAEC"}), b"")
    assert info.value.attribute == name


def test_binary_rejects_duplicate_header() -> None:
    headers = binary_headers()
    headers["CE-ID"] = "another"
    with pytest.raises(InvalidEvent, match="more than once") as info:
        parse_binary(headers, b"")
    assert info.value.attribute == "id"


def test_binary_attribute_rules_apply() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_binary(binary_headers(specversion="0.3"), b"")
    assert info.value.attribute == "specversion"
    with pytest.raises(InvalidEvent) as info:
        parse_binary(binary_headers(time="not a time"), b"")
    assert info.value.attribute == "time"
    with pytest.raises(InvalidEvent) as info:
        parse_binary(binary_headers(**{"a" * 21: "v"}), b"")
    assert info.value.attribute == "a" * 21
    with pytest.raises(InvalidEvent) as info:
        parse_binary({**binary_headers(), "ce-my_ext": "v"}, b"")
    assert info.value.attribute == "my_ext"


def test_binary_percent_decoding() -> None:
    headers = binary_headers(subject="Euro%20%e2%82%AC%20%F0%9F%98%80", note="%41bc")
    got = parse_binary(headers, b"")
    assert got["subject"] == "Euro € 😀"
    assert got["note"] == "Abc"  # unnecessarily encoded characters are accepted


@pytest.mark.parametrize("value", ["%C0%A0", "%ED%A0%80", "%FF", "100%", "%4", "%G1", "%+1"])
def test_binary_bad_percent_encoding(value: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_binary(binary_headers(subject=value), b"")
    assert info.value.attribute == "subject"


def test_binary_decoded_control_character_rejected() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_binary(binary_headers(subject="a%0Ab"), b"")
    assert info.value.attribute == "subject"


def test_binary_quoted_header_value() -> None:
    got = parse_binary(binary_headers(subject='"hello \\"world\\" 100%25"'), b"")
    assert got["subject"] == 'hello "world" 100%'


# --- to_binary -------------------------------------------------------------------------


def test_to_binary_percent_encoding_round_trip() -> None:
    original = validate_event(
        event(
            subject='Euro € 😀 "quoted" 100% done',
            time="2024-05-01T12:00:00Z",
            note="plain-ascii_value:/?#[]@!$&'()*+,;=",
            datacontenttype="text/plain; charset=utf-8",
            data="body text",
        )
    )
    headers, body = to_binary(original)
    assert headers["ce-subject"] == (
        "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22quoted%22%20100%25%20done"
    )
    assert headers["ce-note"] == "plain-ascii_value:/?#[]@!$&'()*+,;="
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert all(
        v.isascii() and v.isprintable() and " " not in v
        for v in headers.values()
        if v != headers["content-type"]
    )
    assert body == b"body text"
    assert parse_binary(headers, body) == original


def test_to_binary_typed_extensions_become_canonical_strings() -> None:
    headers, _ = to_binary(validate_event(event(count=-5, flag=True, off=False)))
    assert headers["ce-count"] == "-5"
    assert headers["ce-flag"] == "true"
    assert headers["ce-off"] == "false"


def test_to_binary_json_data() -> None:
    headers, body = to_binary(validate_event(event(data={"a": 1})))
    # No datacontenttype in the JSON format means application/json.
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"a": 1}
    headers, body = to_binary(validate_event(event(data="I'm just a string")))
    assert body == b'"I\'m just a string"'
    assert parse_binary(headers, body)["data"] == "I'm just a string"


def test_to_binary_base64_and_no_data() -> None:
    ev = validate_event(event(datacontenttype="image/png", data_base64="AAEC"))
    headers, body = to_binary(ev)
    assert body == b"\x00\x01\x02"
    assert headers["content-type"] == "image/png"
    assert parse_binary(headers, body) == ev
    headers, body = to_binary(validate_event(event()))
    assert body == b""
    assert "content-type" not in headers
    assert "ce-data" not in headers


# --- new_event -------------------------------------------------------------------------


def test_new_event_defaults() -> None:
    ev = new_event(type="opsbus.todo.claimed", source="opsbus/todos", data={"item": 7})
    assert ev["specversion"] == "1.0"
    assert len(ev["id"]) == 36
    assert ev["time"].endswith("Z")
    assert ev["datacontenttype"] == "application/json"
    assert ev["data"] == {"item": 7}
    assert validate_event(ev) == ev
    assert new_event(type="t", source="s")["id"] != new_event(type="t", source="s")["id"]


def test_new_event_extensions_and_fixed_fields() -> None:
    ev = new_event(
        type="opsbus.action.failed",
        source="opsbus/actions",
        subject="restart-web",
        id="fixed",
        time="2024-05-01T12:00:00Z",
        causationid="abc",
        correlationid=None,
    )
    assert ev["id"] == "fixed"
    assert ev["time"] == "2024-05-01T12:00:00Z"
    assert ev["causationid"] == "abc"
    assert "correlationid" not in ev
    assert "data" not in ev
    assert "datacontenttype" not in ev


def test_new_event_bytes_data_and_validation() -> None:
    ev = new_event(type="t", source="s", data=b"\x00", datacontenttype="application/octet-stream")
    assert ev["data_base64"] == "AA=="
    with pytest.raises(InvalidEvent) as info:
        new_event(type="t", source="s", BadExt="x")
    assert info.value.attribute == "BadExt"
    with pytest.raises(InvalidEvent) as info:
        new_event(type="t", source="s", data={1, 2})
    assert info.value.attribute == "data"


# --- robustness ------------------------------------------------------------------------

_CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            STRUCTURED,
            BATCH,
            "application/json",
            "text/plain; charset=utf-8",
            "application/octet-stream",
            "application/cloudevents+xml",
            "",
            "garbage",
        ]
    ),
    st.text(max_size=40),
)
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
_EVENT_LIKE = st.dictionaries(
    st.sampled_from(
        [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "dataschema",
            "data",
            "data_base64",
            "ext",
            "Bad_Name",
        ]
    ),
    st.one_of(st.sampled_from(["1.0", "x", "2024-05-01T12:00:00Z", "AAEC"]), _JSON_VALUES),
)
_BODIES = st.one_of(
    st.binary(max_size=200),
    _JSON_VALUES.map(orjson.dumps),
    _EVENT_LIKE.map(orjson.dumps),
    st.lists(_EVENT_LIKE, max_size=3).map(orjson.dumps),
)
_HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "ce-specversion",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-time",
            "CE-ID",
            "ce-data",
            "ce-datacontenttype",
            "ce-",
            "ce-Ext",
            "content-type",
        ]
    ),
    st.text(max_size=12).map(lambda s: "ce-" + s),
)
_HEADERS = st.dictionaries(
    _HEADER_NAMES,
    st.one_of(
        st.sampled_from(["1.0", "x", "%", "%C0%A0", '"q\\"', "2024-05-01T12:00:00Z"]),
        st.text(max_size=20),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(content_type=_CONTENT_TYPES, headers=_HEADERS, body=_BODIES)
def test_parse_request_raises_only_opsbus_errors(
    content_type: str | None, headers: dict[str, str], body: bytes
) -> None:
    try:
        events, _ = parse_request(content_type, headers, body, Limits(max_event_bytes=2048))
    except OpsbusError:
        return
    for ev in events:
        # Whatever is accepted is a normalized, re-validatable, serializable event.
        assert validate_event(ev) == ev
        assert orjson.loads(dumps(ev)) == ev
        to_binary(ev)


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=30),
    ext=st.text(max_size=30),
)
def test_to_binary_round_trip_property(subject: str, ext: str) -> None:
    try:
        ev = validate_event(event(subject=subject, ext=ext, datacontenttype="text/plain"))
    except InvalidEvent:
        return  # strings the type system disallows
    headers, body = to_binary(ev)
    assert all(v.isascii() for v in headers.values())
    assert parse_binary(headers, body) == ev


def test_json_event_is_the_normalized_event_new_event_builds():
    from broker.events import json_event, new_event

    data = {"item": {"id": 7, "title": "disk ☃ full", "resolution": None}, "note": None}
    fast = json_event(type="opsbus.todo.updated", source="opsbus/todos", subject="7",
                      time="2026-11-25T10:00:00.123456Z", data=data, todoid=7, zeta="z")
    built = new_event(type="opsbus.todo.updated", source="opsbus/todos", subject="7",
                      time="2026-11-25T10:00:00.123456Z", data=data, todoid=7, zeta="z",
                      id=fast["id"])
    assert fast == built and list(fast) == list(built)
    assert validate_event(fast) == fast


# -- the fast path for plain events agrees with the full validation ------------------------

_VALUES: dict[str, list[object]] = {
    "specversion": ["1.0", "1.0 ", "0.3", 1.0, "", None],
    "id": ["evt-1", "", " ", "a\u0085b", "tab\there", "\u2028", 7, None, "\ufdd0"],
    "source": ["//alertmanager/prod", "10.0.0.1:9090", "a b", "%zz", "%41", "", 3, None],
    "type": ["io.example.x", "", "\x00", "\u00a0nbsp", ["x"], None],
    "subject": ["db-1", "", "\x7f", "\u200bzero-width", {}, None],
    "time": ["2026-11-25T10:00:00Z", "2026-02-30T10:00:00Z", "2026-11-25 10:00:00+01:00",
             "2026-11-25T10:00:00", "0000-01-01T00:00:00Z", "", 5, None],
    "datacontenttype": ["application/json", "text/plain", "application/octet-stream",
                        "application/cloudevents+json; charset=utf-8", "not a type", "", 1,
                        None],
    "dataschema": ["https://example.com/s.json", "relative/path", "", True, None],
    "data": [{"a": 1}, "text", None, [1, 2], 3, True],
}


def _agree(obj: dict[str, Any]) -> None:
    from broker.events import _validate_full

    try:
        expected: object = _validate_full(dict(obj))
    except InvalidEvent as err:
        expected = ("error", str(err))
    try:
        got: object = validate_event(dict(obj))
    except InvalidEvent as err:
        got = ("error", str(err))
    assert got == expected
    if isinstance(got, dict):
        assert list(got) == list(expected)  # type: ignore[call-overload]


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in _VALUES.items() for v in vs])
def test_plain_event_fast_path_checks_each_attribute(name: str, value: object) -> None:
    """Each value in an otherwise plain event (every member present, in normalized
    order, the values cached as valid by an earlier event)."""
    plain = {n: vs[0] for n, vs in _VALUES.items()}
    validate_event(dict(plain))  # the caches now hold its source, schema and type
    _agree({**plain, name: value})
    _agree({n: v for n, v in {**plain, name: value}.items() if n != "datacontenttype"})


@pytest.mark.parametrize("media", _VALUES["datacontenttype"])
@pytest.mark.parametrize("data", _VALUES["data"])
def test_plain_event_fast_path_checks_data_against_its_type(media: object, data: object
                                                            ) -> None:
    plain = {n: vs[0] for n, vs in _VALUES.items()}
    with contextlib.suppress(InvalidEvent):  # caches a valid type
        validate_event({**plain, "datacontenttype": media, "data": "x"})
    _agree({**plain, "datacontenttype": media, "data": data})


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_plain_event_fast_path_agrees_with_full_validation(data: st.DataObject) -> None:
    """Whatever the fast path accepts, the full validation accepts the same way; what it
    refuses goes to the full validation (same answer or same error either way)."""
    obj: dict[str, Any] = {}
    for name, values in _VALUES.items():
        if name in ("specversion", "id", "source", "type") or data.draw(st.booleans()):
            obj[name] = data.draw(st.sampled_from(values))
    if data.draw(st.booleans()):  # out of normalized order
        obj = dict(reversed(list(obj.items())))
    _agree(obj)


def _parsed_or_error(body: bytes, limits: Limits) -> object:
    from broker.events import parse_request_encoded

    try:
        events, encoded, _ = parse_request_encoded(BATCH, {}, body, limits)
    except OpsbusError as err:
        return ("error", type(err).__name__, err.problem())
    return [list(e.items()) for e in events], encoded


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_batch_fast_path_agrees_with_event_by_event_parsing(data: st.DataObject) -> None:
    """A batch is proven valid attribute by attribute over all its events
    (`_plain_batch`) and encoded in one loop (`_encoded_flat`); whatever that accepts,
    event by event parsing accepts the same way (same events, member order, bytes), and
    what it declines gets the same answer or error, naming the same event."""
    from unittest import mock

    plain = {n: vs[0] for n, vs in _VALUES.items()}
    validate_event(dict(plain))  # the caches now hold its source, schema and type
    names = [n for n in _VALUES
             if n in ("specversion", "id", "source", "type") or data.draw(st.booleans())]
    datas = [*_VALUES["data"], {"a": {"b": 1}}, {"a": [1]}, {"big": "x" * 300}]
    batch: list[dict[str, Any]] = []
    for i in range(data.draw(st.integers(1, 4))):
        obj = {n: plain[n] for n in names}
        obj["id"] = f"evt-{i}"
        for name in names:
            if data.draw(st.integers(0, 3)) == 0:
                obj[name] = data.draw(st.sampled_from(datas if name == "data"
                                                      else _VALUES[name]))
        if data.draw(st.integers(0, 7)) == 0:  # out of normalized order
            obj = dict(reversed(list(obj.items())))
        batch.append(obj)
    limits = Limits(max_event_bytes=data.draw(st.sampled_from([LIMITS.max_event_bytes, 300])))
    body = orjson.dumps(batch)
    got = _parsed_or_error(body, limits)
    with mock.patch("broker.events._plain_batch", return_value=False):
        expected = _parsed_or_error(body, limits)
    assert got == expected


@pytest.mark.parametrize("inner", [{}, []])
def test_batch_of_one_member_list_keeps_the_depth_bound(inner: object) -> None:
    """Events of one member list whose data is an object are encoded in one loop only
    when no data value is itself an object or array: data nested past the bound is
    still refused, naming its entry."""
    deep: object = inner
    for _ in range(240):
        deep = [deep]
    batch = [event(id="a", data={"n": 1}), event(id="b", data={"n": deep})]
    with pytest.raises(InvalidEvent, match="levels deep") as caught:
        parse_request(BATCH, {}, orjson.dumps(batch), LIMITS)
    assert caught.value.index == 1 and caught.value.attribute == "data"


@pytest.mark.parametrize("inner", [[], {"n": []}])
def test_structured_event_in_its_own_encoding_keeps_the_depth_bound(inner: object) -> None:
    """A structured body that is its event's own compact encoding is taken in a few
    steps only when its data holds no object or array: data nested past the bound is
    still refused."""
    deep: object = inner
    for _ in range(240):
        deep = [deep]
    body = orjson.dumps(event(data={"n": deep}))
    assert orjson.dumps(orjson.loads(body)) == body
    with pytest.raises(InvalidEvent, match="levels deep") as caught:
        parse_request(STRUCTURED, {}, body, LIMITS)
    assert caught.value.attribute == "data"


@pytest.mark.parametrize("body", [
    b'{"specversion":"1.0","id":"a","source":"s","type":"t","id":"b"}',
    b'[{"specversion":"1.0","id":"a","source":"s","type":"t"},'
    b'{"specversion":"1.0","id":"b","source":"s","type":"t","type":"u"}]',
    b' {"specversion":"1.0","id":"a","source":"s","type":"t","type":"t"}\n',
])
def test_repeated_member_in_compact_body_refused(body: bytes) -> None:
    """A compact body is compared with the events' own encoding to skip the repeat
    check; a member given twice never matches it."""
    ctype = BATCH if body.startswith(b"[") else STRUCTURED
    with pytest.raises(InvalidEvent, match="more than once"):
        parse_request(ctype, {}, body, LIMITS)


def test_repeated_member_reported_before_an_invalid_event() -> None:
    body = (b'[{"specversion":"1.0","id":"a","source":"s","type":""},'
            b'{"specversion":"1.0","id":"b","source":"s","type":"t","id":"c"}]')
    with pytest.raises(InvalidEvent, match="more than once") as caught:
        parse_request(BATCH, {}, body, LIMITS)
    assert caught.value.index == 1
