"""Headless Chromium driven over the DevTools protocol (the Debian `chromium` package;
no browser download): open a page, press keys, take a screenshot."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from tests.broker_process import free_port

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Nothing but this machine: a page asking for another host gets "not found".
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """`async with Browser() as page: await page.open(url)`."""

    def __init__(self, size: tuple[int, int] = (1400, 900)) -> None:
        self.size = size
        self.profile = tempfile.TemporaryDirectory(prefix="opsbus-chromium-")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        binary = chromium()
        assert binary, "chromium is not installed (make installs it with apt-get)"
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile.name}",
             f"--remote-debugging-port={self.port}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.to_thread(self._listening)
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            pages = [t for t in await resp.json() if t["type"] == "page"]
        assert pages, "chromium opened no page"
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"],
                                                max_msg_size=0)
        await self.call("Page.enable")
        return self

    def _listening(self) -> None:
        """Until Chromium says its DevTools port is open (a line on stderr)."""
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if b"DevTools listening on" in line:
                # Keep reading what it logs, so a full pipe never stalls it.
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return
        raise AssertionError(f"chromium exited with {self.proc.wait()}")

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None
                        ) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        self.profile.cleanup()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events met meanwhile are dropped)."""
        assert self.ws is not None
        ident = next(self.ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result") or {})

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True)
        return answer.get("result", {}).get("value")

    async def press(self, text: str, focus: str | None = None) -> None:
        """Type characters as key presses (into the element `focus` selects, if given)."""
        if focus:
            await self.evaluate(f"document.querySelector({focus!r}).focus()")
        for char in text:
            code = f"Key{char.upper()}" if char.isalpha() else ""
            await self.call("Input.dispatchKeyEvent", type="keyDown", text=char, key=char,
                            code=code, windowsVirtualKeyCode=ord(char.upper()))
            await self.call("Input.dispatchKeyEvent", type="keyUp", key=char, code=code,
                            windowsVirtualKeyCode=ord(char.upper()))

    async def screenshot(self, path: Path) -> bytes:
        import base64

        answer = await self.call("Page.captureScreenshot", format="png")
        data = base64.b64decode(answer["data"])
        path.write_bytes(data)
        return data


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for x in range(stride):
            a = row[x - step] if x >= step else 0
            b = previous[x]
            c = previous[x - step] if x >= step else 0
            if kind == 1:
                row[x] = (row[x] + a) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + b) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                          ) & 0xFF
        rows.append(row)
        previous = row
    pixels = [(r[x], r[x + 1], r[x + 2]) for r in rows for x in range(0, stride, step)]
    return width, height, pixels
