"""The plugin host against a running broker: listing, hot reload, transforms, targets, failures."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.conftest import STRUCTURED, make_event
from tests.plugin_helpers import events_of, eventually, post_source

SAMPLE = '''
from broker.plugin_host.api import Reject

__version__ = "1.0"


def register(registry):
    out = registry.config["out"]

    def receive(request):
        body = request.json()
        if body.get("explode"):
            raise RuntimeError("kaboom")
        if body.get("reject"):
            raise Reject("not today", 403)
        event = {"specversion": "1.0", "id": body["id"], "source": "tests/sample",
                 "type": body.get("type", "sample.received")}
        if body.get("invalid"):
            del event["type"]
        return [event]

    def tag(event):
        if event["type"] == "drop.me":
            return None
        if event["type"] == "boom":
            raise ValueError("cannot tag a boom")
        return {**event, "tagged": "yes"}

    def hook(event):
        with open(out, "a") as fh:
            fh.write(event["id"] + "\\n")

    registry.source("sample", receive)
    registry.transform("tag", tag)
    registry.target("hook", hook)
'''

RELOADABLE = '''
__version__ = "{version}"


def register(registry):
    def receive(request):
        return [{{"specversion": "1.0", "id": request.json()["id"], "source": "tests/reload",
                 "type": "reload.{version}"}}]
    registry.source("reloadme", receive)
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Path]]:
    root = tmp_path_factory.mktemp("plugins")
    folder = root / "my_plugins"
    folder.mkdir()
    (folder / "sample.py").write_text(SAMPLE)
    (folder / "reloadme.py").write_text(RELOADABLE.format(version="v1"))
    (folder / "_helper.py").write_text("raise RuntimeError('helpers are not plugins')\n")
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent(f"""
        [plugins]
        paths = ["./my_plugins"]
        transforms = ["tag"]

        [plugins.sample]
        out = "{root / 'hook.out'}"

        [[routes]]
        name = "hooked"
        filter = {{ exact = {{ type = "hook.me" }} }}
        targets = ["plugin:hook"]
    """))
    proc = BrokerProcess(root / "data", config=config, args=["--durability", "off"]).start()
    try:
        yield proc, root
    finally:
        proc.stop()


@pytest.fixture
def broker(setup: tuple[BrokerProcess, Path]) -> BrokerProcess:
    return setup[0]


def body(**fields: object) -> bytes:
    return orjson.dumps({"id": str(uuid.uuid4()), **fields})


async def plugin_list(http, broker) -> dict:
    async with http.get(broker.url + "/v1/plugins") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_lists_shipped_and_folder_plugins_with_versions(broker, http):
    doc = await plugin_list(http, broker)
    assert doc["api_version"] == 1
    plugins = {p["name"]: p for p in doc["plugins"]}
    assert {"alertmanager", "github", "webhook", "folder", "shell", "notify"} <= set(plugins)
    assert "_helper" not in plugins
    assert plugins["sample"]["origin"] == "folder" and plugins["sample"]["version"] == "1.0"
    assert plugins["sample"]["provides"]["sources"] == ["sample"]
    assert plugins["sample"]["provides"]["transforms"] == ["tag"]
    assert plugins["shell"]["provides"]["actions"] == ["shell"]
    assert doc["transforms"] == [{"name": "tag", "plugin": "sample", "error": None}]


async def test_hot_reload_takes_new_code_and_keeps_old_on_syntax_error(setup, http):
    broker, root = setup
    plugin = root / "my_plugins" / "reloadme.py"
    status, answer = await post_source(http, broker, "reloadme", body())
    assert status == 200, answer

    plugin.write_text(RELOADABLE.format(version="v2"))

    async def reloaded() -> str | None:
        event_id = str(uuid.uuid4())
        status, _ = await post_source(http, broker, "reloadme", body(id=event_id))
        assert status == 200
        stored = await events_of(http, broker, source="tests/reload")
        return next((e["type"] for e in stored if e["id"] == event_id and
                     e["type"] == "reload.v2"), None)

    assert await eventually(reloaded) == "reload.v2"
    loaded = await events_of(http, broker, type="opsbus.plugin.loaded")
    # The start's v1 was announced too: the reload's own announcement is the v2 one.
    reload_event = next(e for e in loaded if e["subject"] == "reloadme"
                        and e["data"]["version"] == "v2")
    assert reload_event["source"] == "opsbus/plugins"
    assert reload_event["data"]["provides"]["sources"] == ["reloadme"]

    plugin.write_text("def register(registry:\n    pass\n")

    async def failed() -> dict | None:
        entry = {p["name"]: p for p in (await plugin_list(http, broker))["plugins"]}["reloadme"]
        return entry if entry["error"] else None

    entry = await eventually(failed)
    assert "SyntaxError" in entry["error"]["message"]
    assert entry["version"] == "v2" and entry["active"]
    event_id = str(uuid.uuid4())
    status, answer = await post_source(http, broker, "reloadme", body(id=event_id))
    assert status == 200, answer  # the previous version still answers
    stored = {e["id"]: e for e in await events_of(http, broker, source="tests/reload")}
    assert stored[event_id]["type"] == "reload.v2"
    failures = await events_of(http, broker, type="opsbus.plugin.failed")
    failure = next(e for e in failures if e["subject"] == "reloadme")
    assert failure["data"]["error"].startswith("SyntaxError")
    assert failure["data"]["active_version"] == "v2"

    plugin.write_text(RELOADABLE.format(version="v3"))

    async def recovered() -> dict | None:
        entry = {p["name"]: p for p in (await plugin_list(http, broker))["plugins"]}["reloadme"]
        return entry if entry["version"] == "v3" and entry["error"] is None else None

    await eventually(recovered)


async def test_transform_enriches_and_drops_before_storing(broker, http):
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(make_event()),
                         headers=STRUCTURED) as resp:
        answer = await resp.json()
    async with http.get(f"{broker.url}/v1/events/{answer['seq']}") as resp:
        assert (await resp.json())["event"]["tagged"] == "yes"
    dropped = make_event(type="drop.me")
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(dropped),
                         headers=STRUCTURED) as resp:
        answer = await resp.json()
    assert answer["dropped"] is True and answer["seq"] == 0
    assert not await events_of(http, broker, type="drop.me")


async def test_transform_that_raises_fails_only_that_publish(broker, http):
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(make_event(type="boom")),
                         headers=STRUCTURED) as resp:
        problem = await resp.json()
        assert resp.status == 422
        assert resp.content_type == "application/problem+json"
    assert problem["plugin"] == "sample" and problem["transform"] == "tag"
    assert "cannot tag a boom" in problem["detail"]
    async with http.get(broker.url + "/readyz") as resp:
        assert resp.status == 200


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({"explode": True}, 500, "kaboom"),
    ({"reject": True}, 403, "not today"),
    ({"invalid": True}, 422, "type"),
])
async def test_source_failures_answer_problems_naming_the_plugin(broker, http, fields, status,
                                                                 words):
    got, problem = await post_source(http, broker, "sample", body(**fields))
    assert got == status
    assert problem["plugin"] == "sample" and words in problem["detail"]


async def test_unknown_source_is_404(broker, http):
    status, problem = await post_source(http, broker, "nosuch", b"{}")
    assert status == 404 and "sample" in problem["sources"]


async def test_plugin_target_hook_runs_after_commit(setup, http):
    broker, root = setup
    event = make_event(type="hook.me")
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(event),
                         headers=STRUCTURED) as resp:
        seq = (await resp.json())["seq"]

    async def hooked() -> bool:
        out = root / "hook.out"
        return out.exists() and event["id"] in out.read_text().split()

    assert await eventually(hooked)
    async with http.get(f"{broker.url}/v1/events/{seq}") as resp:
        targets = (await resp.json())["targets"]
    assert targets == [{"route": "hooked", "target": "plugin:hook",
                        "detail": {"plugin": "sample", "hook": "hook"}}]
