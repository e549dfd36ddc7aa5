"""Problems a plugin causes, in the broker's error hierarchy; each names the plugin."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from broker.errors import OpsbusError


class PluginFailed(OpsbusError):
    """A plugin raised while handling a request or an event (a bug in the plugin)."""

    status = 500
    title = "Plugin failed"
    slug = "plugin-failed"


class PluginRejected(OpsbusError):
    """A source plugin refused the request (bad signature, unreadable payload)."""

    slug = "plugin-rejected"

    def __init__(self, detail: str, status: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.status = status if 400 <= status <= 599 else 400
        self.title = HTTPStatus(self.status).phrase


class PluginInvalidEvent(OpsbusError):
    """A plugin produced an event that is not a valid CloudEvent, or a transform failed."""

    status = 422
    title = "Invalid event from plugin"
    slug = "plugin-invalid-event"
