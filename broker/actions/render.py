"""Rendering action templates into a request, escaping each value for where it lands.

Only event fields are substituted; nothing in event data is ever parsed as template,
URL, header or JSON syntax:
- URL path: the value is one percent-encoded segment (`/` becomes %2F, a value of only
  dots is encoded too), so `../` cannot climb; query and fragment values are
  percent-encoded; scheme and host take no placeholders at all.
- header values: CR, LF and other control characters are removed.
- JSON bodies are templated as a JSON document: placeholders live in string values of
  the parsed structure; a string that is exactly one placeholder takes the field's JSON
  value, other strings get the text. The result is serialised, never spliced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yarl

from broker.errors import BadRequest, InvalidConfig
from broker.outbound import clean_header_value
from broker.templates import Template, compile_template, lookup, text_of

URL_HEAD = re.compile(r"^(https?://[^/?#{}]+)(.*)$", re.DOTALL)


class RenderError(BadRequest):
    """A template could not be filled (a URL field is missing)."""


@dataclass(frozen=True, slots=True)
class UrlTemplate:
    """`scheme://host[:port]` literal, then path/query/fragment pieces with placeholders."""

    head: str
    parts: tuple[tuple[str | tuple[str], str], ...]
    """(literal or (field,), where it lands: "path", "query" or "fragment")."""


def compile_url(text: Any, what: str) -> UrlTemplate:
    if not isinstance(text, str):
        raise InvalidConfig(f"{what} must be an http(s) URL template")
    match = URL_HEAD.match(text)
    if match is None:
        raise InvalidConfig(f"{what} must start with http:// or https:// and a host without"
                            f" placeholders, got {text!r}")
    try:
        valid_head = yarl.URL(match.group(1)).host is not None
    except ValueError:  # e.g. an unclosed IPv6 bracket or a port past 65535
        valid_head = False
    if not valid_head:
        raise InvalidConfig(f"{what}: {match.group(1)!r} is not a valid scheme and host")
    rest = compile_template(match.group(2), what)
    parts: list[tuple[str | tuple[str], str]] = []
    where = "path"
    for part in rest.parts:
        parts.append((part, where))
        if isinstance(part, str):
            if "#" in part:
                where = "fragment"
            elif "?" in part and where == "path":
                where = "query"
    return UrlTemplate(match.group(1), tuple(parts))


Lookup = Mapping[str, Any]


def field_value(event: dict[str, Any], params: Lookup | None, name: str) -> Any:
    """Parameters given by an operator override event fields of the same name."""
    if params and name in params:
        return params[name]
    return lookup(event, name)


def _escape(text: str, where: str) -> str:
    if where == "path":
        if text.strip(".") == "":
            return text.replace(".", "%2E")
        return quote(text, safe="")
    return quote(text, safe="")


def render_url(template: UrlTemplate, event: dict[str, Any], params: Lookup | None) -> str:
    out = [template.head]
    for part, where in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text = text_of(field_value(event, params, part[0]))
        if text is None:
            raise RenderError(f"URL field {{{part[0]}}} is missing in the event")
        out.append(_escape(text, where))
    return "".join(out)


def render_text(template: Template, event: dict[str, Any], params: Lookup | None) -> str:
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(text_of(field_value(event, params, part[0])) or "")
    return "".join(out)


def render_header(template: Template, event: dict[str, Any], params: Lookup | None) -> str:
    return clean_header_value(render_text(template, event, params))


def compile_json(value: Any, what: str) -> Any:
    """A JSON body template: the same structure with string values compiled."""
    if isinstance(value, str):
        return compile_template(value, what)
    if isinstance(value, dict):
        return {k: compile_json(v, f"{what}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [compile_json(v, f"{what}[{i}]") for i, v in enumerate(value)]
    return value


def render_json(template: Any, event: dict[str, Any], params: Lookup | None) -> Any:
    if isinstance(template, Template):
        parts = [p for p in template.parts if p != ""]
        if len(parts) == 1 and isinstance(parts[0], tuple):
            return field_value(event, params, parts[0][0])
        return render_text(template, event, params)
    if isinstance(template, dict):
        return {k: render_json(v, event, params) for k, v in template.items()}
    if isinstance(template, list):
        return [render_json(v, event, params) for v in template]
    return template
