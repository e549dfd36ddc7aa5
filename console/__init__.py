"""The opsbus console: a Textual terminal UI that talks to the broker over HTTP + SSE."""

from __future__ import annotations
