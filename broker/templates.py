"""String templates over event fields (`{source}/{subject}`, `{data.labels.alertname}`).

A template only substitutes values looked up in the event: no expressions, no format
specs, no code runs from event data. Placeholders name a context attribute (`{id}`,
`{source}`, `{type}`, `{subject}`, `{time}`, any extension such as `{dedupkey}`) or a
path into the JSON data (`{data.labels.severity}`, `{data.alerts.0.status}`: a number
steps into an array). `{{` and `}}` stand for literal braces. A missing value renders
as the `missing` text given to `render` (empty by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from broker.errors import InvalidConfig
from broker.numbers import whole_number_or

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_ATTRIBUTE = re.compile(r"^[a-z0-9]{1,20}$")
_DATA_PATH = re.compile(r"^data(\.[^.\s]+)*$")


def lookup(event: dict[str, Any], name: str) -> Any:
    """The value `name` (`subject`, `dedupkey`, `data.a.0.b`) has in `event`, or None.

    Reusable on its own (action templates use it). Data paths resolve only when the
    event's data is JSON (an object or array); a JSON null counts as missing."""
    if name == "data" or name.startswith("data."):
        value: Any = event.get("data")
        if name == "data":
            return value
        for step in name[5:].split("."):
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and (index := whole_number_or(step, -1)) >= 0 \
                    and index < len(value):
                value = value[index]
            else:
                return None
            if value is None:
                return None
        return value
    return event.get(name)


def text_of(value: Any) -> str | None:
    """How a looked-up value appears in rendered text; None when it is missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and placeholder names, alternating."""

    source: str
    parts: tuple[str | tuple[str], ...]
    """Literal strings, and 1-tuples holding a placeholder name."""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p[0] for p in self.parts if isinstance(p, tuple))

    def render(self, event: dict[str, Any], missing: str = "") -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = text_of(lookup(event, part[0]))
                out.append(missing if text is None else text)
        return "".join(out)

    def render_optional(self, event: dict[str, Any]) -> str | None:
        """The rendering, or None when every placeholder is missing (and there is no
        literal text): lets `priority = "{data.severity}"` mean "no priority"."""
        out: list[str] = []
        placeholders = found = False
        for part in self.parts:  # one pass: group keys render for every queued event
            if isinstance(part, str):
                out.append(part)
                continue
            placeholders = True
            text = text_of(lookup(event, part[0]))
            if text is not None:
                found = True
                out.append(text)
        if placeholders and not found:
            literal = "".join(p for p in self.parts if isinstance(p, str))
            if not literal.strip():
                return None
        return "".join(out) or None


def compile_template(text: Any, what: str = "template") -> Template:
    """Parse a template; InvalidConfig naming `what` and the bad placeholder otherwise."""
    if not isinstance(text, str):
        raise InvalidConfig(f"{what} must be a string like '{{source}}/{{subject}}'")
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[pos:match.start()])
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if match.group(1) is None:
            raise InvalidConfig(
                f"{what}: unbalanced {token!r} at position {match.start()} in {text!r}"
                " (write {{ or }} for a literal brace)"
            )
        name = match.group(1).strip()
        if not (_ATTRIBUTE.match(name) or _DATA_PATH.match(name)):
            raise InvalidConfig(
                f"{what}: {{{match.group(1)}}} is not an event field; use an attribute"
                " such as {subject} or {dedupkey}, or a data path such as {data.labels.name}"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((name,))
    literal.append(text[pos:])
    if "".join(literal):
        parts.append("".join(literal))
    return Template(text, tuple(parts))
