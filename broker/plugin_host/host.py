"""The plugin host: loads and reloads plugins, and connects what they register to the broker."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from broker.errors import Conflict, InvalidEvent, OpsbusError, TooLarge
from broker.events import encoded_size, new_event, validate_event
from broker.plugin_host.api import (
    PLUGIN_API_VERSION,
    ActionContext,
    Event,
    Reject,
    ServiceContext,
    SourceRequest,
)
from broker.plugin_host.errors import PluginFailed, PluginInvalidEvent, PluginRejected
from broker.plugin_host.loader import LoadFailed, ModuleCache, PluginFile, discover, last_line
from broker.plugin_host.outbound import GuardedHttp
from broker.plugin_host.registry import PluginRegistry, Registrations, read_secret
from broker.plugin_host.source_auth import check_source
from broker.reserved import refusal, reserved_attribute

if TYPE_CHECKING:
    from broker.actions.kinds import ActionKinds, KindRunner
    from broker.bus import Bus, StoredEvent, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

SOURCE = "opsbus/plugins"
KINDS = ("sources", "actions", "transforms", "targets", "services")


@dataclass
class PluginState:
    """One plugin as `GET /v1/plugins` shows it: the active version and the last error."""

    file: PluginFile
    version: str | None = None
    """Version of the active code; None when no version ever loaded."""
    loaded_at: str | None = None
    registered: Registrations = field(default_factory=Registrations)
    config_key: bytes = b""
    error: dict[str, Any] | None = None
    """`{"message", "at", "version"}` of the last failed load; None once a load works."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"name": self.file.name, "path": str(self.file.path), "origin": self.file.origin,
                "version": self.version, "loaded_at": self.loaded_at,
                "active": self.version is not None, "provides": self.registered.provides(),
                "error": self.error}


class PluginHost:
    """Owns the plugins of one broker. Reloads are serialised by a lock; a plugin's
    registrations are swapped in whole, so a request sees the old or the new version."""

    def __init__(self, *, bus: Bus, clock: Clock, kinds: ActionKinds,
                 section: Callable[[], Any], config_file: str | None,
                 allow_private_targets: bool, max_event_bytes: int) -> None:
        self.bus = bus
        self.clock = clock
        self.kinds = kinds
        self._read_section = section
        """The `[plugins]` table of the last good config file."""
        self.config_file = config_file
        self.max_event_bytes = max_event_bytes
        self.cache = ModuleCache()
        self.plugins: dict[str, PluginState] = {}
        self.section: dict[str, Any] = {}
        self.transforms: list[dict[str, Any]] = []
        self.http = GuardedHttp(allow_private_targets, clock)
        self.errors_total = 0
        self.loaded = asyncio.Event()
        self._section_key: bytes | None = None
        self._watched: list[tuple[Path, str]] = []
        self._lock = asyncio.Lock()
        self._rewatch = asyncio.Event()
        self._pending: set[asyncio.Task[Any]] = set()
        self._last_sync: asyncio.Future[Any] | None = None
        self._action_kinds: set[str] = set()

    # -- configuration and discovery ---------------------------------------------------
    def folders(self) -> list[tuple[Path, str]]:
        """The shipped package, then each `[plugins] paths` entry (relative to the
        config file's folder)."""
        import plugins

        found = [(Path(plugins.__file__).resolve().parent, "shipped")]
        config_file = self.config_file
        base = Path(config_file).resolve().parent if config_file else Path.cwd()
        paths = self.section.get("paths", [])
        for entry in paths if isinstance(paths, list) else []:
            if isinstance(entry, str):
                found.append(((base / entry).resolve(), "folder"))
        return found

    def on_config(self, _objects: object) -> None:
        """Config listener: reload plugins when the `[plugins]` table changed."""
        section = self._read_section()
        key = orjson.dumps(section, option=orjson.OPT_SORT_KEYS, default=str)
        if key != self._section_key:
            self._section_key = key
            self.section = section if isinstance(section, dict) else {}
            self._last_sync = self.spawn(self.sync())

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def settled(self) -> None:
        """Once the loads every config change so far asked for have run (start-up waits
        for it: the config's first reading may come in two, the store's then the file's).
        Loads run one at a time, so the last one asked for is the last to end."""
        while (last := self._last_sync) is not None and not last.done():
            await asyncio.wait([last])

    # -- loading -----------------------------------------------------------------------
    async def sync(self, changed: set[Path] | None = None) -> None:
        """Bring the loaded plugins in line with the folders, the files and the config:
        load new and changed ones, drop removed ones."""
        async with self._lock:
            disabled = set(self.section.get("disabled", []) or [])
            found = {n: f for n, f in discover(self.folders()).items() if n not in disabled}
            for name in sorted(set(self.plugins) - set(found)):
                await self._unload(name)
            for name, plugin_file in found.items():
                config = self.section.get(name, {})
                config = config if isinstance(config, dict) else {}
                key = orjson.dumps(config, option=orjson.OPT_SORT_KEYS, default=str)
                state = self.plugins.get(name)
                if (state is None or state.file.path != plugin_file.path
                        or state.config_key != key
                        or (changed is not None and plugin_file.path in changed)):
                    await self._load(plugin_file, config, key)
            self._install()
            if self.folders() != self._watched:
                self._rewatch.set()  # the watcher re-arms on the new folders
            self.loaded.set()

    def _owners(self, but: str) -> dict[tuple[str, str], str]:
        return {(kind, item): name for name, st in self.plugins.items() if name != but
                for kind in KINDS for item in getattr(st.registered, kind)}

    async def _load(self, plugin_file: PluginFile, config: dict[str, Any], key: bytes) -> None:
        name = plugin_file.name
        state = self.plugins.setdefault(name, PluginState(plugin_file))
        state.config_key = key
        registry = PluginRegistry(name, config, self._owners(but=name))
        module = None
        try:
            module, version = self.cache.load(plugin_file)
            module.register(registry)
        except Exception as exc:
            if module is not None:
                self.cache.discard(module)
            message = exc.message if isinstance(exc, LoadFailed) else last_line(exc)
            await self._failed(state, plugin_file, message)
            return
        self.cache.activate(name, module)
        await self._stop_services(state)
        state.file, state.version, state.loaded_at = plugin_file, version, self.clock.stamp()
        state.registered, state.error = registry.registered, None
        self._start_services(state, config)
        log.info("plugin %s %s loaded from %s", name, version, plugin_file.path)
        if not self.loaded.is_set():
            return  # the first load at start is logged only: a restart adds no events
        await self._announce("opsbus.plugin.loaded", name, {
            "plugin": name, "version": version, "path": str(plugin_file.path),
            "origin": plugin_file.origin, "provides": state.registered.provides()})

    async def _failed(self, state: PluginState, plugin_file: PluginFile, message: str) -> None:
        state.error = {"message": message, "at": self.clock.stamp()}
        keeping = f"; version {state.version} stays active" if state.version else ""
        log.error("plugin %s failed to load from %s: %s%s", plugin_file.name,
                  plugin_file.path, message, keeping)
        await self._announce("opsbus.plugin.failed", plugin_file.name, {
            "plugin": plugin_file.name, "path": str(plugin_file.path), "error": message,
            "active_version": state.version})

    async def _unload(self, name: str) -> None:
        state = self.plugins.pop(name)
        await self._stop_services(state)
        self.cache.remove(name)
        log.info("plugin %s unloaded", name)
        await self._announce("opsbus.plugin.unloaded", name,
                             {"plugin": name, "path": str(state.file.path)})

    async def _announce(self, type_: str, name: str, data: dict[str, Any]) -> None:
        event = new_event(type=type_, source=SOURCE, subject=name, data=data,
                          time=self.clock.stamp())

        async def write(ctx: WriteContext) -> None:
            await ctx.publish(event)

        try:
            await self.bus.run(write)
        except OpsbusError as exc:  # stopping: the log line above still tells
            log.warning("could not publish %s for %s: %s", type_, name, exc.detail)

    # -- wiring into the broker --------------------------------------------------------
    def _install(self) -> None:
        """Point the broker at the current registrations: action kinds, transforms."""
        current = {k for st in self.plugins.values() for k in st.registered.actions}
        for kind in self._action_kinds - current:
            self.kinds.unregister(kind)
        for kind in current:
            self.kinds.register(kind, self._action_runner(kind))
        self._action_kinds = current
        wanted = self.section.get("transforms", []) or []
        chain: list[Callable[[Event], Event | None]] = []
        self.transforms = []
        for tname in wanted if isinstance(wanted, list) else []:
            owner = self._find("transforms", str(tname))
            if owner is None:
                log.error("transform %s is listed in [plugins] transforms but no loaded"
                          " plugin provides it; events pass without it", tname)
                self.transforms.append({"name": tname, "plugin": None,
                                        "error": "no loaded plugin provides it"})
                continue
            self.transforms.append({"name": tname, "plugin": owner[0], "error": None})
            chain.append(self._transform_step(owner[0], str(tname), owner[1]))
        self.bus.transforms.replace(chain)

    def _find(self, kind: str, name: str) -> tuple[str, Any] | None:
        for plugin, state in self.plugins.items():
            table = getattr(state.registered, kind)
            if name in table:
                return plugin, table[name]
        return None

    def _transform_step(self, plugin: str, name: str, fn: Callable[[Event], Event | None]
                        ) -> Callable[[Event], Event | None]:
        def step(event: Event) -> Event | None:
            try:
                result = fn(dict(event))
            except Exception as exc:
                self.errors_total += 1
                log.exception("transform %s of plugin %s failed", name, plugin)
                raise PluginInvalidEvent(
                    f"transform {name} (plugin {plugin}) failed: {last_line(exc)}",
                    plugin=plugin, transform=name) from None
            if result is None:
                return None
            try:
                return validate_event(result)
            except InvalidEvent as exc:
                raise PluginInvalidEvent(
                    f"transform {name} (plugin {plugin}) made an invalid event: {exc.detail}",
                    plugin=plugin, transform=name, attribute=exc.attribute) from None
        return step

    # -- sources -----------------------------------------------------------------------
    async def handle_source(self, name: str, request: SourceRequest, *,
                            api_token: bool = True) -> list[dict[str, Any]]:
        """Run source `name` on a request and publish what it returns. Without
        `api_token` (a caller with the publish scope) the source's own authentication
        is checked first (`source_auth`)."""
        await asyncio.wait_for(self.loaded.wait(), timeout=30)
        found = self._find("sources", name)
        if found is None:
            from broker.errors import NotFound

            raise NotFound(f"no source named {name!r} is loaded",
                           sources=sorted(s for st in self.plugins.values()
                                          for s in st.registered.sources))
        plugin, handler = found
        config = self.section.get(plugin, {})
        request = SourceRequest(request.method, request.path, request.headers, request.query,
                                request.body, config if isinstance(config, dict) else {})
        check_source(name, plugin, request,
                     self.plugins[plugin].registered.signed.get(name, False),
                     api_token=api_token)
        try:
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
        except Reject as exc:
            raise PluginRejected(f"source {name} (plugin {plugin}): {exc.detail}", exc.status,
                                 plugin=plugin) from None
        except Exception as exc:
            self.errors_total += 1
            log.exception("source %s of plugin %s failed", name, plugin)
            raise PluginFailed(f"source {name} (plugin {plugin}) failed: {last_line(exc)}",
                               plugin=plugin) from None
        if not isinstance(result, list):
            raise PluginFailed(f"source {name} (plugin {plugin}) returned"
                               f" {type(result).__name__}, not a list of events", plugin=plugin)
        events = self._validated(result, plugin, f"source {name}")
        return await self.publish(events)

    def _validated(self, events: list[Any], plugin: str, what: str) -> list[Event]:
        checked = []
        for index, event in enumerate(events):
            try:
                if not isinstance(event, dict):
                    raise InvalidEvent("an event must be a JSON object")
                checked.append(validate_event(event))
                size = encoded_size(checked[-1])
                reserved = reserved_attribute(checked[-1])
                if reserved is not None:
                    raise InvalidEvent(refusal(checked[-1], reserved), attribute=reserved)
            except InvalidEvent as exc:
                raise PluginInvalidEvent(
                    f"{what} (plugin {plugin}) produced an invalid event at index {index}:"
                    f" {exc.detail}", plugin=plugin, index=index,
                    attribute=exc.attribute) from None
            limit = self.max_event_bytes
            if size > limit:  # the limit /v1/events applies, so export | replay works
                raise TooLarge(f"{what} (plugin {plugin}) produced an event of {size} bytes"
                               f" at index {index}, more than the limit of {limit}",
                               plugin=plugin, index=index, limit=limit, size=size)
        return checked

    async def publish(self, events: list[Event]) -> list[dict[str, Any]]:
        """Publish each event on its own (they still share a group commit): one event
        conflicting with a stored one must not refuse the others of a notification."""
        async def one(event: Event) -> dict[str, Any]:
            try:
                return (await self.bus.publish([event]))[0].to_dict()
            except Conflict as exc:
                return {"seq": exc.extra.get("seq"), "id": event["id"], "duplicate": True,
                        "conflict": exc.detail}
        return list(await asyncio.gather(*(one(e) for e in events)))

    # -- actions -----------------------------------------------------------------------
    def _action_runner(self, kind: str) -> KindRunner:
        async def run(spec: dict[str, Any], event: Event) -> dict[str, Any]:
            found = self._find("actions", kind)
            request = {"kind": kind, "action": spec.get("name")}
            if found is None:
                return {"ok": False, "status": None, "body": None, "request": request,
                        "error": f"no loaded plugin provides action kind {kind!r}"}
            plugin, handler = found
            config = self.section.get(plugin, {})
            ctx = ActionContext(plugin, config if isinstance(config, dict) else {}, self.http,
                                read_secret)
            try:
                outcome = await handler(spec, event, ctx)
                if not isinstance(outcome, dict) or "ok" not in outcome:
                    raise TypeError(f"returned {type(outcome).__name__} without 'ok'")
            except Exception as exc:
                self.errors_total += 1
                log.exception("action kind %s of plugin %s failed", kind, plugin)
                return {"ok": False, "status": None, "body": None, "request": request,
                        "error": f"plugin {plugin} action {kind} failed: {last_line(exc)}"}
            return {"status": None, "body": None, "error": None, "request": request, **outcome}
        return run

    # -- route targets -----------------------------------------------------------------
    async def route_target(self, ctx: WriteContext, stored: StoredEvent, route: str,
                           name: str) -> dict[str, Any]:
        """Router handler for `plugin:<name>`: record the hit; call the hook after commit."""
        found = self._find("targets", name)
        if found is None:
            return {"hook": None, "note": f"no loaded plugin provides target {name!r}"}
        plugin, hook = found
        event = stored.event

        def call() -> None:
            self.spawn(self._call_hook(plugin, name, hook, event))

        ctx.on_commit(call)
        return {"plugin": plugin, "hook": name}

    async def _call_hook(self, plugin: str, name: str, hook: Callable[[Event], Any],
                         event: Event) -> None:
        try:
            result = hook(dict(event))
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.errors_total += 1
            log.exception("target %s of plugin %s failed on event %s", name, plugin,
                          event.get("id"))

    # -- services ----------------------------------------------------------------------
    def _start_services(self, state: PluginState, config: Mapping[str, Any]) -> None:
        for sname, run in state.registered.services.items():
            ctx = ServiceContext(state.file.name, config, self._service_publish(state.file.name))
            task = asyncio.create_task(self._guard(state.file.name, sname, run(ctx)),
                                       name=f"plugin-{state.file.name}-{sname}")
            state.tasks.append(task)

    def _service_publish(self, plugin: str) -> Callable[[list[Event]], Awaitable[list[Any]]]:
        async def publish(events: list[Event]) -> list[dict[str, Any]]:
            try:
                return await self.publish(self._validated(events, plugin, "service"))
            except OpsbusError as exc:
                if exc.status >= 500:  # the broker is stopping: worth another try later
                    raise
                raise ValueError(exc.detail) from None
        return publish

    async def _guard(self, plugin: str, name: str, coro: Awaitable[None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            self.errors_total += 1
            log.exception("service %s of plugin %s stopped with an error", name, plugin)

    async def _stop_services(self, state: PluginState) -> None:
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        state.tasks.clear()

    # -- watching and lifecycle --------------------------------------------------------
    async def watch(self) -> None:
        """Reload plugins when their files change; re-arms when the folders change."""
        import watchfiles

        await self.loaded.wait()
        while True:
            self._rewatch.clear()
            self._watched = self.folders()
            folders = [str(f) for f, _ in self._watched if f.is_dir()]
            async for changes in watchfiles.awatch(
                *folders, debounce=150, step=30, recursive=False, stop_event=self._rewatch,
                watch_filter=lambda _change, path: path.endswith(".py"),
            ):
                await self.sync(changed={Path(p).resolve() for _, p in changes})

    async def stop(self) -> None:
        """Stop services and hooks; called before the writer drains."""
        for state in self.plugins.values():
            await self._stop_services(state)
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
        await self.http.close()

    def describe(self) -> dict[str, Any]:
        """The `GET /v1/plugins` document."""
        return {"api_version": PLUGIN_API_VERSION,
                "folders": [{"path": str(p), "origin": o} for p, o in self.folders()],
                "plugins": [st.describe() for _, st in sorted(self.plugins.items())],
                "transforms": self.transforms}
