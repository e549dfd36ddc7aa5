"""Free-text search: the ``search`` dialect (an opsbus extension) behind ``q=`` parameters.

``{"search": "disk full"}`` matches an event when every word occurs, ignoring case, in
its ``type``, ``source``, ``subject`` or ``data`` (the strings, keys, numbers and
Booleans of JSON data, or text data). A double-quoted phrase is one word:
``"disk full" db-1``. It is what a user typing a bare word into a filter bar expects,
beside CESQL, which addresses attributes by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from broker.errors import InvalidFilter

MAX_TERMS: Final = 32
"""Most words in one search: each word is one scan of the event's text."""
FIELDS: Final = ("type", "source", "subject")
"""The attributes searched, besides the data."""

_TERM = re.compile(r'"([^"]*)"|(\S+)')
_SEPARATOR: Final = "\x00"  # between fields, so that a phrase never spans two of them

Event = dict[str, Any]


def search_terms(text: object, where: str = "q") -> tuple[str, ...]:
    """The case-folded words of a search; ``InvalidFilter`` when there are none or too many."""
    if not isinstance(text, str):
        raise InvalidFilter(f"{where}: a search must be a string of words")
    terms: list[str] = []
    for match in _TERM.finditer(text):
        term = (match.group(1) if match.group(1) is not None else match.group(2))
        term = term.replace(_SEPARATOR, "").strip().casefold()
        if term and term not in terms:
            terms.append(term)
            if len(terms) > MAX_TERMS:
                raise InvalidFilter(f"{where}: a search takes at most {MAX_TERMS} words")
    if not terms:
        raise InvalidFilter(f"{where}: a search needs at least one word")
    return tuple(terms)


def search_matcher(terms: tuple[str, ...]) -> Callable[[Event], bool]:
    """``event -> bool``: every term occurs in the event's searched text. Never raises."""

    def matches(event: Event) -> bool:
        try:
            haystack = searched_text(event)
        except Exception:  # not an event dict: no match, as for the other dialects
            return False
        return all(term in haystack for term in terms)

    return matches


def searched_text(event: Event) -> str:
    """The case-folded text a search looks in: the fields, then the data's values."""
    parts = [value for name in FIELDS if isinstance(value := event.get(name), str)]
    data = event.get("data")
    if isinstance(data, str):
        parts.append(data)
    elif isinstance(data, dict | list):
        _collect(data, parts)
    return _SEPARATOR.join(parts).casefold()


def _collect(data: dict[str, Any] | list[Any], parts: list[str]) -> None:
    # Iterative: stored events are depth-limited, but a caller's dict need not be.
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                parts.append(str(key))
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            parts.append(item)
        elif isinstance(item, bool):
            parts.append("true" if item else "false")
        elif isinstance(item, int | float):
            parts.append(str(item))
