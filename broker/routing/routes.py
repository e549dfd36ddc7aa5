"""Routes as configured: names, targets, validation of the `[[routes]]` kind, and the
compiled form the router evaluates."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.errors import InvalidConfig, OpsbusError
from broker.filters import Filter, compile_filter

TARGET_KINDS = ("queue", "subscription", "action", "plugin")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

def check_name(name: Any, what: str, field: str = "name") -> str:
    """A config object name: letters, digits, `.`, `_`, `-`; up to 63 characters."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidConfig(
            f"{what} name {name!r} is invalid: use letters, digits, '.', '_' or '-'"
            " (at most 63, starting with a letter or digit)", field=field,
        )
    return name


def check_object(spec: Any, what: str, known: Iterable[str]) -> str:
    """The shared checks of a configuration object (a table with only `known` members
    and a valid `name`); returns the name. Errors name the offending `field`."""
    if not isinstance(spec, dict):
        raise InvalidConfig(f"a {what} must be a JSON object (a TOML table)")
    fields = list(known)
    unknown = sorted(set(spec) - set(fields))
    if unknown:
        raise InvalidConfig(f"{what}: unknown field(s) {', '.join(unknown)}"
                            f" (known: {', '.join(fields)})", field=unknown[0])
    return check_name(spec.get("name"), what)


def parse_target(target: Any) -> tuple[str, str]:
    """`queue:db` -> ("queue", "db"); InvalidConfig naming the target otherwise."""
    if not isinstance(target, str) or ":" not in target:
        raise InvalidConfig(
            f"target {target!r} must be 'kind:name' with kind one of {', '.join(TARGET_KINDS)}"
        )
    kind, name = target.split(":", 1)
    if kind not in TARGET_KINDS:
        raise InvalidConfig(
            f"target {target!r}: unknown kind {kind!r} (known: {', '.join(TARGET_KINDS)})"
        )
    check_name(name, f"target {target!r}:")
    return kind, name


ROUTE_FIELDS = ("name", "filter", "targets", "enabled", "description")


def validate_route(spec: Any) -> dict[str, Any]:
    """Check a route's JSON form and return it normalised. Every InvalidConfig carries
    `field` (the offending member, e.g. `targets[1]`) and, for CESQL, `position`."""
    name = check_object(spec, "route", ROUTE_FIELDS)
    # A missing filter would silently match everything, the broker's own todo and
    # delivery events included; match-all must be asked for explicitly with `{}`.
    if "filter" not in spec:
        raise InvalidConfig(f"route {name}: filter is required (use {{}} to match every event)",
                            field="filter")
    try:
        compiled = compile_filter(spec["filter"], strict=True)
    except OpsbusError as exc:
        raise InvalidConfig(f"route {name}: {exc.detail}",
                            **{"field": "filter", **exc.extra}) from None
    targets = spec.get("targets")
    if not isinstance(targets, list) or not targets:
        raise InvalidConfig(f"route {name}: targets must be a non-empty list of 'kind:name'",
                            field="targets")
    for index, target in enumerate(targets):
        try:
            parse_target(target)
        except InvalidConfig as exc:
            raise InvalidConfig(f"route {name}: targets[{index}]: {exc.detail}",
                                field=f"targets[{index}]") from None
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidConfig(f"route {name}: enabled must be true or false", field="enabled")
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidConfig(f"route {name}: description must be a string", field="description")
    return {"name": name, "filter": compiled.spec, "targets": list(dict.fromkeys(targets)),
            "enabled": enabled, "description": description}


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route ready to evaluate."""

    name: str
    filter: Filter
    targets: tuple[tuple[str, str], ...]
    description: str = ""
    implicit: bool = False
    """True for routes derived from another object (a subscription's own filter)."""
    hits: tuple[tuple[str, str, str], ...] = field(init=False, repr=False, compare=False)
    """(kind, name, `kind:name`) of each target: spelled once, not per event routed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hits", tuple((kind, name, f"{kind}:{name}")
                                               for kind, name in self.targets))


def compile_route(spec: dict[str, Any]) -> CompiledRoute:
    """A validated route spec compiled for evaluation."""
    return CompiledRoute(
        spec["name"], compile_filter(spec.get("filter")),
        tuple(parse_target(t) for t in spec["targets"]), spec.get("description", ""),
    )
