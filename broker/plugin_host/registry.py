"""The registry a plugin's `register()` fills: collected first, swapped in only if it all worked."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.plugin_host.api import (
    ActionHandler,
    Service,
    SourceHandler,
    SourceRequest,
    TargetHook,
    Transform,
)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class RegistrationError(Exception):
    """A plugin called the registry wrongly (bad name, not callable, name taken)."""


@dataclass
class Registrations:
    """Everything one plugin provides."""

    sources: dict[str, SourceHandler] = field(default_factory=dict)
    actions: dict[str, ActionHandler] = field(default_factory=dict)
    transforms: dict[str, Transform] = field(default_factory=dict)
    targets: dict[str, TargetHook] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    signed: dict[str, bool | Callable[[SourceRequest], bool]] = field(default_factory=dict)
    """Sources that check their requests' signatures themselves (see `Registry.source`)."""

    def provides(self) -> dict[str, list[str]]:
        """The names per kind, for `GET /v1/plugins` and the loaded event."""
        return {kind: sorted(getattr(self, kind)) for kind in
                ("sources", "actions", "transforms", "targets", "services")}


class PluginRegistry:
    """The `registry` object handed to `register()`: implements `api.Registry`."""

    def __init__(self, name: str, config: Mapping[str, Any],
                 owners: Mapping[tuple[str, str], str]) -> None:
        self.name = name
        self.config = config
        self.registered = Registrations()
        self._owners = owners
        """(kind, name) -> plugin, for names other plugins hold."""

    def _add(self, kind: str, name: str, fn: Any, *, coroutine: bool = False) -> None:
        if not isinstance(name, str) or not NAME.match(name):
            raise RegistrationError(f"{kind[:-1]} name {name!r} is invalid")
        if not callable(fn):
            raise RegistrationError(f"{kind[:-1]} {name!r}: handler is not callable")
        if coroutine and not inspect.iscoroutinefunction(fn):
            raise RegistrationError(f"{kind[:-1]} {name!r}: handler must be an async function")
        owner = self._owners.get((kind, name))
        if owner is not None and owner != self.name:
            raise RegistrationError(f"{kind[:-1]} {name!r} is already provided by plugin {owner}")
        table: dict[str, Any] = getattr(self.registered, kind)
        if name in table:
            raise RegistrationError(f"{kind[:-1]} {name!r} is registered twice")
        table[name] = fn

    def source(self, name: str, handler: SourceHandler, *,
               signed: bool | Callable[[SourceRequest], bool] = False) -> None:
        self._add("sources", name, handler)
        self.registered.signed[name] = signed

    def action(self, kind: str, handler: ActionHandler) -> None:
        if kind == "http":
            raise RegistrationError("action kind 'http' is built in")
        self._add("actions", kind, handler, coroutine=True)

    def transform(self, name: str, fn: Transform) -> None:
        self._add("transforms", name, fn)

    def target(self, name: str, fn: TargetHook) -> None:
        self._add("targets", name, fn)

    def service(self, name: str, run: Service) -> None:
        self._add("services", name, run, coroutine=True)

    def secret(self, env_name: str) -> str | None:
        return read_secret(env_name)


def read_secret(env_name: str) -> str | None:
    """A secret from the broker's environment. The one place plugins read it: secrets
    are named in opsbus.toml (`secret_env = "..."`), never written there."""
    return os.environ.get(env_name) or None
