"""Sources and mappings on real payloads: GitHub's examples for every kind, Alertmanager,
Grafana, PagerDuty; redeliveries, forged signatures and the size limit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from plugins.github import SUBJECTS, subject_of
from tests.broker_process import ROOT, BrokerProcess
from tests.plugin_helpers import events_of, post_source

PAYLOADS = Path(__file__).parent / "payloads"
GITHUB = sorted((PAYLOADS / "github").glob("*.json"))
SECRETS = {"GITHUB_WEBHOOK_SECRET": "gh-secret", "PAGERDUTY_WEBHOOK_SECRET": "pd-secret",
           "GRAFANA_WEBHOOK_SECRET": "gf-secret"}
MAX_EVENT_BYTES = 96 * 1024


def payload(path: str) -> bytes:
    return (PAYLOADS / path).read_bytes()


def hex_hmac(secret: str, content: bytes) -> str:
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("payloads")
    config = root / "opsbus.toml"
    shipped = (ROOT / "sample_events" / "webhook-mappings.toml").read_text()
    config.write_text(shipped + """
[plugins.github]
secret_env = "GITHUB_WEBHOOK_SECRET"

[plugins.grafana]
verify = { scheme = "grafana", secret_env = "GRAFANA_WEBHOOK_SECRET" }
""")
    proc = BrokerProcess(root / "data", config=config, env=SECRETS, args=[
        "--durability", "off", "--max-event-bytes", str(MAX_EVENT_BYTES)]).start()
    try:
        yield proc
    finally:
        proc.stop()


def github_headers(kind: str, body: bytes, delivery: str, sign: str | None = None
                   ) -> dict[str, str]:
    return {"X-GitHub-Event": kind, "X-GitHub-Delivery": delivery,
            "User-Agent": "GitHub-Hookshot/8d8ab3c",
            "X-Hub-Signature-256": sign if sign is not None
            else "sha256=" + hex_hmac(SECRETS["GITHUB_WEBHOOK_SECRET"], body)}


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.name.split(".")[0])
async def test_every_github_kind_maps_and_redelivers_identically(broker, http, path):
    kind = path.name.split(".")[0]
    body = path.read_bytes()
    delivery = str(uuid.uuid4())
    status, answer = await post_source(http, broker, "github", body,
                                       github_headers(kind, body, delivery))
    assert status == 200, answer
    assert answer["events"][0]["duplicate"] is False
    # A redelivery (GitHub's "Redeliver" button: same GUID, same body) is the same event.
    status, again = await post_source(http, broker, "github", body,
                                      github_headers(kind, body, delivery))
    assert status == 200 and again["events"][0]["duplicate"] is True
    assert "conflict" not in again["events"][0], again
    (event,) = await events_of(http, broker, id=delivery)
    assert event["type"].startswith(f"com.github.{kind}")
    assert event["subject"] == subject_of(kind, orjson.loads(body))
    assert event["data"] == orjson.loads(body)


def test_every_example_kind_has_a_documented_subject():
    assert {p.name.split(".")[0] for p in GITHUB} <= set(SUBJECTS)
    subjects = {p.name.split(".")[0]: subject_of(p.name.split(".")[0], orjson.loads(
        p.read_bytes())) for p in GITHUB}
    literal = {k for k, templates in SUBJECTS.items() if "{" not in templates[0]}
    assert all(subjects[k] != k for k in subjects if k not in literal)
    assert subjects["workflow_job"] == "runs/2202229078/jobs/289782451"
    assert subjects["check_suite"] == "check-suites/118578147"
    assert subjects["deployment"] == "deployments/145988746"
    assert subjects["pull_request_review"] == "pull/2"
    assert subjects["create"] == "refs/tags/simple-tag"


@pytest.mark.parametrize("sign", ["", "sha256=" + "0" * 64, "sha1=abc",
                                  "sha256=" + hex_hmac("wrong", b"{}")])
async def test_forged_github_signatures_are_refused(broker, http, sign):
    body = payload("github/" + GITHUB[0].name)
    delivery = str(uuid.uuid4())
    status, problem = await post_source(http, broker, "github", body,
                                        github_headers("push", body, delivery, sign))
    assert status == 401 and "X-Hub-Signature-256" in problem["detail"]
    assert await events_of(http, broker, id=delivery) == []


async def test_a_source_event_over_the_size_limit_is_refused(broker, http):
    push = orjson.loads(payload("github/push.1.payload.json"))
    push["commits"] = [{"id": f"{n:040d}", "message": "x" * 1000} for n in range(120)]
    body = orjson.dumps(push)
    assert len(body) > MAX_EVENT_BYTES
    delivery = str(uuid.uuid4())
    status, problem = await post_source(http, broker, "github", body,
                                        github_headers("push", body, delivery))
    assert status == 413, problem
    assert problem["limit"] == MAX_EVENT_BYTES and problem["plugin"] == "github"
    assert await events_of(http, broker, id=delivery) == []


async def test_alertmanager_payloads(broker, http):
    status, answer = await post_source(http, broker, "alertmanager",
                                       payload("alertmanager/firing.json"))
    assert status == 200 and len(answer["events"]) == 2
    status, answer = await post_source(http, broker, "alertmanager",
                                       payload("alertmanager/resolved.json"))
    assert status == 200
    (resolved,) = await events_of(http, broker, type="prometheus.alert.resolved")
    assert resolved["subject"] == "1a30ba71cca2921f"


def grafana_headers(body: bytes, secret: str = SECRETS["GRAFANA_WEBHOOK_SECRET"]
                    ) -> dict[str, str]:
    return {"X-Grafana-Alerting-Signature": hex_hmac(secret, body)}


async def test_grafana_source_splits_alerts_and_tells_repeats_apart(broker, http):
    body = payload("grafana/firing.json")
    status, answer = await post_source(http, broker, "grafana", body, grafana_headers(body))
    assert status == 200 and len(answer["events"]) == 2, answer
    again = await post_source(http, broker, "grafana", body, grafana_headers(body))
    assert [e["duplicate"] for e in again[1]["events"]] == [True, True]
    repeat = payload("grafana/repeat-new-value.json")
    status, answer = await post_source(http, broker, "grafana", repeat, grafana_headers(repeat))
    assert status == 200 and answer["events"][0]["duplicate"] is False
    resolved = payload("grafana/resolved.json")
    status, answer = await post_source(http, broker, "grafana", resolved,
                                       grafana_headers(resolved))
    assert status == 200
    events = await events_of(http, broker, subject="57c6d9296de2ad39")
    grafana = [e for e in events if e["source"] == "grafana/grafana.example.org"]
    assert [e["type"] for e in grafana] == ["grafana.alert.firing"] * 2 + [
        "grafana.alert.resolved"]
    assert grafana[0]["data"]["values"] == {"B": 912.4, "C": 1}
    assert grafana[1]["data"]["values"] == {"B": 1034.0, "C": 1}
    assert {e["dedupkey"] for e in grafana} == {"57c6d9296de2ad39"}
    assert grafana[2]["time"] == "2026-11-25T10:02:00Z"


async def test_grafana_forged_signature_is_refused(broker, http):
    body = payload("grafana/firing.json")
    status, problem = await post_source(http, broker, "grafana", body,
                                        grafana_headers(body, "guess"))
    assert status == 401 and "X-Grafana-Alerting-Signature" in problem["detail"]
    status, problem = await post_source(http, broker, "grafana", body)
    assert status == 401 and "missing" in problem["detail"]


def pagerduty_headers(body: bytes, *signatures: str) -> dict[str, str]:
    good = "v1=" + hex_hmac(SECRETS["PAGERDUTY_WEBHOOK_SECRET"], body)
    return {"X-PagerDuty-Signature": ",".join(signatures or (good,)),
            "X-Webhook-Id": str(uuid.uuid4())}


async def test_pagerduty_mapping(broker, http):
    for name in ("incident.triggered", "incident.acknowledged", "incident.resolved"):
        body = payload(f"pagerduty/{name}.json")
        status, answer = await post_source(http, broker, "webhook/pagerduty", body,
                                           pagerduty_headers(body))
        assert status == 200, answer
    body = payload("pagerduty/incident.triggered.json")
    status, again = await post_source(http, broker, "webhook/pagerduty", body,
                                      pagerduty_headers(body))
    assert again["events"][0]["duplicate"] is True and "conflict" not in again["events"][0]
    events = await events_of(http, broker, source="pagerduty/checkout-api")
    assert [e["type"] for e in events] == ["pagerduty.incident.triggered",
                                           "pagerduty.incident.acknowledged",
                                           "pagerduty.incident.resolved"]
    assert {e["subject"] for e in events} == {"Q2LX4MBNB0J7SR"}
    assert {e["dedupkey"] for e in events} == {"checkout-latency-prod"}
    assert events[0]["time"] == "2026-11-25T09:41:12.201Z"


async def test_pagerduty_signatures(broker, http):
    body = payload("pagerduty/incident.resolved.json")
    status, problem = await post_source(http, broker, "webhook/pagerduty", body,
                                        pagerduty_headers(body, "v1=deadbeef"))
    assert status == 401 and "X-PagerDuty-Signature" in problem["detail"]
    status, problem = await post_source(http, broker, "webhook/pagerduty", body)
    assert status == 401 and "missing" in problem["detail"]
    # During a secret rotation PagerDuty sends two signatures: one matching is enough.
    good = "v1=" + hex_hmac(SECRETS["PAGERDUTY_WEBHOOK_SECRET"], body)
    status, answer = await post_source(http, broker, "webhook/pagerduty", body,
                                       pagerduty_headers(body, "v1=" + "a" * 64, good))
    assert status == 200, answer


async def test_grafana_mapping_splits_and_distinguishes_repeats(broker, http):
    firing, repeat = payload("grafana/firing.json"), payload("grafana/repeat-new-value.json")
    status, answer = await post_source(http, broker, "webhook/grafana", firing,
                                       grafana_headers(firing))
    assert status == 200 and len(answer["events"]) == 2, answer
    _, again = await post_source(http, broker, "webhook/grafana", firing,
                                 grafana_headers(firing))
    assert [e["duplicate"] for e in again["events"]] == [True, True]
    _, answer = await post_source(http, broker, "webhook/grafana", repeat,
                                  grafana_headers(repeat))
    assert answer["events"][0]["duplicate"] is False
    events = await events_of(http, broker, source="grafana/opsbus", subject="57c6d9296de2ad39")
    assert len(events) == 2 and events[0]["id"] != events[1]["id"]
    assert events[0]["id"].startswith("57c6d9296de2ad39-firing-2026-11-25T09:41:00Z-")
    assert events[0]["severity"] == "critical"
    status, problem = await post_source(http, broker, "webhook/grafana", firing,
                                        grafana_headers(firing, "nope"))
    assert status == 401 and "signature" in problem["detail"]


def test_shipped_mapping_examples_parse():
    import tomllib

    doc = tomllib.loads((ROOT / "sample_events" / "webhook-mappings.toml").read_text())
    assert set(doc["plugins"]["webhook"]["mappings"]) == {"pagerduty", "grafana"}


def standard_webhooks_key() -> tuple[str, bytes]:
    raw = b"opsbus-test-key-0123456789abcdef"
    return "whsec_" + base64.b64encode(raw).decode(), raw


def test_stripe_and_standard_webhooks_schemes():
    from broker.plugin_host.api import Reject, SourceRequest
    from plugins._signatures import scheme_of, verify

    body = b'{"id":"evt_1","type":"invoice.paid"}'
    now = 1_795_000_000

    def request(headers: dict[str, str]) -> SourceRequest:
        return SourceRequest("POST", "", headers, {}, body, {})

    stripe = scheme_of({"scheme": "stripe", "secret_env": "X"}, "t")
    sig = hex_hmac("whsec_stripe", f"{now}.".encode() + body)
    verify(stripe, request({"Stripe-Signature": f"t={now},v1={sig},v0=old"}), "whsec_stripe",
           now=lambda: now + 10)
    with pytest.raises(Reject, match="300s"):
        verify(stripe, request({"Stripe-Signature": f"t={now},v1={sig}"}), "whsec_stripe",
               now=lambda: now + 301)
    with pytest.raises(Reject, match="does not match"):
        verify(stripe, request({"Stripe-Signature": f"t={now + 1},v1={sig}"}), "whsec_stripe",
               now=lambda: now)

    # Standard Webhooks, signed by the reference library.
    from standardwebhooks import Webhook

    secret, _raw = standard_webhooks_key()
    stamp = __import__("datetime").datetime.fromtimestamp(now, __import__("datetime").UTC)
    signature = Webhook(secret).sign("msg_1", stamp, body.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
               "webhook-signature": f"v1,{'A' * 43}= {signature}"}
    scheme = scheme_of({"scheme": "standard-webhooks", "secret_env": "X"}, "t")
    verify(scheme, request(headers), secret, now=lambda: now)
    with pytest.raises(Reject):
        verify(scheme, request({**headers, "webhook-id": "msg_2"}), secret, now=lambda: now)
    with pytest.raises(Reject, match="timestamp"):
        verify(scheme, request({**headers, "webhook-timestamp": "soon"}), secret,
               now=lambda: now)
    assert time.time() > 0  # the default clock is the wall clock
