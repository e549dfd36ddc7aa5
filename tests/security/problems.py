"""Plain HTTP calls for the security suites: one request on its own connection, the answer
decoded, and a check that an error is an RFC 9457 problem naming what was wrong."""

from __future__ import annotations

import http.client
import json
from typing import Any

from tests.broker_process import AUTH, BrokerProcess


def call(broker: BrokerProcess, method: str, path: str, body: Any = None, *,
         headers: dict[str, str] | None = None, raw: bytes | None = None
         ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request; (status, decoded JSON body, headers). Errors must be problems."""
    conn = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data,
                 headers={"Content-Type": "application/json", **AUTH, **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    if resp.status >= 400:
        assert resp.getheader("Content-Type", "").startswith("application/problem+json"), (
            resp.status, payload[:300])
    doc = json.loads(payload) if payload else {}
    return resp.status, doc, {k.lower(): v for k, v in resp.getheaders()}


def assert_problem(status: int, doc: dict[str, Any], expected: int, *words: str,
                   **members: Any) -> None:
    """`status` is `expected`, the detail holds each word, and each member has its value."""
    assert status == expected, doc
    assert doc["status"] == expected and doc["detail"], doc
    for word in words:
        assert word in doc["detail"], doc
    for name, value in members.items():
        assert doc.get(name) == value, (name, doc)
