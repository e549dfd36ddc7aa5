"""LIKE patterns compiled once into the cheapest Python string test that matches them."""

from __future__ import annotations

import re
from collections.abc import Callable


def _tokens(pattern: str) -> list[tuple[str, str]]:
    """Split a pattern into ("lit", text), ("any", "%") and ("one", "_") pieces.

    Only ``\\%`` and ``\\_`` are escapes; any other backslash stands for itself, so a
    pattern without wildcards matches exactly its own text (the conformance suite's
    ``'ab\\c' LIKE 'ab\\c'``).
    """
    pieces: list[tuple[str, str]] = []
    literal: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n and pattern[i + 1] in "%_":
            literal.append(pattern[i + 1])
            i += 2
            continue
        if ch in "%_":
            if literal:
                pieces.append(("lit", "".join(literal)))
                literal = []
            pieces.append(("any" if ch == "%" else "one", ch))
        else:
            literal.append(ch)
        i += 1
    if literal:
        pieces.append(("lit", "".join(literal)))
    return pieces


def compile_like(pattern: str) -> Callable[[str], bool]:
    """A predicate telling whether a string matches the LIKE ``pattern`` (case-sensitive)."""
    pieces = _tokens(pattern)
    kinds = [kind for kind, _ in pieces]
    # Most filters are exact, prefix, suffix or contains tests: skip the regex engine.
    if kinds == []:
        return lambda s: s == ""
    if kinds == ["lit"]:
        text = pieces[0][1]
        return lambda s: s == text
    if kinds == ["lit", "any"]:
        prefix = pieces[0][1]
        return lambda s: s.startswith(prefix)
    if kinds == ["any", "lit"]:
        suffix = pieces[1][1]
        return lambda s: s.endswith(suffix)
    if kinds == ["any", "lit", "any"]:
        inner = pieces[1][1]
        return lambda s: inner in s
    if all(kind == "any" for kind in kinds):
        return lambda s: True
    if "any" not in kinds:
        # Literals and "_" only: a fixed-length regex, linear to match.
        regex = re.compile(_segment_regex(pieces), re.DOTALL)
        fullmatch = regex.fullmatch
        return lambda s: fullmatch(s) is not None
    return _wildcard_matcher(pieces)


def _segment_regex(pieces: list[tuple[str, str]]) -> str:
    return "".join(re.escape(text) if kind == "lit" else "." for kind, text in pieces)


def _wildcard_matcher(pieces: list[tuple[str, str]]) -> Callable[[str], bool]:
    """Match ``seg0 % seg1 % ... % segN`` without a backtracking regex.

    Every segment has a fixed length, so the first is anchored at the start, the last at
    the end, and each middle one can take its leftmost occurrence: that never rules out a
    match a later choice would allow. The cost stays linear-ish in the input, whatever
    the pattern (a regex like ``.*a.*a.*a.*b`` can backtrack polynomially).
    """
    segments: list[list[tuple[str, str]]] = [[]]
    for piece in pieces:
        if piece[0] == "any":
            segments.append([])
        else:
            segments[-1].append(piece)
    compiled = [
        (
            len("".join(text if kind == "lit" else "_" for kind, text in seg)),
            re.compile(_segment_regex(seg), re.DOTALL),
        )
        for seg in segments
    ]
    (first_len, first), *middle, (last_len, last) = compiled

    def match(s: str) -> bool:
        if first_len and first.match(s) is None:
            return False
        pos = first_len
        end = len(s) - last_len
        if end < pos:
            return False
        if last_len and last.match(s, end) is None:
            return False
        for length, regex in middle:
            if not length:
                continue
            found = regex.search(s, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    return match
