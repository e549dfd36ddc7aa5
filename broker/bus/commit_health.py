"""Whether the writer can commit, for readiness, and a log of commit failures that says
each distinct failure once and then how often it repeated: a full disk fails every
commit, and a traceback per request would fill what little room is left."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.clock import Clock

log = logging.getLogger("broker.bus.writer")

SUMMARY_EVERY_S = 60.0
"""While one failure repeats, one line per this many seconds counts the repeats."""
UNREADY_FOR_S = 5.0
"""After a failed commit, readiness is refused this long (unless a commit succeeds): long
enough for a load balancer to steer away, short enough that traffic soon tries again."""


class CommitHealth:
    """Commit outcomes as the writer reports them."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.failure: str | None = None
        """The last commit's error when it failed; None once a commit succeeds."""
        self._failed_at = 0.0
        self._logged_at = 0.0
        self._repeats = 0
        self._failures = 0

    def failed(self, exc: BaseException) -> None:
        """A group transaction did not commit: log it once per distinct error, then a
        count of repeats at most every SUMMARY_EVERY_S."""
        message = f"{type(exc).__name__}: {exc}"
        now = self._clock.monotonic()
        self._failed_at = now
        self._failures += 1
        if message != self.failure:
            self._flush_repeats()
            self.failure = message
            self._logged_at = now
            log.error("commit failed, publishers get 503 until commits succeed: %s", message)
            log.debug("commit failure detail", exc_info=exc)
            return
        self._repeats += 1
        if now - self._logged_at >= SUMMARY_EVERY_S:
            self._flush_repeats()
            self._logged_at = now

    def committed(self) -> None:
        """A group transaction committed."""
        if self.failure is None:
            return
        self._flush_repeats()
        log.warning("commits succeed again after %d failed", self._failures)
        self.failure = None
        self._failures = 0

    def _flush_repeats(self) -> None:
        if self._repeats:
            log.error("commit failed %d more times with the same error: %s", self._repeats,
                      self.failure)
            self._repeats = 0

    def unready(self) -> str | None:
        """Why the broker should not take traffic now (a recent failed commit), or None."""
        if self.failure is None:
            return None
        if self._clock.monotonic() - self._failed_at > UNREADY_FOR_S:
            return None
        return f"the last commit failed: {self.failure}"
