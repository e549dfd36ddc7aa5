"""The GitHub source: signed deliveries in, `com.github.<event>.<action>` events out."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
import uuid
from collections.abc import Iterator

import orjson
import pytest

from plugins.github import signature
from tests.broker_process import BrokerProcess
from tests.plugin_helpers import events_of, post_source

SECRET = "It's a Secret to Everybody"

# A pull_request "opened" delivery in GitHub's format (fields trimmed to the usual ones).
PULL_REQUEST_OPENED = {
    "action": "opened",
    "number": 1482,
    "pull_request": {
        "url": "https://api.github.com/repos/acme/checkout-api/pulls/1482",
        "id": 1971820345,
        "html_url": "https://github.com/acme/checkout-api/pull/1482",
        "number": 1482,
        "state": "open",
        "locked": False,
        "title": "Retry payment-provider timeouts with jittered backoff",
        "user": {"login": "tsilva", "id": 5120443, "type": "User"},
        "body": "Retries idempotent calls up to 3 times with full-jitter backoff.",
        "created_at": "2026-11-25T08:52:37Z",
        "updated_at": "2026-11-25T08:52:37Z",
        "closed_at": None,
        "merged_at": None,
        "draft": False,
        "head": {"label": "acme:tsilva/provider-retries", "ref": "tsilva/provider-retries",
                 "sha": "7436ce9a344aee44a0cf79195173570333f636c0"},
        "base": {"label": "acme:main", "ref": "main",
                 "sha": "42f28bcb0582e11851401c9cba0e995a194ed86a"},
        "merged": False,
        "commits": 3, "additions": 214, "deletions": 37, "changed_files": 6,
    },
    "repository": {"id": 620114870, "name": "checkout-api", "full_name": "acme/checkout-api",
                   "private": True, "owner": {"login": "acme", "type": "Organization"},
                   "html_url": "https://github.com/acme/checkout-api",
                   "default_branch": "main"},
    "organization": {"login": "acme", "id": 91234011},
    "sender": {"login": "tsilva", "id": 5120443, "type": "User"},
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("github")
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent("""
        [plugins.github]
        secret_env = "GITHUB_WEBHOOK_SECRET"
    """))
    proc = BrokerProcess(root / "data", config=config, args=["--durability", "off"],
                         env={"GITHUB_WEBHOOK_SECRET": SECRET}).start()
    try:
        yield proc
    finally:
        proc.stop()


def delivery_headers(body: bytes, event: str = "pull_request", delivery: str | None = None,
                     sign: str | None = None) -> dict[str, str]:
    return {
        "User-Agent": "GitHub-Hookshot/8d8ab3c", "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-GitHub-Hook-ID": "449312270",
        "X-Hub-Signature-256": sign if sign is not None else signature(SECRET, body),
    }


def test_signature_matches_githubs_documented_example():
    # The test vector from GitHub's "Validating webhook deliveries".
    assert signature(SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")


async def test_signed_pull_request_delivery_becomes_an_event(broker, http):
    body = orjson.dumps(PULL_REQUEST_OPENED)
    delivery = str(uuid.uuid4())
    status, answer = await post_source(http, broker, "github", body,
                                       delivery_headers(body, delivery=delivery))
    assert status == 200, answer
    assert answer["events"][0]["id"] == delivery
    event = next(e for e in await events_of(http, broker, source="github.com/acme/checkout-api")
                 if e["id"] == delivery)
    assert event["type"] == "com.github.pull_request.opened"
    assert event["subject"] == "pull/1482"
    assert event["time"] == "2026-11-25T08:52:37Z"
    assert event["data"]["pull_request"]["title"].startswith("Retry payment-provider")
    again = await post_source(http, broker, "github", body,
                              delivery_headers(body, delivery=delivery))
    assert again[1]["events"][0]["duplicate"] is True  # a redelivery


@pytest.mark.parametrize("sign", [
    "", "sha256=" + "0" * 64,
    "sha256=" + hmac.new(b"wrong secret", b"x", hashlib.sha256).hexdigest(),
])
async def test_missing_or_bad_signature_is_401(broker, http, sign):
    body = orjson.dumps(PULL_REQUEST_OPENED)
    delivery = str(uuid.uuid4())
    status, problem = await post_source(http, broker, "github", body,
                                        delivery_headers(body, delivery=delivery, sign=sign))
    assert status == 401
    assert problem["plugin"] == "github" and "X-Hub-Signature-256" in problem["detail"]
    assert not [e for e in await events_of(http, broker) if e["id"] == delivery]


async def test_push_and_ping_deliveries(broker, http):
    push = {"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40,
            "repository": {"full_name": "acme/orders-service"},
            "head_commit": {"id": "b" * 40, "timestamp": "2026-11-25T16:20:01+01:00",
                            "message": "Fix ledger URL"},
            "pusher": {"name": "mnovak"}, "sender": {"login": "mnovak"}}
    body = orjson.dumps(push)
    status, answer = await post_source(http, broker, "github", body,
                                       delivery_headers(body, event="push"))
    assert status == 200, answer
    ping = orjson.dumps({"zen": "Keep it logically awesome.", "hook_id": 449312270,
                         "organization": {"login": "acme"}})
    status, answer = await post_source(http, broker, "github", ping,
                                       delivery_headers(ping, event="ping"))
    assert status == 200, answer
    stored = {e["type"]: e for e in await events_of(http, broker)}
    assert stored["com.github.push"]["subject"] == "refs/heads/main"
    assert stored["com.github.push"]["source"] == "github.com/acme/orders-service"
    assert stored["com.github.ping"]["source"] == "github.com/acme"
