"""Strict CloudEvents 1.0 parsing and validation for the ingest path.

Written from the CloudEvents 1.0.2 core specification, the JSON event format and the
HTTP protocol binding rather than on top of the ``cloudevents`` SDK: as a receiver the
SDK invents ``id`` and ``time`` when they are missing (which defeats ``(source, id)``
deduplication), has no batched mode, chooses the content mode from the presence of
``ce-`` headers instead of ``Content-Type``, and rejects ``"subject": null`` although
the JSON format says ``null`` means unset.

The normalized event is the JSON-format structured representation as a ``dict``:
core attributes first in a fixed order (specversion, id, source, type, subject, time,
datacontenttype, dataschema), then extensions sorted by name, then ``data`` or
``data_base64``. Attribute values are kept exactly as received (``time`` keeps its
original string). ``dumps`` of a normalized event is therefore stable for the same
event however its producer ordered the members.

Every violation raises :class:`~broker.errors.InvalidEvent` naming the attribute (and
the batch index), size limits raise :class:`~broker.errors.TooLarge`, an unknown
CloudEvents format raises :class:`~broker.errors.UnsupportedMediaType`.

Decisions where the specification leaves room (each applies everywhere in this module):

* Attribute names: lowercase ASCII letters and digits (MUST). The spec says names
  SHOULD NOT exceed 20 characters; opsbus accepts up to 20 and rejects longer names,
  because such names break other CloudEvents tooling that enforces the limit and
  an event stored here must stay forwardable.
* ``null`` means unset for every attribute; a ``null`` required attribute is missing.
  ``"data": null`` is an explicit null payload and is kept, except next to a non-null
  ``data_base64``, where it is ignored (some serializers emit both members).
* String values are checked against the type system: no control characters
  (U+0000-U+001F, U+007F-U+009F), no Unicode noncharacters, no lone surrogates.
* ``source`` (URI-reference) and ``dataschema`` (URI) are checked for the RFC 3986
  character repertoire and well-formed percent-escapes, not the full grammar: a
  grammar-exact check would reject sources such as ``10.0.0.1:9090`` that ops tools
  emit and that are harmless as a deduplication scope. ``dataschema`` must in addition
  be absolute (carry a scheme); a fragment is tolerated, as JSON Schema's
  ``format: uri`` (used by the CloudEvents schema) does.
* ``time`` must be an RFC 3339 ``date-time`` with an offset (``Z`` or ``±hh:mm``); the
  separator may be ``T``, ``t`` or a space (RFC 3339 section 5.6 note), a leap second
  ``:60`` is accepted, and year 0000 is not (no runtime can represent it).
* ``datacontenttype`` must be an RFC 2046 media type (``type/subtype`` tokens and
  well-formed parameters) in printable ASCII, since it becomes an HTTP header.
* ``data`` with a datacontenttype that is not JSON (``*/json``, ``*/*+json``) must be a
  string (the JSON format's "MAY fail"): there is no faithful way to put anything else
  into a non-JSON body when the event is delivered in binary mode.
* ``data_base64`` must be strict RFC 4648 base64 (standard alphabet, padded).
* Batched mode: an empty batch is rejected (the spec allows ``[]``, but a publish of
  nothing is a client bug and has no meaningful answer); all entries are validated,
  the first bad one is reported with its index.
* ``application/cloudevents+<format>`` / ``application/cloudevents-batch+<format>``
  other than JSON answer 415; the binding's MAY (treat it as binary) would store an
  event in a format we cannot read.
* Binary mode: header names are case-insensitive; values are unescaped from an HTTP
  quoted-string when quoted, then percent-decoded once (malformed escapes and invalid
  UTF-8 are rejected); raw non-ASCII characters are tolerated (senders ought to
  percent-encode them, but rejecting them helps nobody). A ``ce-datacontenttype``
  header, a repeated ``ce-`` header and ``ce-data`` / ``ce-data_base64`` are rejected.
  Extension values stay strings: headers carry no type.
  ``Content-Type`` becomes ``datacontenttype`` and the body the data:
  empty body -> no data; JSON content type -> the body parsed as JSON (invalid JSON
  is an error on ``data``); ``text/*`` -> a string when UTF-8 (charset absent,
  utf-8 or us-ascii), else ``data_base64``; any other type -> ``data_base64``;
  **no Content-Type** -> no ``datacontenttype`` (none is invented), the body kept as
  a string when it is valid UTF-8, else as ``data_base64``.
* Structured and batched modes ignore ``ce-`` headers (the body is authoritative).
* ``to_binary``: an event without ``datacontenttype`` that has ``data`` is sent as
  ``application/json`` with the JSON-encoded value, as the JSON format requires on
  re-serialization; extension integers and booleans use their canonical strings.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any, Final
from urllib.parse import quote

import orjson

from broker.errors import InvalidEvent, OpsbusError, TooLarge, UnsupportedMediaType
from broker.numbers import NumberError, whole_number

__all__ = [
    "Limits",
    "dumps",
    "new_event",
    "parse_batch",
    "parse_binary",
    "parse_request",
    "parse_request_encoded",
    "parse_structured",
    "to_binary",
    "validate_event",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied by :func:`parse_request`."""

    max_event_bytes: int = 256 * 1024  # one event's serialized (dumps) size
    max_request_bytes: int = 4 * 1024 * 1024
    max_batch_events: int = 1000


SPECVERSION: Final = "1.0"
STRUCTURED_TYPE: Final = "application/cloudevents+json"
BATCH_TYPE: Final = "application/cloudevents-batch+json"
_CE_PREFIX: Final = "application/cloudevents"

MAX_NAME_LENGTH: Final = 20
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1

_REQUIRED: Final = ("specversion", "id", "source", "type")
# The order of core attributes in a normalized event.
_CORE_ORDER: Final = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
)

# Data kinds of a media type: how data is represented and carried.
_KIND_JSON: Final = 0
_KIND_TEXT: Final = 1  # text/* in UTF-8: a string
_KIND_OTHER: Final = 2  # anything else: bytes (data_base64)
_TEXT_SUBTYPES: Final = frozenset({"xml", "yaml", "x-yaml", "javascript", "ecmascript",
                                   "x-www-form-urlencoded", "graphql", "sql", "toml"})
"""Non-`text/*` media types whose content is text: carried as a `data` string."""
_UTF8: Final = (None, "utf-8", "utf8", "us-ascii")

_JSON_TYPE_NAMES: Final[dict[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number with a fraction or exponent",
    bool: "a boolean",
    type(None): "null",
}

# Small caches of values already proven valid. Names, sources, content types and
# schemas repeat across nearly every event of a producer, so caching them takes most
# of the per-event validation cost off the hot path. Bounded: cleared when full, so a
# producer sending unique values costs memory no more than _CACHE_MAX entries each.
_CACHE_MAX: Final = 4096
_NAMES_OK: dict[str, None] = {}
_URIREF_OK: dict[str, None] = {}
_URI_OK: dict[str, None] = {}
_MEDIA: dict[str, tuple[int, str | None]] = {}  # raw value -> (kind, charset)


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _show(value: str, limit: int = 64) -> str:
    """A value quoted for an error message, cut short: problems echo it to clients."""
    if len(value) > limit:
        return repr(value[:limit]) + "..."
    return repr(value)


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------
# Value checks. Each raises InvalidEvent naming the attribute.


def _bad_char(value: str) -> int | None:
    """Index of the first character the CloudEvents String type disallows, or None."""
    for i, ch in enumerate(value):
        o = ord(ch)
        if (
            o < 0x20
            or 0x7F <= o <= 0x9F
            or 0xD800 <= o <= 0xDFFF  # a lone surrogate (paired ones are one code point)
            or 0xFDD0 <= o <= 0xFDEF
            or (o & 0xFFFE) == 0xFFFE
        ):
            return i
    return None


def _check_chars(name: str, value: str) -> None:
    # str.isprintable() is a C-speed test that is True for every string the type
    # system allows except those with spaces other than U+0020, format characters
    # or unassigned code points; only those (rare) strings take the Python loop.
    if not value.isprintable():
        i = _bad_char(value)
        if i is not None:
            raise InvalidEvent(
                f"attribute {name!r} contains a character CloudEvents strings disallow "
                f"(U+{ord(value[i]):04X} at position {i})",
                attribute=name,
            )


def _check_string(name: str, value: object) -> str:
    if type(value) is not str:
        raise InvalidEvent(
            f"attribute {name!r} must be a string, got {_json_type(value)}", attribute=name
        )
    if not value:
        raise InvalidEvent(f"attribute {name!r} must be a non-empty string", attribute=name)
    _check_chars(name, value)
    return value


_HEX: Final = frozenset("0123456789abcdefABCDEF")
_URI_EXCLUDED: Final = ' "<>\\^`{|}'  # printable ASCII that RFC 3986 never allows raw


def _uri_chars_ok(value: str) -> bool:
    if not (value.isascii() and value.isprintable()):
        return False
    for ch in _URI_EXCLUDED:
        if ch in value:
            return False
    pos = value.find("%")
    while pos != -1:
        if value[pos + 1 : pos + 2] not in _HEX or value[pos + 2 : pos + 3] not in _HEX:
            return False
        pos = value.find("%", pos + 3)
    return True


def _has_scheme(value: str) -> bool:
    colon = value.find(":")
    if colon <= 0 or not ("a" <= value[0].lower() <= "z"):
        return False
    for ch in value[1:colon]:
        if not (ch.isalnum() or ch in "+-."):
            return False
    return True


def _check_source(name: str, value: object) -> None:
    if type(value) is str and value in _URIREF_OK:
        return
    text = _check_string(name, value)
    if not _uri_chars_ok(text):
        raise InvalidEvent(
            f"attribute {name!r} must be a URI-reference (RFC 3986): {_show(text)} has "
            "characters that must be percent-encoded or a malformed percent-escape",
            attribute=name,
        )
    _remember(_URIREF_OK, text, None)


def _check_dataschema(name: str, value: object) -> None:
    if type(value) is str and value in _URI_OK:
        return
    text = _check_string(name, value)
    if not _uri_chars_ok(text) or not _has_scheme(text):
        raise InvalidEvent(
            f"attribute {name!r} must be an absolute URI (RFC 3986), got {_show(text)}",
            attribute=name,
        )
    _remember(_URI_OK, text, None)


def _check_time(name: str, value: object) -> None:
    text = _check_string(name, value)
    if not _is_rfc3339(text):
        raise InvalidEvent(
            f"attribute {name!r} must be an RFC 3339 timestamp such as "
            f"'2024-05-01T12:00:00Z', got {_show(text)}",
            attribute=name,
        )


_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
"""RFC 3339 `date-time` but for the date's ranges, which `_date_ok` checks. ASCII digits
only (a Unicode digit class would take any script's digits)."""
_RFC3339_MATCH: Final = _RFC3339.fullmatch
_DATES_OK: dict[str, bool] = {}


def _date_ok(date: str) -> bool:
    """`YYYY-MM-DD` names a day that exists (leap years; no year 0000). Cached: the
    dates of a stream of events are few."""
    found = _DATES_OK.get(date)
    if found is None:
        try:
            datetime(int(date[0:4]), int(date[5:7]), int(date[8:10]))
            found = True
        except ValueError:
            found = False
        _remember(_DATES_OK, date, found)
    return found


def _is_rfc3339(v: str) -> bool:
    # A pattern and a calendar check rather than datetime.fromisoformat, which accepts
    # ISO 8601 forms that RFC 3339 does not (date only, no offset, basic format, week
    # dates). A leap second (60) is legal in RFC 3339.
    return _RFC3339.fullmatch(v) is not None and _date_ok(v[:10])


_TOKEN: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _is_token(text: str) -> bool:
    return bool(text) and _TOKEN.issuperset(text)


def _parse_media_type(raw: str) -> tuple[int, str | None] | None:
    """(data kind, charset) of an RFC 2046 media type, or None when it is malformed."""
    cached = _MEDIA.get(raw)
    if cached is not None:
        return cached
    if not (raw.isascii() and raw.isprintable()):
        return None
    essence, _, params = raw.partition(";")
    main, slash, sub = essence.strip().partition("/")
    if not slash or not _is_token(main) or not _is_token(sub):
        return None
    main = main.lower()
    sub = sub.lower()
    charset: str | None = None
    # Parameters: *( OWS ";" OWS name "=" ( token / quoted-string ) ), scanned by hand
    # because a quoted value may itself contain ";".
    i, n = 0, len(params)
    while i < n:
        while i < n and params[i] in " \t;":
            i += 1
        if i == n:
            break
        eq = params.find("=", i)
        if eq == -1 or not _is_token(params[i:eq]):
            return None
        pname = params[i:eq].lower()
        i = eq + 1
        if i < n and params[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and params[i] != '"':
                if params[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(params[i])
                i += 1
            if i >= n:
                return None  # unterminated quoted-string
            i += 1
            pvalue = "".join(chars)
        else:
            end = params.find(";", i)
            end = n if end == -1 else end
            pvalue = params[i:end].rstrip(" \t")
            if not _is_token(pvalue):
                return None
            i = end
        while i < n and params[i] in " \t":
            i += 1
        if i < n and params[i] != ";":
            return None
        if pname == "charset":
            charset = pvalue.lower()
    if sub == "json" or sub.endswith("+json"):
        kind = _KIND_JSON
    elif main == "text" or sub in _TEXT_SUBTYPES or sub.endswith("+xml"):
        kind = _KIND_TEXT
    else:
        kind = _KIND_OTHER
    result = (kind, charset)
    _remember(_MEDIA, raw, result)
    return result


def _media_kind(name: str, value: str) -> tuple[int, str | None]:
    parsed = _parse_media_type(value)
    if parsed is None:
        raise InvalidEvent(
            f"attribute {name!r} must be an RFC 2046 media type such as "
            f"'application/json', got {_show(value)}",
            attribute=name,
        )
    return parsed


def _check_datacontenttype(name: str, value: object) -> None:
    if type(value) is str and value in _MEDIA:
        return
    _media_kind(name, _check_string(name, value))


def _check_specversion(value: object) -> None:
    if value is None or value == "":
        raise InvalidEvent("missing required attribute 'specversion'", attribute="specversion")
    if type(value) is not str:
        raise InvalidEvent(
            f"attribute 'specversion' must be a string, got {_json_type(value)}",
            attribute="specversion",
        )
    if value != SPECVERSION:
        raise InvalidEvent(
            f"unsupported specversion {_show(value)}: only '1.0' is accepted",
            attribute="specversion",
        )


def _noop(name: str, value: object) -> None:
    pass  # specversion: checked before the loop


_CORE_RANK: Final = {name: rank for rank, name in enumerate(_CORE_ORDER)}

# A check raises InvalidEvent; what it returns (if anything) is ignored.
_CORE_CHECKS: Final[dict[str, Callable[[str, object], object]]] = {
    "specversion": _noop,
    "id": _check_string,
    "source": _check_source,
    "type": _check_string,
    "subject": _check_string,
    "time": _check_time,
    "datacontenttype": _check_datacontenttype,
    "dataschema": _check_dataschema,
}


def _check_name(name: str) -> None:
    if name in _NAMES_OK:
        return
    if type(name) is not str:  # only from Python callers; JSON keys are strings
        raise InvalidEvent(f"attribute names are strings, got {name!r}", attribute=str(name))
    if name == "data":  # only reachable from binary mode (ce-data)
        raise InvalidEvent("attribute name 'data' is reserved", attribute=name)
    if not (name and name.isascii() and name.isalnum() and name.lower() == name):
        raise InvalidEvent(
            f"invalid attribute name {_show(name)}: CloudEvents attribute names consist of "
            "lowercase ASCII letters and digits only",
            attribute=name[:64],
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidEvent(
            f"attribute name {_show(name)} is {len(name)} characters long; opsbus enforces "
            f"the CloudEvents limit of {MAX_NAME_LENGTH}",
            attribute=name[:64],
        )
    _remember(_NAMES_OK, name, None)


def _check_extension_value(name: str, value: object) -> None:
    # Exact type tests, not isinstance: bool is an int subclass and must not be
    # range-checked, and JSON decoding yields exactly these types.
    if type(value) is str:
        _check_chars(name, value)
    elif type(value) is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidEvent(
                f"extension {name!r} is an integer outside the CloudEvents Integer range "
                f"(signed 32-bit, {_INT_MIN}..{_INT_MAX})",
                attribute=name,
            )
    elif type(value) is not bool:
        raise InvalidEvent(
            f"extension {name!r} must be a string, an integer or a boolean, "
            f"got {_json_type(value)}",
            attribute=name,
        )


def _check_hopcount(value: object) -> None:
    """`hopcount` bounds loops, so it must read the same everywhere: a whole number in the
    Integer range, as an integer or (binary mode) in ASCII digits."""
    if type(value) is int:
        ok = 0 <= value <= _INT_MAX
    elif type(value) is str:
        try:
            whole_number(value, maximum=_INT_MAX)
            ok = True
        except NumberError:
            ok = False
    else:
        ok = False
    if not ok:
        shown = _show(value) if type(value) is str else _json_type(value)
        raise InvalidEvent(f"'hopcount' must be a whole number from 0 to {_INT_MAX} (an integer"
                           f" or ASCII digits), got {shown}", attribute="hopcount")


_EXTENSION_CHECKS: Final[dict[str, Callable[[object], None]]] = {"hopcount": _check_hopcount}
"""Extensions the broker itself reads, checked beyond the type system."""


def _check_base64(value: object) -> None:
    if type(value) is not str:
        raise InvalidEvent(
            f"'data_base64' must be a string, got {_json_type(value)}", attribute="data_base64"
        )
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # binascii.Error, and non-ASCII str
        raise InvalidEvent(
            "'data_base64' is not valid base64 (RFC 4648, standard alphabet, padded)",
            attribute="data_base64",
        ) from None


# --------------------------------------------------------------------------------------
# Validation of one structured (JSON-decoded) event.


def _shapes() -> dict[tuple[str, ...], tuple[bool, bool, bool, bool, bool]]:
    """Member lists `_plain` takes: the required attributes, any of the optional core
    ones, then maybe `data`, in normalized order; each with which optional ones it has."""
    shapes: dict[tuple[str, ...], tuple[bool, bool, bool, bool, bool]] = {}
    optional = _CORE_ORDER[len(_REQUIRED):]
    for bits in range(2 ** (len(optional) + 1)):
        has = tuple(bool(bits >> at & 1) for at in range(len(optional) + 1))
        names = [*_REQUIRED, *(n for n, on in zip(optional, has, strict=False) if on)]
        if has[-1]:
            names.append("data")
        shapes[tuple(names)] = has  # type: ignore[assignment]
    return shapes


_PLAIN_SHAPES: Final = _shapes()


def _plain(obj: dict[str, Any]) -> bool:
    """Whether `obj` is proven a valid event in normalized form by the cheap tests that
    cover what nearly every producer sends: core attributes and `data` only, in the
    normalized order, none null, each value accepted by a cache of values proven valid
    or by the same tests the full validation makes. False means "not proven", not
    "invalid": `validate_event` then decides, and names what is wrong."""
    shape = _PLAIN_SHAPES.get(tuple(obj))
    if shape is None:
        return False
    subject, time, dct, schema, data = shape
    spec, id_, source, kind = obj["specversion"], obj["id"], obj["source"], obj["type"]
    if (type(spec) is not str or spec != SPECVERSION or type(id_) is not str or not id_
            or type(kind) is not str or not kind or type(source) is not str
            or source not in _URIREF_OK or not id_.isprintable() or not kind.isprintable()):
        return False
    if subject:
        value = obj["subject"]
        if type(value) is not str or not value or not value.isprintable():
            return False
    if time:
        # `_is_rfc3339` spelled out, and the cache of `_date_ok` looked in first: two
        # calls fewer per event.
        value = obj["time"]
        if (type(value) is not str or _RFC3339_MATCH(value) is None
                or not (_DATES_OK.get(value[:10]) or _date_ok(value[:10]))):
            return False
    if schema:
        value = obj["dataschema"]
        if type(value) is not str or value not in _URI_OK:
            return False
    if dct:
        value = obj["datacontenttype"]
        media = _MEDIA.get(value) if type(value) is str else None
        if media is None:
            return False
        if data:
            # What the full path would change or refuse: a string in a non-text type
            # (carried as data_base64), a JSON value in a type that is not JSON.
            payload = obj["data"]
            if type(payload) is str:
                return media[0] != _KIND_OTHER
            return payload is None or media[0] == _KIND_JSON
    return True


_GET_DATA: Final = itemgetter("data")
_DICTS_ONLY: Final = frozenset({dict})
_SPEC_ONLY: Final = frozenset({SPECVERSION})
_JSON_ONLY: Final = frozenset({_KIND_JSON})


def _attribute_getters() -> dict[tuple[str, ...], itemgetter[Any]]:
    """Per member list `_plain` takes, a getter of its attributes but `data`, in the
    member list's order (one tuple of them per event)."""
    return {names: itemgetter(*(name for name in names if name != "data"))
            for names in _PLAIN_SHAPES}


_ATTRIBUTES: Final = _attribute_getters()


def _distinct(values: tuple[Any, ...]) -> Collection[Any]:
    """The distinct values of one attribute over a batch. Most attributes hold one value
    in every event: equality with the first (`count`) proves it without hashing each."""
    first = values[0]
    return (first,) if values.count(first) == len(values) else set(values)


def _printable_strings(values: Iterable[Any]) -> bool:
    """Each value is a non-empty string of printable characters (`_plain`'s test)."""
    for value in values:
        if type(value) is not str or not value or not value.isprintable():
            return False
    return True


def _plain_batch(items: list[Any]) -> bool:
    """`_plain` of every entry of a batch, decided attribute by attribute over the whole
    batch instead of event by event: the entries all have one member list, and each
    attribute's distinct values pass `_plain`'s tests (the ids, one per event, in C
    loops). The attributes come out of each event in one call, as a row, and the rows
    are turned into one column per attribute; a column whose values all equal its
    first is tested once. A batch's events mostly share all but their ids and data, so
    most values are tested once per batch. False means "not proven" (member lists that
    differ, a value `_plain` would refuse, data in a type that is not JSON): the
    entries then go through `_plain` one by one, which decides and names what is
    wrong."""
    if set(map(type, items)) != _DICTS_ONLY:
        return False
    # One member list: the first's, as long in every entry, and each member name the
    # same in every entry (`count` over a column of names, one per entry: the decoder
    # makes equal names the same object, which `count` compares first).
    names = tuple(items[0])
    shape = _PLAIN_SHAPES.get(names)
    if shape is None or list(map(len, items)).count(len(names)) != len(items):
        return False
    for name, column in zip(names, zip(*items, strict=False), strict=True):
        if column.count(name) != len(column):
            return False
    subject, time, dct, schema, data = shape
    rows = list(map(_ATTRIBUTES[names], items))
    # specversion, id, source, type, then the optional ones present, in that order.
    columns = zip(*rows, strict=True)
    try:
        # A value that cannot be hashed (an array or object) raises TypeError, as does
        # `str.isprintable` of an id that is not a string: not proven.
        if set(_distinct(next(columns))) != _SPEC_ONLY:
            return False
        ids = next(columns)
        if not all(ids) or not all(map(str.isprintable, ids)):
            return False
        for source in _distinct(next(columns)):
            if type(source) is not str or source not in _URIREF_OK:
                return False
        if not _printable_strings(_distinct(next(columns))):
            return False
        if subject and not _printable_strings(_distinct(next(columns))):
            return False
        if time:
            for value in _distinct(next(columns)):
                if (type(value) is not str or _RFC3339_MATCH(value) is None
                        or not _date_ok(value[:10])):
                    return False
        if dct:
            kinds = set()
            for value in _distinct(next(columns)):
                media = _MEDIA.get(value) if type(value) is str else None
                if media is None:
                    return False
                kinds.add(media[0])
            # With JSON types only, any data is as `_plain` takes it; a text type takes
            # only some (a string), which is looked at per event.
            if data and kinds != _JSON_ONLY:
                return False
        if schema:
            for value in _distinct(next(columns)):
                if type(value) is not str or value not in _URI_OK:
                    return False
    except TypeError:
        return False
    return True


def validate_event(obj: object) -> dict[str, Any]:
    """Validate a JSON-decoded structured-mode event; return its normalized form.

    The input is not modified. Raises :class:`InvalidEvent` naming the attribute.
    """
    if type(obj) is dict and _plain(obj):
        return dict(obj)
    return _validate_full(obj)


def _validate_full(obj: object) -> dict[str, Any]:
    """`validate_event` for every event, the ones `_plain` proves valid included."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {_json_type(obj)}")
    get = obj.get
    _check_specversion(get("specversion"))
    for name in _REQUIRED:
        if get(name) is None:
            raise InvalidEvent(f"missing required attribute {name!r}", attribute=name)

    extensions: list[str] | None = None
    has_data = False
    data: object = None
    data_b64: object = None
    core_checks = _CORE_CHECKS
    # Whether the members are already in normalized order, none null: then the
    # normalized event is a plain copy (most producers write the core attributes in the
    # specification's order).
    in_order = True
    rank = -1
    for name, value in obj.items():
        check = core_checks.get(name)
        if check is not None:
            if value is not None:
                check(name, value)
                if in_order:
                    next_rank = _CORE_RANK[name]
                    in_order = next_rank > rank
                    rank = next_rank
            else:
                in_order = False
        elif name == "data":
            rank = len(_CORE_ORDER)
            has_data = True
            data = value
        elif name == "data_base64":
            in_order = False
            if value is not None:
                _check_base64(value)
                data_b64 = value
        else:
            in_order = False
            _check_name(name)
            if value is not None:
                _check_extension_value(name, value)
                special = _EXTENSION_CHECKS.get(name)
                if special is not None:
                    special(value)
                if extensions is None:
                    extensions = [name]
                else:
                    extensions.append(name)

    if data_b64 is not None:
        if has_data and data is not None:
            raise InvalidEvent(
                "an event carries either 'data' or 'data_base64', not both", attribute="data"
            )
        has_data = False
        # One representation whatever the mode: text types as a `data` string,
        # anything else as `data_base64` (binary mode decides the same way).
        dct = get("datacontenttype")
        text = _text_of(dct, str(data_b64)) if type(dct) is str else None
        if text is not None:
            data, data_b64, has_data = text, None, True
    elif (has_data and type(data) is str and type(dct := get("datacontenttype")) is str
          and _media_kind("datacontenttype", dct)[0] == _KIND_OTHER):
        data_b64, has_data = base64.b64encode(data.encode()).decode("ascii"), False
    elif has_data and data is not None and type(data) is not str:
        dct = get("datacontenttype")
        if dct is not None and _media_kind("datacontenttype", dct)[0] != _KIND_JSON:
            raise InvalidEvent(
                f"'data' must be a string when datacontenttype {_show(dct)} is not JSON "
                f"(got {_json_type(data)}); send binary content as 'data_base64'",
                attribute="data",
            )

    if in_order and data_b64 is None:
        return dict(obj)
    out: dict[str, object] = {}
    for name in _CORE_ORDER:
        value = get(name)
        if value is not None:
            out[name] = value
    if extensions is not None:
        if len(extensions) > 1:
            extensions.sort()
        for name in extensions:
            out[name] = obj[name]
    if data_b64 is not None:
        out["data_base64"] = data_b64
    elif has_data:
        out["data"] = data
    return out


def _text_of(dct: str, data_b64: str) -> str | None:
    """The data as a string when `dct` is a text type in UTF-8 and the bytes decode."""
    kind, charset = _media_kind("datacontenttype", dct)
    if kind != _KIND_TEXT or charset not in _UTF8:
        return None
    try:
        return base64.b64decode(data_b64).decode()
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------------------
# Content modes.


def _loads(body: bytes, what: str) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"{what} is not valid JSON: {exc}") from None


def _repeats_possible(body: bytes, parsed: object, events: list[object]) -> bool:
    """False when no event's top-level member can appear twice in `body`. A cheap
    prefilter (a few byte searches): without `\\u` escapes a member name is written out
    literally, so a member given twice raises the count of its quoted name above the
    number of events holding it; when the name is also used inside data or as a value,
    the count is compared with the parsed body written out again, where each member
    appears once. Only what is still unexplained goes to the exact check."""
    if b"\\u" in body:
        return True
    expected: dict[str, int] = {}
    if len(events) == 1:  # each name once: the event itself is the tally
        only = events[0]
        if type(only) is dict:
            expected = dict.fromkeys(only, 1)
    else:
        for event in events:
            if type(event) is dict:
                for name in event:
                    expected[name] = expected.get(name, 0) + 1
    rewritten: bytes | None = None
    for name, count in expected.items():
        needle = _QUOTED.get(name)
        if needle is None:
            needle = b'"%b"' % name.encode()
            _remember(_QUOTED, name, needle)
        found = body.count(needle)
        if found <= count:
            continue
        if rewritten is None:
            rewritten = orjson.dumps(parsed)
        if found > rewritten.count(needle):
            return True
    return False


_QUOTED: dict[str, bytes] = {}
"""Attribute names as the quoted bytes the prefilter counts."""


def _repeated_members(body: bytes, batch: bool) -> tuple[int | None, str] | None:
    """(batch index or None, name) of the first event member given twice, or None. The
    body is valid JSON already (orjson read it); the standard parser is asked again
    because it shows every member, where orjson keeps the last of each name."""
    tops: list[tuple[dict[str, Any], str]] = []

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(members)
        if len(obj) != len(members):
            seen: set[str] = set()
            for name, _ in members:
                if name in seen:
                    tops.append((obj, name))
                    break
                seen.add(name)
        return obj

    try:
        # Numbers are not needed: skipping them also spares int() its digit limit.
        parsed = json.loads(body, object_pairs_hook=pairs, parse_int=_zero, parse_float=_zero)
    except (ValueError, RecursionError):
        return None  # nested past any limit: refused for its depth later
    repeated = {id(obj): name for obj, name in tops}
    items = parsed if batch and type(parsed) is list else [parsed]
    for index, item in enumerate(items):
        name = repeated.get(id(item))
        if name is not None:
            return (index if batch else None), name
    return None


def _zero(text: str) -> int:
    return 0


def _refuse_repeats(body: bytes, parsed: object, batch: bool) -> None:
    """InvalidEvent naming a top-level member an event gives twice: parsers disagree on
    which one counts (orjson keeps the last, others the first), so such an event could
    be read as another one downstream."""
    events = parsed if batch and type(parsed) is list else [parsed]
    if not _repeats_possible(body, parsed, events):
        return
    found = _repeated_members(body, batch)
    if found is not None:
        index, name = found
        raise InvalidEvent(f"member {_show(name)} appears more than once in the event; give"
                           " each attribute once", attribute=name[:64], index=index)


def parse_structured(body: bytes) -> dict[str, Any]:
    """Parse a structured-mode body (``application/cloudevents+json``)."""
    parsed = _loads(body, "the structured-mode body")
    _refuse_repeats(body, parsed, batch=False)
    return validate_event(parsed)


def _batch_items(body: bytes, max_events: int | None) -> list[Any]:
    """The entries of a batched-mode body, before validation."""
    items = _loads(body, "the batch body")
    if type(items) is not list:
        raise InvalidEvent(f"a batch must be a JSON array of events, got {_json_type(items)}")
    if not items:
        raise InvalidEvent("the batch is empty: send at least one event")
    if max_events is not None and len(items) > max_events:
        raise TooLarge(
            f"the batch holds {len(items)} events, more than the limit of {max_events}",
            limit=max_events,
            size=len(items),
        )
    return items


def _parse_batch(body: bytes, max_events: int | None) -> list[dict[str, Any]]:
    items = _batch_items(body, max_events)
    _refuse_repeats(body, items, batch=True)
    events: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            events.append(validate_event(item))
        except InvalidEvent as err:
            raise err.at_index(i) from None
    return events


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """Parse a batched-mode body (``application/cloudevents-batch+json``), no count limit."""
    return _parse_batch(body, None)


def _unquote_header(value: str) -> str:
    """Undo an RFC 7230 quoted-string (older senders quote instead of percent-encoding)."""
    inner = value[1:-1]
    if "\\" not in inner:
        return inner
    chars: list[str] = []
    i, n = 0, len(inner)
    while i < n:
        ch = inner[i]
        if ch == "\\" and i + 1 < n:
            i += 1
            ch = inner[i]
        chars.append(ch)
        i += 1
    return "".join(chars)


def _percent_decode(name: str, value: str) -> str:
    parts = value.split("%")
    try:
        out = bytearray(parts[0].encode())
        for part in parts[1:]:
            if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
                raise InvalidEvent(
                    f"header ce-{name} has a malformed percent-escape", attribute=name
                )
            out.append(int(part[:2], 16))
            out += part[2:].encode()
        # Strict UTF-8: rejects overlong forms such as %C0%A0 and encoded surrogates,
        # as the binding requires.
        return out.decode()
    except UnicodeError:
        raise InvalidEvent(
            f"header ce-{name} does not percent-decode to valid UTF-8", attribute=name
        ) from None


def _header_value(name: str, raw: str) -> str:
    value = raw.strip(" \t")
    if not value.isascii():
        # The HTTP server decodes header bytes as UTF-8 with surrogate escapes: an
        # escape is a byte that is not UTF-8 (a Latin-1 "\xfc"); name the byte.
        for i, ch in enumerate(value):
            if "\udc80" <= ch <= "\udcff":
                raise InvalidEvent(
                    f"header ce-{name} is not valid UTF-8: byte 0x{ord(ch) - 0xDC00:02X} at"
                    f" position {i} (percent-encode non-ASCII values as UTF-8)",
                    attribute=name)
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote_header(value)
    if "%" in value:
        value = _percent_decode(name, value)
    return value


def _parse_binary(
    headers: Mapping[str, str], body: bytes, content_type: str | None
) -> dict[str, Any]:
    event: dict[str, object] = {}
    for hname, hvalue in headers.items():
        lname = hname.lower()
        if not lname.startswith("ce-"):
            continue
        name = lname[3:]
        if name == "datacontenttype":
            raise InvalidEvent(
                "binary mode carries datacontenttype in the Content-Type header; "
                "a ce-datacontenttype header must not be present",
                attribute="datacontenttype",
            )
        if name in ("data", "data_base64"):
            raise InvalidEvent(
                f"header {hname} is not allowed: in binary mode the body is the data",
                attribute=name,
            )
        _check_name(name)
        if name in event:
            raise InvalidEvent(
                f"header ce-{name} appears more than once; an attribute is set at most once",
                attribute=name,
            )
        event[name] = _header_value(name, hvalue)
    for name in _REQUIRED:
        if not event.get(name):
            raise InvalidEvent(
                f"binary content mode (Content-Type is not {STRUCTURED_TYPE}): "
                f"missing or empty required header ce-{name}",
                attribute=name,
            )

    ctype = content_type.strip(" \t") if content_type else ""
    kind: int | None = None
    charset: str | None = None
    if ctype:
        kind, charset = _media_kind("datacontenttype", ctype)
        event["datacontenttype"] = ctype
    if body:
        if kind == _KIND_JSON:
            try:
                event["data"] = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidEvent(
                    f"the body is not valid JSON although Content-Type {_show(ctype)} "
                    f"declares it: {exc}",
                    attribute="data",
                ) from None
        elif kind is None or (kind == _KIND_TEXT and charset in _UTF8):
            try:
                event["data"] = body.decode()
            except UnicodeDecodeError:
                event["data_base64"] = base64.b64encode(body).decode("ascii")
        else:
            event["data_base64"] = base64.b64encode(body).decode("ascii")
    return validate_event(event)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():  # a plain dict with other capitalization
        if key.lower() == name:
            return value
    return None


def parse_binary(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Parse a binary-mode message: ``ce-*`` headers, ``Content-Type``, body as data."""
    return _parse_binary(headers, body, _header(headers, "content-type"))


def parse_request(
    content_type: str | None, headers: Mapping[str, str], body: bytes, limits: Limits
) -> tuple[list[dict[str, Any]], bool]:
    """Parse an HTTP request carrying events; return ``(events, is_batch)``.

    ``content_type`` is the raw ``Content-Type`` header value (with parameters) or None;
    it alone chooses the content mode. In binary mode it becomes ``datacontenttype``.
    """
    events, _, batch = parse_request_encoded(content_type, headers, body, limits)
    return events, batch


def parse_request_encoded(
    content_type: str | None, headers: Mapping[str, str], body: bytes, limits: Limits
) -> tuple[list[dict[str, Any]], list[bytes], bool]:
    """:func:`parse_request`, also returning each event's :func:`dumps` (made anyway to
    check its size), so that the store need not encode it again."""
    if len(body) > limits.max_request_bytes:
        raise TooLarge(
            f"the request body is {len(body)} bytes, more than the limit of "
            f"{limits.max_request_bytes}",
            limit=limits.max_request_bytes,
            size=len(body),
        )
    if content_type == STRUCTURED_TYPE:
        # The exact type, as nearly every structured publish sends it: no parameters
        # to split off or case to fold.
        return _parse_structured_encoded(body, limits)
    essence = content_type.partition(";")[0].strip(" \t").lower() if content_type else ""
    if essence == STRUCTURED_TYPE:
        return _parse_structured_encoded(body, limits)
    if essence == BATCH_TYPE:
        items = _batch_items(body, limits.max_batch_events)
        events, encoded = _parse_json_mode(body, items, True, limits)
        return events, encoded, True
    if essence.startswith(_CE_PREFIX):
        raise UnsupportedMediaType(
            f"unsupported CloudEvents format {essence!r}: use {STRUCTURED_TYPE}, "
            f"{BATCH_TYPE} or binary mode",
            supported=[STRUCTURED_TYPE, BATCH_TYPE],
        )
    events = [_parse_binary(headers, body, content_type)]
    raws: list[bytes] = []
    failure = _encode_all(events, False, limits.max_event_bytes, raws)
    if failure is not None:
        raise failure
    return events, raws, False


def _parse_structured_encoded(body: bytes, limits: Limits
                              ) -> tuple[list[dict[str, Any]], list[bytes], bool]:
    """`parse_request_encoded` of a structured-mode body. An event `_plain` proves
    valid, with no object or array inside its `data`, that fits the size limit and is
    its own encoding (so no member is given twice) is taken in a few steps: the one
    event's `_parse_json_mode` without its loops and lists. Any other goes that way."""
    parsed = _loads(body, "the structured-mode body")
    if type(parsed) is dict and _plain(parsed) and _flat(parsed.get("data")):
        try:
            raw = orjson.dumps(parsed)
        except orjson.JSONEncodeError:
            raw = b""
        if raw and len(raw) <= limits.max_event_bytes and (body == raw or (
                (body[:1].isspace() or body[-1:].isspace()) and body.strip() == raw)):
            return [parsed], [raw], False
    events, encoded = _parse_json_mode(body, parsed, False, limits)
    return events, encoded, False


def _parse_json_mode(body: bytes, parsed: Any, batch: bool, limits: Limits
                     ) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Validate and encode a structured or batched body's events. The first thing wrong
    is reported, in this order: a member given twice (in any event), an invalid event,
    an event that cannot be stored or is over the size limit (the first by index).
    The repeat check costs a few byte searches per attribute name over the whole body,
    so it runs last, and not at all when the body is exactly the events' own encoding
    (compact JSON in normalized order: an object written out by the encoder holds each
    member once)."""
    items = parsed if batch else [parsed]
    if batch and _plain_batch(items):
        # Decoded here and held by nothing else: the list is the events, not copied.
        flat = _encoded_flat(items, shape_data="data" in items[0],
                             limit=limits.max_event_bytes)
        if flat is not None:
            if not _written_as(body, len(items), flat, batch):
                _refuse_repeats(body, parsed, batch)
            return items, flat
    events: list[dict[str, Any]] = []
    try:
        for i, item in enumerate(items):
            if type(item) is dict and _plain(item):
                # Decoded here and held by nothing else: kept as it is, not copied.
                events.append(item)
                continue
            try:
                events.append(validate_event(item))
            except InvalidEvent as err:
                raise (err.at_index(i) if batch else err) from None
    except InvalidEvent:
        _refuse_repeats(body, parsed, batch)
        raise
    encoded: list[bytes] = []
    failure = _encode_all(events, batch, limits.max_event_bytes, encoded)
    if not _written_as(body, len(events), encoded, batch):
        _refuse_repeats(body, parsed, batch)
    if failure is not None:
        raise failure
    return events, encoded


def _written_as(body: bytes, events: int, encoded: list[bytes], batch: bool) -> bool:
    """Whether `body` is the `encoded` bytes of all its `events` written out (a batch as
    a compact JSON array), whitespace around it aside."""
    if len(encoded) != events:
        return False
    if not batch:
        text = encoded[0]
        if body == text:
            return True
        return (body[:1].isspace() or body[-1:].isspace()) and body.strip() == text
    # The array's members compared where they stand: `b"[" + members + b"]"` would
    # copy the whole body twice more.
    members = b",".join(encoded)
    if body[:1].isspace() or body[-1:].isspace():
        body = body.strip()
    return (len(body) == len(members) + 2 and body[:1] == b"[" and body[-1:] == b"]"
            and body.startswith(members, 1))


def _encoded_flat(events: list[dict[str, Any]], *, shape_data: bool, limit: int
                  ) -> list[bytes] | None:
    """`_encode_all` of a batch's events that all have one member list (`_plain_batch`)
    when none has an object or array inside its `data` and all fit in `limit` bytes:
    each event is then shallow enough to be encoded as it is, by one C loop. None
    otherwise (`_encode_all` then encodes them one by one and names what is wrong)."""
    if shape_data:
        payloads = list(map(_GET_DATA, events))
        kinds = set(map(type, payloads))
        if list in kinds:
            return None
        if dict in kinds:
            objects = (payloads if len(kinds) == 1
                       else [payload for payload in payloads if type(payload) is dict])
            inner = set(map(type, chain.from_iterable(map(dict.values, objects))))
            if dict in inner or list in inner:
                return None
    try:
        encoded = list(map(orjson.dumps, events))
    except orjson.JSONEncodeError:
        return None
    if max(map(len, encoded)) > limit:
        return None
    return encoded


def _encode_all(events: list[dict[str, Any]], batch: bool, limit: int, out: list[bytes]
                ) -> OpsbusError | None:
    """Append each event's `_encoded` bytes to `out`; the error for the first event that
    cannot be stored or is over `limit` bytes (None when all fit).

    An event whose `data` holds no object or array is two levels deep (extension values
    are never containers), as most are: it is encoded as it is. Any other is encoded
    inside `_HEADROOM` levels of lists, one set made for the whole batch and reused: the
    encoder then proves the nesting bound in the same pass that makes the bytes, where
    `_encoded` counts the brackets of every long event again. (The encoder spends about
    as much on the fifteen lists as on a small event, and counting brackets costs more
    than both for an event of a few kilobytes.)"""
    inner: list[Any] | None = None
    nest: list[Any] = []
    dumps = orjson.dumps
    for i, event in enumerate(events):
        try:
            if _flat(event.get("data")):
                raw = dumps(event)
            else:
                if inner is None:
                    inner = nest = [None]
                    for _ in range(_HEADROOM - 1):
                        nest = [nest]
                inner[0] = event
                raw = dumps(nest)[_HEADROOM:-_HEADROOM]
        except orjson.JSONEncodeError:
            try:
                raw = _encoded(event)  # names the problem, or (not too deep) encodes
            except InvalidEvent as err:
                return err.at_index(i) if batch else err
        out.append(raw)
        size = len(raw)
        if size > limit:
            return TooLarge(
                (f"batch entry {i}: " if batch else "")
                + f"the event is {size} bytes serialized, more than the limit of {limit}",
                limit=limit,
                size=size,
                index=i if batch else None,
            )
    return None


# --------------------------------------------------------------------------------------
# Output.


def dumps(event: dict[str, Any]) -> bytes:
    """Compact JSON of a normalized event (attribute order fixed by normalization)."""
    return orjson.dumps(event)


_CONTAINERS: Final = (dict, list)


def _flat(data: Any) -> bool:
    """True when an event's `data` holds no object or array: the event is then two
    levels deep (extension values are never containers), within any depth bound."""
    if type(data) is dict:
        for value in data.values():
            if type(value) in _CONTAINERS:
                return False
        return True
    return type(data) is not list


_HEADROOM: Final = 16
"""Nesting levels kept free above a stored event: API answers, SSE frames, dead letters
and recorded requests wrap it, and the JSON encoder stops at 254 levels."""
MAX_DATA_DEPTH: Final = 254 - _HEADROOM - 1


def encoded_size(event: dict[str, Any]) -> int:
    """The size of the event's JSON; InvalidEvent when it could not be stored and served
    (data nested deeper than MAX_DATA_DEPTH parses, but does not encode inside answers)."""
    return len(_encoded(event))


def _encoded(event: dict[str, Any]) -> bytes:
    """`dumps(event)`, checked to be nested at most MAX_DATA_DEPTH levels deep;
    InvalidEvent as `encoded_size`. A JSON text nested d levels deep holds at least d
    brackets (and 2d bytes), so most events are plainly shallow enough; the others are
    encoded again inside `_HEADROOM` levels of nesting, which fails past the bound."""
    try:
        raw = orjson.dumps(event)
        if len(raw) < 2 * MAX_DATA_DEPTH or raw.count(b"{") + raw.count(b"[") < MAX_DATA_DEPTH:
            return raw
    except orjson.JSONEncodeError:
        pass  # the nested encoding below names the problem
    try:
        wrapped: list[Any] = [event]
        for _ in range(_HEADROOM - 1):
            wrapped = [wrapped]
        return orjson.dumps(wrapped)[_HEADROOM:-_HEADROOM]
    except orjson.JSONEncodeError as exc:
        raise InvalidEvent(f"'data' cannot be stored as JSON: {exc} (data may be nested at"
                           f" most {MAX_DATA_DEPTH} levels deep)", attribute="data") from None


# Printable ASCII the binding lets through unencoded: everything from U+0021 to U+007E
# except '"' and '%'. quote() always keeps letters, digits and "_.-~".
_HEADER_SAFE: Final = "".join(
    ch for ch in map(chr, range(0x21, 0x7F)) if ch not in '"%' and not ch.isalnum()
)


_NOT_HEADERS: Final = frozenset({"data", "data_base64", "datacontenttype"})
"""Attributes a binary-mode message carries in its body or content type, not as `ce-`."""


def _header_safe(value: str) -> bool:
    """True when `value` goes into a header as it is (nothing to percent-encode)."""
    return value.isascii() and value.isprintable() and " " not in value \
        and '"' not in value and "%" not in value


def _percent_encode(value: str) -> str:
    if _header_safe(value):
        return value  # the common case: nothing to encode
    return quote(value, safe=_HEADER_SAFE)  # UTF-8, upper-case hex, as the binding says


def to_binary(event: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Render a normalized event in HTTP binary mode: ``(headers, body)``.

    Headers are ``ce-<attribute>`` (values percent-encoded per the binding) and
    ``content-type`` from ``datacontenttype`` (``application/json`` when the event has
    ``data`` but no datacontenttype, as the JSON format requires).
    """
    headers: dict[str, str] = {}
    for name, value in event.items():
        if name in _NOT_HEADERS or value is None:
            continue
        if type(value) is str:
            headers["ce-" + name] = value
        elif value is True:
            headers["ce-" + name] = "true"
        elif value is False:
            headers["ce-" + name] = "false"
        else:
            headers["ce-" + name] = str(value)
    # Values seldom need encoding: the common case is told for all of them at once,
    # one look at their concatenation rather than one call per header.
    if not _header_safe("".join(headers.values())):
        headers = {name: _percent_encode(text) for name, text in headers.items()}
    dct = event.get("datacontenttype")
    body = b""
    if event.get("data_base64") is not None:
        body = base64.b64decode(event["data_base64"])
    elif "data" in event:
        data = event["data"]
        if dct is None:
            dct = "application/json"
        parsed = _parse_media_type(dct)
        if parsed is None or parsed[0] == _KIND_JSON:
            body = orjson.dumps(data)
        elif type(data) is str:
            body = data.encode()
        elif data is not None:
            raise InvalidEvent(
                f"'data' must be a string when datacontenttype {_show(dct)} is not JSON",
                attribute="data",
            )
    if dct is not None:
        headers["content-type"] = dct
    return headers, body


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event(
    *,
    type: str,
    source: str,
    subject: str | None = None,
    data: object = None,
    id: str | None = None,
    time: str | None = None,
    datacontenttype: str | None = "application/json",
    **extensions: object,
) -> dict[str, Any]:
    """Build a valid, normalized event for the broker's own events.

    ``id`` defaults to a UUID4 and ``time`` to now (UTC, RFC 3339, milliseconds).
    ``data=None`` means no data, and then no datacontenttype is set; ``bytes`` data is
    carried as ``data_base64``. Extensions whose value is None are left out.
    """
    event: dict[str, object] = {
        "specversion": SPECVERSION,
        "id": id if id is not None else str(uuid.uuid4()),
        "source": source,
        "type": type,
        "subject": subject,
        "time": time if time is not None else _now(),
    }
    if isinstance(data, bytes | bytearray | memoryview):
        event["datacontenttype"] = datacontenttype
        event["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        event["datacontenttype"] = datacontenttype
        event["data"] = data
    event.update(extensions)
    normalized = validate_event(event)
    try:
        orjson.dumps(normalized)
    except TypeError as exc:
        raise InvalidEvent(f"'data' is not serializable as JSON: {exc}", attribute="data") from exc
    encoded_size(normalized)
    return normalized


def json_event(*, type: str, source: str, subject: str, time: str, data: dict[str, Any],
               **extensions: int | str) -> dict[str, Any]:
    """A broker event in normalized form without validating it again: the hot path of
    audit events, whose every attribute the broker sets itself (a fixed type and source,
    a stamp from the clock, JSON data built from its records, integer or string
    extensions). Equal to `new_event` with the same arguments and id; validating showed
    up as a tenth of the cost of ingest where every event changes a todo item."""
    event: dict[str, Any] = {
        "specversion": SPECVERSION, "id": str(uuid.uuid4()), "source": source, "type": type,
        "subject": subject, "time": time, "datacontenttype": "application/json",
    }
    for name in sorted(extensions):
        event[name] = extensions[name]
    event["data"] = data
    return event
