"""The broker: the composition root. Every component is built here, explicitly, from what
it uses; features hook in through a `Wiring`; nothing finds another by name."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine, Mapping
from typing import Any

from broker.actions import ActionKinds, Actions
from broker.auth.local import ensure_admin_token
from broker.auth.tokens import Tokens
from broker.bus import Bus
from broker.catalog import Catalog, CatalogSettings
from broker.clock import Clock, ManualClock, SystemClock
from broker.config import ConfigManager, Kind
from broker.delivery import Deliveries
from broker.dispatcher import DispatchSettings
from broker.filters import configure as configure_filter_limits
from broker.filters import limits_of, use_shapes
from broker.hub import Hub
from broker.maintenance import StoreHousekeeping
from broker.memory import sweep as memory_sweep
from broker.metrics import Metrics
from broker.metrics_core import register_core_metrics
from broker.plugin_host import PluginHost
from broker.plugin_host import wire as wire_plugins
from broker.proxy import Proxy
from broker.proxy import wire as wire_proxy
from broker.retention import Retention, policy_of
from broker.routing import Router, validate_route
from broker.settings import Settings
from broker.store import open_backend
from broker.store.base import Backend
from broker.todos import Todos
from broker.wiring import Service, Wiring

log = logging.getLogger(__name__)
PLUGINS_LOAD_S = 30
"""Seconds start-up waits for the configured plugins to load before it listens."""

NO_AUTH_WARNING = (
    "AUTHENTICATION IS OFF (--no-auth): the API is open to every local process and to any"
    " web page the operator's browser visits; anyone who can reach it can change routes"
    " and actions and act as any operator. Use it for tests only.")


class Broker:
    """Everything one `opsbus serve` process runs, wired together.

    The write path: `bus` (the single writer) over `store` (the backend), `router`
    (routes and target kinds) inside its transaction, `hub` (live fan-out) after commit.
    The features: `todos`, `delivery`, `actions`, `plugins`, `proxy`, each given only
    the repositories, clock and settings it uses, and the typed ports it needs of
    another (`ActionKinds`, `TodoActions`)."""

    def __init__(self, settings: Settings, store: Backend | None = None,
                 clock: Clock | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        # Every filter compiled in this process (routes, subscriptions, streams, ...) is
        # held to the settings' filter_* limits.
        configure_filter_limits(limits_of(settings))
        self.clock = clock or (ManualClock() if settings.test_clock else SystemClock())
        """The one clock every component reads; a manual one with `--test-clock`."""
        # The process environment is read here, at the edge, and handed down: secrets
        # named by `secret_env`/`token_env` are resolved from it when objects load.
        environ = os.environ if environ is None else environ
        self.store = store or open_backend(settings, self.clock)
        self.hub = Hub(self.clock)
        self.router = Router(hop_limit=settings.hop_limit)
        self.bus = Bus(self.store.events, self.store.transaction, self.router, self.hub,
                       self.clock, max_batch=settings.max_batch_commit,
                       max_descendants=settings.max_descendants,
                       max_event_bytes=settings.max_event_bytes)
        # Recorded with the config file this process applies, so that replicas sharing
        # the store can say whose file is in effect.
        self.config = ConfigManager(self.store.config, self.bus, self.clock,
                                    identity=f"{socket.gethostname()}/{settings.listen}")
        self.config.register_kind(Kind("routes", "route", validate_route))
        self.config.on_change(self.router.load)
        self.tokens = Tokens(self.store.tokens, self.bus, self.clock)
        """Who may call the API: the admin secrets and the named tokens in the store."""
        self.metrics = Metrics()
        """Typed Prometheus metrics; each feature registers its own when wired."""
        register_core_metrics(self.metrics, self.bus, self.hub, self.router)

        dispatch = DispatchSettings(settings.delivery_poll_s, settings.delivery_concurrency,
                                    settings.allow_private_targets, settings.shutdown_grace_s)
        self.action_kinds = ActionKinds()
        """Kinds of actions plugins provide, shared by the plugin host and the runner."""
        self.plugins = PluginHost(
            bus=self.bus, clock=self.clock, kinds=self.action_kinds,
            section=lambda: self.config.file_sections.get("plugins", {}),
            config_file=settings.config, allow_private_targets=settings.allow_private_targets,
            max_event_bytes=settings.max_event_bytes)
        self.proxy = Proxy(self.bus, allow_private_targets=settings.allow_private_targets)
        self.todos = Todos(bus=self.bus, todos=self.store.todos, silences=self.store.silences,
                           events=self.store.events, clock=self.clock,
                           sweep_s=settings.todo_sweep_s)
        self.delivery = Deliveries(bus=self.bus, repo=self.store.deliveries,
                                   events=self.store.events, clock=self.clock,
                                   settings=dispatch, environ=environ)
        self.actions = Actions(bus=self.bus, repo=self.store.jobs, events=self.store.events,
                               clock=self.clock, settings=dispatch, kinds=self.action_kinds,
                               environ=environ)
        self.actions.service.connect_todos(self.todos.quick_actions)
        self.housekeeping = StoreHousekeeping(
            self.store, self.clock, interval_s=settings.maintenance_interval_s,
            data_dir=settings.data_dir, wal_max_bytes=settings.wal_max_bytes)

        self.retention = Retention(bus=self.bus, repo=self.store.retention, clock=self.clock,
                                   policy=policy_of(settings),
                                   interval_s=settings.maintenance_interval_s)
        """Removes old events by the retention settings (a service only when set)."""
        self.catalog = Catalog(bus=self.bus, repo=self.store.catalog, clock=self.clock,
                               settings=catalog_settings(settings))
        self._wiring = Wiring(self.config, self.router, self.metrics, self.bus)
        wire_plugins(self.plugins, self._wiring)
        wire_proxy(self.proxy, self._wiring)
        self.todos.wire(self._wiring)
        self.delivery.wire(self._wiring)
        self.actions.wire(self._wiring)
        self.housekeeping.wire(self._wiring)
        self.catalog.wire(self._wiring)
        if settings.catalog:
            use_shapes(self.catalog.conforms)
        self.retention.wire(self._wiring)
        self._wiring.service("memory-sweep", lambda: memory_sweep(self.clock))
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        self.ready = False

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
        if self.settings.auth:
            self.tokens.add_admin_secrets([ensure_admin_token(self.settings.data_dir),
                                           self.settings.token or ""])
        else:
            log.warning(NO_AUTH_WARNING)
        self.hub.head = await self.store.events.last_seq()
        self.bus.fanout = self.store.start_live(self.hub.publish, self.hub.head,
                                                self._config_changed_elsewhere,
                                                self._committed_elsewhere)
        for start in self._wiring.starters:
            await start()
        await self.bus.start()
        if self.settings.config:
            await self.config.load_file(self.settings.config)
            self.config.start_watching(self.settings.config)
        else:
            await self.config.refresh()
        # Configured transforms shape every event from the first: the plugins the config
        # names load before the broker listens (it listens once `start` returns).
        try:
            await asyncio.wait_for(self.plugins.settled(), PLUGINS_LOAD_S)
        except TimeoutError:
            log.error("plugins still loading after %ss: starting without them",
                      PLUGINS_LOAD_S)
        tick = min(0.25, self.settings.heartbeat_s / 4)
        self._tasks.append(asyncio.create_task(self.hub.tick(tick), name="hub-ticker"))
        for name, run in self._wiring.services:
            self._tasks.append(asyncio.create_task(_guarded(name, run), name=name))
        self.ready = True
        log.info("broker ready, last seq %s", self.hub.head)

    async def stop(self) -> None:
        """Stop taking work, finish in-flight commits, close streams and the store."""
        self.ready = False
        await self.config.stop_watching()
        for stop in reversed(self._wiring.stoppers):
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

    def _committed_elsewhere(self) -> None:
        """Another process sharing the store committed (its events already reached the
        hub in order): dispatchers, long-polls and pauses look again."""
        self.actions.service.runner.wake()
        self._background_task(self.delivery.remote_commit())

    def _config_changed_elsewhere(self) -> None:
        """Another process changed the configuration: re-read it."""
        self._background_task(self.config.refresh())

    def _background_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def catalog_settings(settings: Settings) -> CatalogSettings:
    return CatalogSettings(
        enabled=settings.catalog, max_entries=settings.catalog_max_entries,
        max_fields=settings.catalog_max_fields, max_depth=settings.catalog_max_depth,
        learn_events=settings.catalog_learn_events,
        silence_factor=settings.catalog_silence_factor,
        silence_min_s=settings.catalog_silence_min_s, interval_s=settings.catalog_interval_s,
        sample_per_commit=settings.catalog_sample_per_commit)


async def _guarded(name: str, run: Service) -> None:
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background service %s stopped with an error", name)
