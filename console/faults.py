"""What the console does with an error nobody expected: log it, show it, keep going."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("console")

FAULT_BUDGET = 5
"""Unexpected errors tolerated within FAULT_WINDOW_S before the console gives up: an error
that repeats on every frame would otherwise flood the screen forever."""
FAULT_WINDOW_S = 30.0


def default_log_path(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/opsbus/console.log`, or `~/.local/state/opsbus/console.log`."""
    base = environ.get("XDG_STATE_HOME") or str(
        Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / "opsbus" / "console.log"


def log_to_file(path: Path) -> None:
    """Send this process's log records to `path` (the terminal belongs to the console)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


class FaultBudget:
    """Counts unexpected errors; `tolerate()` says whether the console may carry on."""

    def __init__(self, budget: int = FAULT_BUDGET, window_s: float = FAULT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.window_s = window_s
        self.clock = clock
        self.seen: deque[float] = deque()
        self.total = 0

    def tolerate(self) -> bool:
        """Record one fault; False once more than `budget` fell within the window."""
        now = self.clock()
        self.total += 1
        self.seen.append(now)
        while self.seen and self.seen[0] < now - self.window_s:
            self.seen.popleft()
        return len(self.seen) <= self.budget
