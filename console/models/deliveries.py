"""The Deliveries view's state: subscriptions (failing first) with their status, and the
chosen one's dead letters. No widget code: the Deliveries screen renders it."""

from __future__ import annotations

from typing import Any

from broker.client import OpsbusClient
from broker.errors import NotFound, OpsbusError
from console.models.observable import Observable

DEAD = "deadlettered"
"""The delivery state of a dead letter."""
DEAD_LIMIT = 200


def failing(sub: dict[str, Any]) -> bool:
    status = sub.get("status") or {}
    counts = status.get("counts") or {}
    return (status.get("state", "active") != "active" or bool(counts.get(DEAD))
            or bool(status.get("last_error")))


class DeliveriesModel(Observable):
    """What the broker says about its subscriptions and one subscription's dead letters."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.selected: str | None = None
        self.dead: dict[int, dict[str, Any]] = {}
        self.dead_of: str | None = None
        """The subscription whose dead letters `dead` holds."""
        self.status = "loading"
        """loading, ready, or unavailable (then `problem` says why)."""
        self.problem: str | None = None
        self.dead_problem: str | None = None

    async def load(self, client: OpsbusClient) -> None:
        """Every subscription with its status, then the selected one's dead letters."""
        try:
            names = [s["name"] for s in await client.list_objects("subscriptions")]
            found = {name: await client.subscription(name) for name in names}
        except NotFound:
            self._unavailable("subscriptions are not available on this broker")
            return
        except OpsbusError as exc:
            self._unavailable(f"cannot load subscriptions: {exc.detail}")
            return
        self.subscriptions = dict(sorted(found.items(),
                                         key=lambda kv: (not failing(kv[1]), kv[0])))
        if self.selected not in self.subscriptions:
            self.selected = next(iter(self.subscriptions), None)
        self.status, self.problem = "ready", None
        self.changed()
        await self.load_dead(client)

    def _unavailable(self, why: str) -> None:
        self.status, self.problem = "unavailable", why
        self.changed()

    def select(self, name: str) -> None:
        if name != self.selected:
            self.selected = name
            self.changed()

    async def load_dead(self, client: OpsbusClient) -> None:
        selected = self.selected
        if selected != self.dead_of:
            self.dead, self.dead_of = {}, selected  # another subscription's: from the top
        if selected is None:
            self.dead_problem = "no subscriptions configured"
            self.changed()
            return
        try:
            answer = await client.deliveries(selected, state=DEAD, limit=DEAD_LIMIT)
        except NotFound:
            self.dead_problem = "dead letters are not available on this broker"
        except OpsbusError as exc:
            self.dead_problem = f"cannot load dead letters: {exc.detail}"
        else:
            if self.selected != selected:
                return  # the selection moved on while this answer was on its way
            self.dead = {int(d["id"]): d for d in answer.get("deliveries", [])}
            self.dead_problem = None
        self.changed()
