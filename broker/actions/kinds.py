"""The one registry of action kinds beyond `http`: plugins register the kinds they
provide (`registry.action("shell", ...)`), the action runner looks them up by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

KindRunner = Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]
"""(the action's spec with its `params`, the event) -> `{"ok", "status", "body", "error",
"request"}`."""


FILE_ONLY_KINDS = frozenset({"shell"})
"""Action kinds that run commands on the broker's host: defined in the config file only
(whoever edits that file already runs code there), never through the API."""


class ActionKinds:
    """Kinds by name; a plugin reload replaces its kinds whole."""

    def __init__(self) -> None:
        self._runners: dict[str, KindRunner] = {}

    def register(self, kind: str, runner: KindRunner) -> None:
        self._runners[kind] = runner

    def unregister(self, kind: str) -> None:
        self._runners.pop(kind, None)

    def get(self, kind: str) -> KindRunner | None:
        return self._runners.get(kind)

    def names(self) -> set[str]:
        return set(self._runners)
