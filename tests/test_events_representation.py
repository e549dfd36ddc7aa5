"""One stored form for the same content in any content mode; header bytes named when bad."""

from __future__ import annotations

import asyncio
import base64

import orjson

from broker.events import Limits, parse_request
from tests.conftest import make_event

XML = "<alert severity=\"critical\"><host>db-1</host><note>überfüllt</note></alert>"
CE = {"ce-specversion": "1.0", "ce-id": "x-1", "ce-source": "tests/wire", "ce-type": "test.x"}


def binary(content_type: str, body: bytes) -> dict:
    (event,), _ = parse_request(content_type, {**CE, "Content-Type": content_type}, body,
                                Limits())
    return event


def structured(**members) -> dict:
    body = orjson.dumps(make_event(id="x-1", source="tests/wire", type="test.x",
                                   time=..., **members))
    (event,), _ = parse_request("application/cloudevents+json", {}, body, Limits())
    return event


def test_xml_is_a_string_in_both_modes():
    for ctype in ("application/xml", "text/xml; charset=utf-8", "application/atom+xml"):
        sent = binary(ctype, XML.encode())
        assert sent["data"] == XML and "data_base64" not in sent
        assert structured(datacontenttype=ctype, data=XML) == sent
        assert structured(datacontenttype=ctype, data=...,
                          data_base64=base64.b64encode(XML.encode()).decode()) == sent


def test_bytes_are_base64_in_both_modes():
    raw = bytes(range(256))
    sent = binary("application/octet-stream", raw)
    assert base64.b64decode(sent["data_base64"]) == raw
    assert structured(datacontenttype="application/octet-stream", data=...,
                      data_base64=sent["data_base64"]) == sent
    # A structured producer that put text in `data` for a binary type: the same bytes.
    as_text = structured(datacontenttype="application/octet-stream", data="plain")
    assert as_text == binary("application/octet-stream", b"plain")


def test_text_in_another_charset_stays_bytes():
    latin1 = XML.encode("latin-1")
    sent = binary("application/xml; charset=iso-8859-1", latin1)
    assert base64.b64decode(sent["data_base64"]) == latin1


async def test_latin1_header_byte_is_named(broker):
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    body = b'{"n": 1}'
    writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"ce-specversion: 1.0\r\nce-id: latin-1\r\nce-source: tests/wire\r\n"
                 b"ce-type: test.x\r\nce-subject: Gr\xfc\xdfe\r\nConnection: close\r\n"
                 + (f"Authorization: Bearer {getattr(broker, 'token', None) or 'x'}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    problem = orjson.loads(payload)
    assert problem["attribute"] == "subject"
    assert "byte 0xFC at position 2" in problem["detail"] and "U+DC" not in problem["detail"]
