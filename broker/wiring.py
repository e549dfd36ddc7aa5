"""What a feature may hook into when the broker is put together: configuration kinds and
listeners, route target kinds and implicit routes, background services, stop hooks and
metrics. The composition root (`broker.core`) hands one `Wiring` to each feature's
`wire()`; nothing else of the broker is reachable from there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.bus import Bus, StoredEvent
    from broker.config import ConfigManager, ConfigObject, Kind
    from broker.metrics import Metrics
    from broker.routing import QuickHandler, RouteContributor, Router, TargetHandler

Service = Callable[[], Awaitable[None]]
"""A background task: started with the broker, cancelled at stop."""
Stopper = Callable[[], Awaitable[None]]
"""Called at stop, before the writer drains: finish in-flight work there."""
Starter = Callable[[], Awaitable[None]]
"""Called at start, once the store is open and before the writer takes work."""


class Wiring:
    """The registrations a feature makes at start-up."""

    def __init__(self, config: ConfigManager, router: Router, metrics: Metrics,
                 bus: Bus) -> None:
        self._config = config
        self._router = router
        self._bus = bus
        self.metrics = metrics
        """The broker's metrics registry: register the feature's families here."""
        self.services: list[tuple[str, Service]] = []
        self.stoppers: list[Stopper] = []
        self.starters: list[Starter] = []

    def kind(self, kind: Kind) -> None:
        """A configuration kind (`[[queues]]`, `/v1/queues`)."""
        self._config.register_kind(kind)

    def on_config(self, listener: Callable[[list[ConfigObject]], None]) -> None:
        """Called with every configuration object after each change (and at start)."""
        self._config.on_change(listener)

    def target(self, kind: str, handler: TargetHandler, *, writes: bool = True,
               undoes: bool = False, quick: QuickHandler | None = None) -> None:
        """Act on `kind:<name>` route targets inside the event's transaction (`writes`:
        the handler writes to the store, so it runs in a savepoint of its own; `undoes`:
        it takes its own steps, so it runs in none; `quick`: its synchronous part for
        the common case: see `Router.register_target`)."""
        self._router.register_target(kind, handler, writes=writes, undoes=undoes,
                                     quick=quick)

    def implicit_routes(self, contributor: RouteContributor) -> None:
        """Routes computed from configuration (a subscription's own filter)."""
        self._router.add_contributor(contributor)

    def service(self, name: str, run: Service) -> None:
        self.services.append((name, run))

    def on_stop(self, stop: Stopper) -> None:
        self.stoppers.append(stop)

    def on_start(self, start: Starter) -> None:
        self.starters.append(start)

    def after_commit(self, observer: Callable[[list[StoredEvent]], None]) -> None:
        """Called with every batch this process commits, after COMMIT, on the writer's
        turn: keep it cheap (it delays the callers of that batch)."""
        self._bus.observers.append(observer)
