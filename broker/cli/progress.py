"""A progress line on stderr for long commands (backup, restore)."""

from __future__ import annotations

import sys
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop returns


class ProgressLine:
    """`label: 45% (what)`, redrawn in place on a terminal; on anything else (a log, a
    pipe) one line per tenth, and only when asked for with `--progress`."""

    def __init__(self, label: str, *, enabled: bool | None = None,
                 out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.label = label
        self.tty = self.out.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self._tenth = -1
        self._drawn = False

    def update(self, done: float, total: float | None, what: str = "") -> None:
        if not self.enabled:
            return
        percent = int(100 * done / total) if total else 0
        text = f"{self.label}: {percent}%" + (f" ({what})" if what else "")
        if self.tty:
            self.out.write(f"\r\x1b[K{text}")
            self._drawn = True
        elif percent // 10 != self._tenth:
            self._tenth = percent // 10
            self.out.write(text + "\n")
        self.out.flush()

    def pages(self, done: int, total: int) -> None:
        self.update(done, total, f"{done:,} of {total:,} pages")

    def bytes(self, done: int, total: int | None) -> None:
        shown = human_bytes(done) + (f" of {human_bytes(total)}" if total else "")
        self.update(done, total, shown)

    def done(self) -> None:
        if self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._drawn = False
