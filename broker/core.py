"""The broker: the composition root that opens the store, starts the writer, loads
configuration and runs the background services every feature registers."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from broker.bus import Bus
from broker.clock import Clock, ManualClock, SystemClock
from broker.config import ConfigManager, Kind
from broker.filters import configure as configure_filter_limits
from broker.filters import limits_of
from broker.hub import Hub
from broker.metrics import Metrics
from broker.metrics_core import register_core_metrics
from broker.routing import Router, validate_route
from broker.settings import Settings
from broker.store import Store, open_store

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = (
    "broker.plugin_host",
    "broker.proxy",
    "broker.todos",
    "broker.delivery",
    "broker.actions",
    "broker.maintenance",
)
"""Modules with a `setup(broker)` function, imported at start (todos, delivery, ...)."""

Service = Callable[[], Awaitable[None]]


class Broker:
    """Everything one `opsbus serve` process runs, wired together."""

    def __init__(self, settings: Settings, store: Store | None = None,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        # Every filter compiled in this process (routes, subscriptions, streams, ...) is
        # held to the settings' filter_* limits.
        configure_filter_limits(limits_of(settings))
        self.clock = clock or (ManualClock() if settings.test_clock else SystemClock())
        """The one clock every component reads; a manual one with `--test-clock`."""
        self.store = store or open_store(settings)
        self.hub = Hub(self.clock)
        self.router = Router(hop_limit=settings.hop_limit)
        self.bus = Bus(self.store, self.hub, self.router, self.clock,
                       max_batch=settings.max_batch_commit,
                       max_descendants=settings.max_descendants)
        self.config = ConfigManager(self)
        self.config.register_kind(Kind("routes", "route", validate_route))
        self.config.on_change(self.router.load)
        self.extensions: dict[str, Any] = {}
        """Per-feature state (`broker.extensions["todos"]`), set by each feature's setup."""
        self.metrics = Metrics()
        """Typed Prometheus metrics; each feature registers its own in `setup`."""
        register_core_metrics(self.metrics, self.bus, self.hub, self.router)
        self._services: list[tuple[str, Service]] = []
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshes: set[asyncio.Task[None]] = set()
        self._remote_commit: list[Callable[[], None]] = []
        self.ready = False
        for module in FEATURES:
            importlib.import_module(module).setup(self)

    def add_service(self, name: str, run: Service) -> None:
        """A background task started with the broker and cancelled at stop."""
        self._services.append((name, run))

    def on_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Called at stop, before the writer drains (finish in-flight work here)."""
        self._stoppers.append(stop)

    async def start(self) -> None:
        await self.store.open()
        try:
            await self._start()
        except BaseException:
            # A refused config file must end the process: left open, the store's
            # reader and writer threads would keep it alive after the error is shown.
            # Not `stop()`: its stoppers wait for services that never started.
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            await self.config.stop_watching()
            await self.bus.stop()
            await self.store.close()
            raise

    async def _start(self) -> None:
        self.hub.head = await self.store.last_seq()
        self.bus.fanout = self.store.start_live(self.hub.publish, self.hub.head,
                                                self._config_changed_elsewhere,
                                                self._committed_elsewhere)
        await self.bus.start()
        if self.settings.config:
            await self.config.load_file(self.settings.config)
            self.config.start_watching(self.settings.config)
        else:
            await self.config.refresh()
        tick = min(0.25, self.settings.heartbeat_s / 4)
        self._tasks.append(asyncio.create_task(self.hub.tick(tick), name="hub-ticker"))
        for name, run in self._services:
            self._tasks.append(asyncio.create_task(_guarded(name, run), name=name))
        self.ready = True
        log.info("broker ready, last seq %s", self.hub.head)

    def on_remote_commit(self, callback: Callable[[], None]) -> None:
        """Called when another process sharing the store committed (replicas on
        PostgreSQL): dispatchers and long-polls look for new work at once."""
        self._remote_commit.append(callback)

    def _committed_elsewhere(self) -> None:
        for callback in self._remote_commit:
            try:
                callback()
            except Exception:
                log.exception("a wake-up after another replica's commit failed")

    def _config_changed_elsewhere(self) -> None:
        """Another replica changed the configuration: re-read it (in the background)."""
        task = asyncio.create_task(self.config.refresh(), name="config-refresh")
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def stop(self) -> None:
        """Stop taking work, finish in-flight commits, close streams and the store."""
        self.ready = False
        await self.config.stop_watching()
        for stop in reversed(self._stoppers):
            try:
                await stop()
            except Exception:
                log.exception("error while stopping a service")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.hub.close()
        await self.bus.stop()
        await self.store.close()


async def _guarded(name: str, run: Service) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background service %s stopped with an error", name)
