"""`opsbus console --web`: the console in headless Chromium, behind a token. Nothing is
served without the one-time link (or the broker's token); through it the page shows the
home with its critical badge, and a key press claims an item."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import ADMIN_TOKEN, ROOT, BrokerProcess, free_port
from tests.browser import Browser, chromium, png_pixels
from tests.console_support import ONCALL_CONFIG, alert, http, item_id, publish, write_config

pytestmark = pytest.mark.skipif(
    chromium() is None and not os.environ.get("CI"),
    reason="chromium is not installed (`make test` installs it)")


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", config=write_config(tmp_path, ONCALL_CONFIG))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class WebConsole:
    """`opsbus console --web` as a child process; `link` is the one-time URL it prints."""

    def __init__(self, broker_url: str, tmp_path: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker", "console", "--web", "--web-listen",
             f"127.0.0.1:{self.port}", "--url", broker_url, "--operator", "web-ana",
             "--log-file", str(tmp_path / "console.log")],
            env={**env, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                 "OPSBUS_TOKEN": ADMIN_TOKEN}, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.link = self._link()
        self.base = f"http://127.0.0.1:{self.port}"

    def _link(self) -> str:
        assert self.proc.stderr is not None
        found: list[str] = []

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if b"opsbus console on " in line:
                    found.append(line.decode().split(" on ", 1)[1].strip())
                    self.proc.stderr.read()  # then drain it: a full pipe would stall
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline and reader.is_alive():
            reader.join(0.1)
        assert found, "the web console printed no link"
        return found[0]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def status(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def red_pixels(png: bytes) -> int:
    """Pixels of the badge's red (white text on red) in an RGB screenshot."""
    _, _, pixels = png_pixels(png)
    return sum(1 for r, g, b in pixels if r > 170 and g < 60 and b < 110)


async def poll(check: object, what: str, timeout: float = 60.0) -> None:
    """Until the coroutine function `check` answers true."""
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_web_console_needs_the_token_then_claims_in_chromium(
        broker: BrokerProcess, tmp_path: Path) -> None:
    await asyncio.to_thread(publish, broker.url, [alert(1, "critical", "web-db-1")])
    ident = await asyncio.to_thread(item_id, broker.url, "web-db-1")
    web = WebConsole(broker.url, tmp_path)
    try:
        # No link, no console: the page, its scripts and the websocket are all refused.
        assert await asyncio.to_thread(status, web.base + "/") == 401
        assert await asyncio.to_thread(status, web.base + "/ws") == 401
        assert await asyncio.to_thread(status, web.base + "/static/js/textual.js") == 401
        assert await asyncio.to_thread(status, web.base + "/?token=guessed") == 401
        async with Browser(size=(1400, 900)) as page:
            await page.open(web.link)

            async def started() -> bool:
                return bool(await page.evaluate(
                    "document.body.classList.contains('-first-byte')"))

            await poll(started, "the console to start in the page")
            # The link worked once: a second use is refused.
            assert await asyncio.to_thread(status, web.link) == 401
            width, height = await page.evaluate("[window.innerWidth, window.innerHeight]")
            # The status bar is the terminal's last line but one: the bottom of the page.
            band = {"x": 0, "y": height - 48, "width": width, "height": 48, "scale": 1}

            async def badge() -> bool:
                shot = await page.call("Page.captureScreenshot", format="png", clip=band)
                return red_pixels(base64.b64decode(shot["data"])) > 200

            await poll(badge, "the unclaimed critical badge on the status bar")
            await page.screenshot(tmp_path / "web-console.png")

            async def claimed() -> bool:
                item = await asyncio.to_thread(http, f"{broker.url}/v1/todos/{ident}")
                if item["state"] == "claimed":
                    return True
                # The home lists it first: c claims it (xterm reads keys from its textarea).
                await page.press("c", focus=".xterm-helper-textarea")
                return False

            await poll(claimed, "the claim made in the browser")
            item = await asyncio.to_thread(http, f"{broker.url}/v1/todos/{ident}")
            assert item["owner"] == "web-ana"

            async def badge_gone() -> bool:
                return not await badge()

            await poll(badge_gone, "the badge to go once the item is claimed")
    finally:
        web.stop()
