"""No input ends the console: a bad `:stream` filter, a broker answering nonsense and a
failing action are shown and logged; only a real crash stops it, with a non-zero status.
`opsbus up` runs the console in a child process, so the broker outlives it."""

from __future__ import annotations

import logging
import os
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from console.app import OpsbusConsole
from console.faults import FaultBudget
from console.screens.stream import StreamScreen
from console.widgets.filter_bar import FilterBar
from tests.broker_process import ADMIN_TOKEN, ROOT, BrokerProcess, free_port
from tests.console_support import ONCALL_CONFIG, alert, in_thread, publish, until, write_config
from tests.terminal import Terminal, children


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("console-faults")
    proc = BrokerProcess(folder / "data", config=write_config(folder, ONCALL_CONFIG)).start()
    try:
        yield proc
    finally:
        proc.stop()


def messages(app: OpsbusConsole) -> list[str]:
    return [n.message for n in app._notifications]


async def test_a_bad_stream_filter_is_reported_and_the_console_goes_on(
        broker: BrokerProcess) -> None:
    app = OpsbusConsole(broker.url, token=ADMIN_TOKEN, operator="ana")
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="connected")
        await pilot.press(":", *"stream type = 'x", "enter")
        screen = app.screen
        assert isinstance(screen, StreamScreen)
        await until(pilot, lambda: screen.model.status == "error", what="the error")
        bar = screen.query_one(FilterBar)
        await until(pilot, lambda: bar.error is not None, what="the bar shows where")
        assert any("not valid CESQL" in m for m in messages(app))
        assert app.return_code is None and app._exception is None
        # And the console still works: a valid filter follows the stream.
        await pilot.press(":", *"stream type = 'test.alert'", "enter")
        await until(pilot, lambda: screen.model.status == "ready", what="recovered")
        sent = await in_thread(publish, broker.url, [alert(1, "info", "after-typo")])
        await until(pilot, lambda: screen.table.last_seq == sent[0]["seq"], what="live")


async def nonsense_broker() -> tuple[web.AppRunner, str]:
    """A server that says it is ready and answers every API call with JSON the console
    does not expect (an older or foreign broker)."""
    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def nonsense(request: web.Request) -> web.Response:
        return web.json_response({"unexpected": True})

    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.router.add_route("*", "/{tail:.*}", nonsense)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_unexpected_errors_are_shown_and_logged(caplog: pytest.LogCaptureFixture,
                                                      tmp_path: Path) -> None:
    runner, url = await nonsense_broker()
    try:
        app = OpsbusConsole(url, token=ADMIN_TOKEN,
                            operator="ana", log_path=tmp_path / "console.log")
        with caplog.at_level(logging.ERROR, logger="console"):
            async with app.run_test(size=(120, 30)) as pilot:
                await until(pilot, lambda: any("unexpected error: KeyError" in m
                                               for m in messages(app)), what="shown")
                assert str(tmp_path / "console.log") in " ".join(messages(app))
                await pilot.press("2", "1", "?", "escape")  # the keys still work
                assert app.return_code is None
        logged = [r for r in caplog.records if r.name == "console" and r.exc_info]
        assert logged and logged[0].levelname == "ERROR"
    finally:
        await runner.cleanup()


async def test_a_real_crash_stops_the_console_with_status_1(broker: BrokerProcess) -> None:
    app = OpsbusConsole(broker.url, token=ADMIN_TOKEN, operator="ana")

    def broken() -> None:
        raise RuntimeError("a bug in a message handler")

    with pytest.raises(RuntimeError, match="a bug"):
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="connected")
            app.call_later(broken)
            await until(pilot, lambda: app._exception is not None, what="the crash")
    assert app.return_code == 1


def test_fault_budget_gives_up_on_a_storm() -> None:
    clock = [0.0]
    budget = FaultBudget(budget=3, window_s=10, clock=lambda: clock[0])
    assert [budget.tolerate() for _ in range(3)] == [True, True, True]
    assert budget.tolerate() is False  # a fourth within ten seconds: give up
    clock[0] = 30.0
    assert budget.tolerate() is True  # the storm is over


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "HOME": str(tmp_path),
            "OPSBUS_TOKEN": ADMIN_TOKEN,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_STATE_HOME": str(tmp_path / "state")}


def test_the_console_process_survives_a_typo(broker: BrokerProcess, tmp_path: Path) -> None:
    term = Terminal([sys.executable, "-m", "broker", "console", "--url", broker.url],
                    env=cli_env(tmp_path), cwd=tmp_path)
    try:
        term.wait_for("QUEUES")
        term.type(":")
        term.wait_for("bell help quit")  # the command line is open
        term.type("stream type = 'x\r")
        term.wait_for("not valid CESQL")
        assert term.proc.poll() is None
        term.type("\x11")  # ctrl+q
        assert term.wait_exit() == 0
    finally:
        term.close()


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_up_keeps_serving_when_its_console_dies(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    term = Terminal([sys.executable, "-m", "broker", "up", "--listen", f"127.0.0.1:{port}",
                     "--data-dir", str(tmp_path / "data"), "--durability", "off"],
                    env=cli_env(tmp_path), cwd=tmp_path)
    try:
        term.wait_for("unclaimed critical")  # the sample day is loaded and shown
        term.type(":")
        term.wait_for("bell help quit")  # the command line is open
        term.type("stream type = 'x\r")
        term.wait_for("not valid CESQL")
        assert term.proc.poll() is None and ready(url)
        [console] = children(term.proc.pid)
        os.kill(console, signal.SIGKILL)  # the console dies as hard as it can
        term.wait_for("the broker keeps serving")
        assert "status 137" in term.text
        assert ready(url) and term.proc.poll() is None
        term.proc.send_signal(signal.SIGTERM)
        assert term.wait_exit() == 128 + signal.SIGKILL  # the console's status, not 0
        assert not ready(url)
    finally:
        term.close()


def test_up_stops_with_its_console(tmp_path: Path) -> None:
    port = free_port()
    term = Terminal([sys.executable, "-m", "broker", "up", "--listen", f"127.0.0.1:{port}",
                     "--data-dir", str(tmp_path / "data"), "--durability", "off"],
                    env=cli_env(tmp_path), cwd=tmp_path)
    try:
        term.wait_for("unclaimed critical")
        term.type("\x11")
        assert term.wait_exit() == 0
        assert "opsbus up on" in term.text
    finally:
        term.close()




async def test_a_refused_token_is_said_plainly_on_every_screen() -> None:
    """A broker that requires a token the console does not have (as `--no-auth` off)."""
    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"type": "about:blank", "title": "Unauthorized",
                                  "status": 401, "detail": "missing bearer token"},
                                 status=401, content_type="application/problem+json")

    server = web.Application()
    server.router.add_get("/readyz", ready)
    server.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        app = OpsbusConsole(f"http://127.0.0.1:{port}", token=ADMIN_TOKEN, operator="ana")
        async with app.run_test(size=(160, 30)) as pilot:
            await until(pilot, lambda: app.auth_problem is not None, what="the refusal")
            assert "--token" in app.auth_problem and "console.toml" in app.auth_problem
            bar = app.screen.query_one("StatusBar")
            assert "refused the token" in str(bar.render())
            await pilot.press("2")
            assert "refused the token" in str(app.screen.query_one("StatusBar").render())
            assert app.return_code is None
    finally:
        await runner.cleanup()
