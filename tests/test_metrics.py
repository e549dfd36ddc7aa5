"""`/metrics`: Prometheus text that promtool accepts, with the families operators alert on."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.broker_process import BrokerProcess
from tests.delivery_support import call, eventually, publish, put_object

CONFIG = textwrap.dedent("""
    [[queues]]
    name = "disk"
    group_key = "{subject}"

    [[routes]]
    name = "disk"
    filter = { exact = { type = "test.disk" } }
    targets = ["queue:disk"]
""")


def promtool() -> str:
    """The promtool binary (Debian package `prometheus`, installed by `make test`)."""
    found = shutil.which("promtool")
    if found:
        return found
    reason = ("promtool is not installed: `make promtool` installs the Debian package"
              " prometheus with apt-get")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("metrics")
    (folder / "opsbus.toml").write_text(CONFIG)
    proc = BrokerProcess(folder / "data", config=folder / "opsbus.toml", args=[
        "--allow-private-targets", "--delivery-poll-s", "0.1", "--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def scrape(http, broker) -> tuple[dict[str, str], str]:
    async with http.get(broker.url + "/metrics") as resp:
        assert resp.status == 200
        return dict(resp.headers), await resp.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_exposition_passes_promtool(broker, http):
    tool = promtool()
    await publish(http, broker.url, type="test.disk", subject="db-1")
    headers, text = await scrape(http, broker)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert not any(name.lower().startswith("x-") for name in headers)
    check = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type != "unknown", f"{family.name} has no TYPE"


async def test_families_to_alert_on(broker, http, receiver):
    receiver.statuses = [422]  # refused at once: a dead letter
    await put_object(http, broker.url, "subscriptions", {
        "name": "hook", "type": "push", "url": receiver.url + "/hook",
        "filter": {"exact": {"type": "test.hooked"}}, "retry": {"max_attempts": 1}})
    await put_object(http, broker.url, "subscriptions", {
        "name": "pulled", "type": "pull", "filter": {"exact": {"type": "test.hooked"}}})
    await publish(http, broker.url, type="test.hooked")
    await publish(http, broker.url, type="test.disk", subject="db-2")
    leased = await call(http, "POST", broker.url + "/v1/subscriptions/pulled/receive",
                        {"max": 5}, expect=200)
    await call(http, "POST", broker.url + "/v1/subscriptions/pulled/release",
               {"leases": [m["lease"] for m in leased]}, expect=200)

    async def dead_lettered():
        values = samples((await scrape(http, broker))[1])
        dead = values.get(("opsbus_delivery_dead_letters_total", (("subscription", "hook"),)))
        return values if dead == 1 else None

    values = await eventually(dead_lettered)
    assert values[("opsbus_delivery_attempts_total", (("subscription", "hook"),))] == 1
    assert values[("opsbus_delivery_failures_total", (("subscription", "hook"),))] == 1
    assert values[("opsbus_delivery_attempts_total", (("subscription", "pulled"),))] == 1
    assert values[("opsbus_delivery_failures_total", (("subscription", "pulled"),))] == 1
    assert values[("opsbus_queue_items", (("queue", "disk"), ("state", "open")))] >= 1
    assert values[("opsbus_queue_oldest_open_age_seconds", (("queue", "disk"),))] >= 0
    assert values[("opsbus_ingest_seconds_count", ())] >= 2
    assert values[("opsbus_commit_seconds_count", ())] >= 2
    assert ("opsbus_stream_subscribers", ()) in values
    assert values[("opsbus_stream_drops_total", ())] == 0
    assert values[("opsbus_sse_readers", ())] == 0


async def test_sse_readers_are_counted(broker, http):
    async with http.get(broker.url + "/v1/stream") as stream:
        await stream.content.readline()  # the stream is open once its first line came

        async def one_reader():
            values = samples((await scrape(http, broker))[1])
            return values[("opsbus_sse_readers", ())] == 1

        assert await eventually(one_reader)


def test_loop_histograms_expose_what_prometheus_client_histograms_do():
    from prometheus_client.exposition import generate_latest

    from broker.metrics import Metrics

    theirs, ours = Metrics(), Metrics()
    histogram = theirs.histogram("opsbus_x_seconds", "Seconds of x.")
    loop = ours.loop_histogram("opsbus_x_seconds", "Seconds of x.")
    assert ours.loop_histogram("opsbus_x_seconds", "Seconds of x.") is loop
    for seconds in (0.0, 1e-9, 0.0005, 0.0006, 0.003, 0.5, 2.0, 99.0):
        histogram.observe(seconds)
        loop.observe(seconds)

    def shown(metrics: Metrics) -> dict:
        found = samples(generate_latest(metrics.registry).decode())
        return {key: value for key, value in found.items() if key[0] != "opsbus_x_seconds_created"}

    assert shown(ours) == shown(theirs)
    assert shown(ours)[("opsbus_x_seconds_bucket", (("le", "0.0005"),))] == 3
    assert ("opsbus_x_seconds_created", ()) in samples(generate_latest(ours.registry).decode())
