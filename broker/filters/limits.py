"""Bounds on the size and shape of a filter, so that compiling and evaluating one stays cheap.

Every filter is compiled under a ``FilterLimits``: a CESQL expression longer than
``max_length`` is refused before it is read, and the parser stops at the first node past
``max_nodes``, the first level past ``max_depth`` and the first IN element past
``max_in_items``, so the work spent on a hostile filter is bounded by the limits, not by
its size. The broker sets the limits from its settings when it starts (``configure``);
code that compiles a filter without naming limits gets those.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

from broker.errors import InvalidConfig, InvalidFilter

DEPTH_CEILING: Final = 64
"""Deepest CESQL nesting any setting may allow: the parser, the compiler and the compiled
closures recurse once per level and must stay well inside Python's recursion limit."""
DIALECT_DEPTH_CEILING: Final = 64
"""Deepest all/any/not nesting any setting may allow (same reason)."""


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """The bounds one filter must fit; each field is the broker setting ``filter_<name>``."""

    max_length: int = 16_384
    """Characters in a CESQL expression; for a dialect object, in all its strings."""
    max_nodes: int = 2_000
    """Syntax nodes: CESQL literals, names, operators and calls, plus all/any/not objects,
    exact/prefix/suffix entries and search words."""
    max_depth: int = 32
    """CESQL nesting: operators, parentheses, calls and IN sets inside one another."""
    max_in_items: int = 1_000
    """Elements of one IN set."""
    max_dialect_depth: int = 64
    """Nesting of the all, any and not dialects."""

    def check(self) -> None:
        """Raise ``InvalidConfig`` naming the setting when a limit cannot work."""
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfig(f"{setting_name(field.name)} must be a positive integer,"
                                    f" got {value!r}", field=setting_name(field.name))
        for name, ceiling in (("max_depth", DEPTH_CEILING),
                              ("max_dialect_depth", DIALECT_DEPTH_CEILING)):
            if getattr(self, name) > ceiling:
                raise InvalidConfig(f"{setting_name(name)} is at most {ceiling} (deeper"
                                    " filters would exhaust the interpreter's stack)",
                                    field=setting_name(name))


DEFAULT_LIMITS: Final = FilterLimits()
_configured: FilterLimits = DEFAULT_LIMITS


def setting_name(field: str) -> str:
    """The broker setting that holds a limit: ``max_nodes`` -> ``filter_max_nodes``."""
    return f"filter_{field}"


def limits_of(settings: Any) -> FilterLimits:
    """The limits named by a settings object's ``filter_*`` fields (checked)."""
    limits = FilterLimits(**{
        field.name: getattr(settings, setting_name(field.name)) for field in fields(FilterLimits)
    })
    limits.check()
    return limits


def configure(limits: FilterLimits) -> None:
    """Make ``limits`` the ones used where a filter is compiled without naming any."""
    global _configured
    limits.check()
    _configured = limits


def configured() -> FilterLimits:
    """The limits set by ``configure`` (the defaults until then)."""
    return _configured


class FilterTooLarge(InvalidFilter):
    """A filter over one of the limits; the problem names the setting and its value."""

    title = "Filter over a limit"
    slug = "filter-too-large"


def exceeded(field: str, limits: FilterLimits, what: str,
             position: dict[str, int] | None = None) -> FilterTooLarge:
    """The error for a filter over ``limits.<field>``: ``what`` says what was found."""
    limit = getattr(limits, field)
    name = setting_name(field)
    return FilterTooLarge(f"{what}; the limit is {limit} ({name})", setting=name, limit=limit,
                          position=position)
