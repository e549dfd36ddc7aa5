"""The configuration manager: objects from opsbus.toml and the API, validated by kind,
written through the bus, hot-reloaded when the file changes, announced to listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from broker.config.convergence import Decision, decide, file_digest, file_revision
from broker.config.repository import AppliedFile, ConfigObject, ConfigRepository
from broker.errors import Conflict, InvalidConfig, NotFound, OpsbusError
from broker.settings import load_config_file

if TYPE_CHECKING:
    from broker.bus import Bus, WriteContext
    from broker.clock import Clock

log = logging.getLogger(__name__)

FILE_SECTIONS_NOT_OBJECTS = ("server", "plugins")


@dataclass(frozen=True)
class Kind:
    """A kind of configuration object: `routes` in TOML `[[routes]]` and `/v1/routes`."""

    name: str
    singular: str
    validate: Callable[[Any], dict[str, Any]]
    """Returns the normalised spec or raises InvalidConfig naming the problem."""


class ConfigManager:
    """Applies configuration to the store and tells listeners (the router, dispatchers)."""

    def __init__(self, repo: ConfigRepository, bus: Bus, clock: Clock,
                 identity: str = "opsbus") -> None:
        self.repo = repo
        self.identity = identity
        """This process as recorded with a file it applies (host and listen address)."""
        self.bus = bus
        self.clock = clock
        self.kinds: dict[str, Kind] = {}
        self.listeners: list[Callable[[list[ConfigObject]], None]] = []
        self.objects: list[ConfigObject] = []
        self.file_sections: dict[str, Any] = {}
        """Non-object sections of the last good file (e.g. `[plugins]`)."""
        self.path: str | None = None
        """The config file applied at start and watched, if any."""
        self.last_error: str | None = None
        """Why the last reload of the file was refused (the running config stayed); None
        once a reload succeeds."""
        self.last_error_at: str | None = None
        self.loaded_at: str | None = None
        """When the file was last applied successfully."""
        self.reloads = 0
        self.applied: AppliedFile | None = None
        """The file in effect in the store (this process's or another's), as last seen."""
        self.digest: str | None = None
        """The digest of this process's own file, as last read."""
        self.warning: str | None = None
        """Why this process's file is not the one in effect, or whose file it replaced."""
        self._refresh_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None

    def register_kind(self, kind: Kind) -> None:
        self.kinds[kind.name] = kind

    def on_change(self, listener: Callable[[list[ConfigObject]], None]) -> None:
        self.listeners.append(listener)

    def kind(self, name: str) -> Kind:
        if name not in self.kinds:
            raise NotFound(f"no configuration kind {name!r}")
        return self.kinds[name]

    def validate(self, kind: str, spec: Any) -> dict[str, Any]:
        normalised = self.kind(kind).validate(spec)
        wrapped: object = normalised
        for _ in range(16):  # room for the lists and answers that carry it
            wrapped = [wrapped]
        try:
            orjson.dumps(wrapped)
        except orjson.JSONEncodeError as exc:  # e.g. an action body nested 300 levels deep
            raise InvalidConfig(f"{self.kind(kind).singular} {normalised.get('name')!r}"
                                f" cannot be stored as JSON: {exc}") from None
        return normalised

    def parse_file(self, path: str | Path) -> dict[str, list[dict[str, Any]]]:
        """Validate every object in the file; InvalidConfig on the first problem."""
        return self.parse_document(load_config_file(path), path)

    def parse_document(self, doc: dict[str, Any], path: str | Path
                       ) -> dict[str, list[dict[str, Any]]]:
        """Validate the objects of an already-parsed TOML document."""
        parsed: dict[str, list[dict[str, Any]]] = {}
        for section, value in doc.items():
            if section in FILE_SECTIONS_NOT_OBJECTS:
                continue
            if section not in self.kinds:
                known = ", ".join(sorted([*self.kinds, *FILE_SECTIONS_NOT_OBJECTS]))
                raise InvalidConfig(f"{path}: unknown section [{section}] (known: {known})")
            if not isinstance(value, list):
                raise InvalidConfig(f"{path}: {section} must be an array of tables [[{section}]]")
            seen: set[str] = set()
            specs = []
            for index, item in enumerate(value):
                try:
                    spec = self.validate(section, item)
                except OpsbusError as exc:
                    raise InvalidConfig(f"{path}: {section}[{index}]: {exc.detail}",
                                        **exc.extra) from None
                if spec["name"] in seen:
                    raise InvalidConfig(f"{path}: {section}: duplicate name {spec['name']!r}")
                seen.add(spec["name"])
                specs.append(spec)
            parsed[section] = specs
        return parsed

    async def load_file(self, path: str | Path, *, edited: bool = False) -> bool:
        """Apply the file: its objects replace every file-origin object, atomically, in
        a transaction that first compares it with the file in effect (several processes
        may share the store): the same file is applied once, an older one at start-up
        not at all (`convergence.decide`). `edited`: the file changed under us, which
        an operator meant. True when this call changed the stored configuration."""
        # Read once: validating one version of the file and applying another (an editor
        # still writing it) would apply a file nobody checked.
        doc = load_config_file(path)
        parsed = self.parse_document(doc, path)
        digest = file_digest(parsed)
        revision = file_revision(doc, path)

        async def apply(ctx: WriteContext) -> tuple[Decision, AppliedFile | None]:
            writes = self.repo.writes(ctx.transaction)
            applied = await writes.applied_file()
            decision = decide(applied, digest, revision, me=self.identity, edited=edited)
            if not decision.apply:
                return decision, applied
            # Read under the transaction's lock: no other process changes the objects
            # between this read and the writes below.
            existing = await self.repo.objects()
            wanted = {(kind, spec["name"]) for kind, specs in parsed.items() for spec in specs}
            for obj in existing:
                if obj.origin == "file" and (obj.kind, obj.name) not in wanted:
                    await writes.delete(obj.kind, obj.name)
            current = {(o.kind, o.name): o for o in existing}
            for kind, specs in parsed.items():
                for spec in specs:
                    old = current.get((kind, spec["name"]))
                    if old is not None and old.origin != "file":
                        log.warning("%s %r from %s replaces the one created through the API",
                                    self.kinds[kind].singular, spec["name"], path)
                    if old is None or old.spec != spec or old.origin != "file":
                        await writes.put(kind, spec["name"], spec, "file",
                                         self.clock.stamp())
            return decision, await writes.record_file(digest, revision, self.identity,
                                                      self.clock.stamp())

        decision, self.applied = await self.bus.run(apply)
        self.digest = digest
        self.warning = decision.warning
        if decision.warning is not None:
            log.warning("%s: %s", path, decision.warning)
        self.file_sections = {k: v for k, v in doc.items() if k in FILE_SECTIONS_NOT_OBJECTS}
        self.path = str(path)
        self.last_error = self.last_error_at = None
        self.loaded_at = self.clock.stamp()
        await self.refresh()
        return decision.apply

    async def refresh(self) -> None:
        """Re-read every object and tell the listeners (the router swaps its table)."""
        # Serialised, and each refresh reads after the previous one has finished: two
        # concurrent changes can then never leave the older snapshot installed last.
        async with self._refresh_lock:
            self.objects = await self.repo.objects()
            self.applied = await self.repo.applied()
            for listener in self.listeners:
                try:
                    listener(self.objects)
                except Exception:
                    log.exception("configuration listener failed")

    def status(self) -> dict[str, Any]:
        """The config file's state, for `GET /v1/config/status`."""
        applied = self.applied
        return {"file": self.path, "watching": self._watch_task is not None,
                "loaded_at": self.loaded_at, "reloads": self.reloads,
                "error": self.last_error, "error_at": self.last_error_at,
                "objects": {kind: len(self.list(kind)) for kind in self.kinds},
                "digest": self.digest,
                "in_effect": None if self.digest is None or applied is None
                else applied.digest == self.digest,
                "applied": None if applied is None else {
                    "digest": applied.digest, "revision": applied.revision,
                    "applied_by": applied.applied_by, "applied_at": applied.applied_at,
                    "version": applied.version},
                "warning": self.warning}

    def list(self, kind: str) -> list[ConfigObject]:
        self.kind(kind)
        return [o for o in self.objects if o.kind == kind]

    def get(self, kind: str, name: str) -> ConfigObject:
        for obj in self.list(kind):
            if obj.name == name:
                return obj
        raise NotFound(f"no {self.kind(kind).singular} named {name!r}")

    async def put(
        self, kind: str, spec: Any, *, name: str | None = None
    ) -> tuple[ConfigObject, bool]:
        """Create or replace an object through the API; (object, created)."""
        if isinstance(spec, dict) and name is not None:
            spec = {**spec, "name": spec.get("name", name)}
            if spec["name"] != name:
                raise InvalidConfig(f"name in the body ({spec['name']!r}) differs from the URL")
        normalised = self.validate(kind, spec)

        async def write(ctx: WriteContext) -> tuple[ConfigObject, bool]:
            old = await self.repo.get(kind, normalised["name"])
            if old is not None and old.origin == "file":
                raise Conflict(
                    f"{self.kind(kind).singular} {normalised['name']!r} is defined in the"
                    " config file; edit the file instead"
                )
            obj = await self.repo.writes(ctx.transaction).put(
                kind, normalised["name"], normalised, "api", self.clock.stamp())
            return obj, old is None

        result = await self.bus.run(write)
        await self.refresh()
        return result

    async def delete(self, kind: str, name: str) -> None:
        obj = self.get(kind, name)
        if obj.origin == "file":
            raise Conflict(
                f"{self.kind(kind).singular} {name!r} is defined in the config file;"
                " remove it there"
            )

        async def write(ctx: WriteContext) -> bool:
            return await self.repo.writes(ctx.transaction).delete(kind, name)

        await self.bus.run(write)
        await self.refresh()

    def start_watching(self, path: str | Path) -> None:
        self._watch_task = asyncio.create_task(self._watch(Path(path)), name="config-watch")

    async def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except asyncio.CancelledError:
                pass
            self._watch_task = None

    async def _watch(self, path: Path) -> None:
        import watchfiles

        # Watch the folder: editors replace files by rename, which a file watch misses.
        # The filter keeps the folder's other files (the database, often beside the
        # config) from waking this loop and logging at every commit.
        name = path.name
        async for _ in watchfiles.awatch(
            path.parent, debounce=200, step=50, recursive=False,
            watch_filter=lambda _change, changed: Path(changed).name == name,
        ):
            await self.reload(path)

    async def reload(self, path: Path) -> bool:
        """Apply the edited file, or keep the running configuration and say why."""
        try:
            await self.load_file(path, edited=True)
        except OpsbusError as exc:
            self.last_error, self.last_error_at = exc.detail, self.clock.stamp()
            log.error("configuration not reloaded, keeping the running one: %s", exc.detail)
            return False
        except Exception as exc:
            self.last_error, self.last_error_at = f"{path}: {exc}", self.clock.stamp()
            log.exception("configuration reload failed; keeping the running one")
            return False
        self.reloads += 1
        log.info("reloaded configuration from %s", path)
        return True
