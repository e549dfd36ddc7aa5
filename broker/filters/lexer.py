"""CESQL lexer: expression text to tokens carrying line and column."""

from __future__ import annotations

from typing import Final, NamedTuple

from broker.errors import InvalidFilter

INT: Final = "int"
STRING: Final = "string"
WORD: Final = "word"
DATA: Final = "data"
OP: Final = "op"
EOF: Final = "eof"

# Whitespace the reference grammar skips; other Unicode spaces are not part of the language.
_SPACE: Final = frozenset(" \t\r\n")
_WORD_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_TWO_CHAR_OPS: Final = frozenset({"!=", "<>", "<=", ">="})
_ONE_CHAR_OPS: Final = frozenset("(),+-*/%=<>")


class Token(NamedTuple):
    """One token: ``value`` is the decoded string literal or the data path segments.

    A named tuple, not a frozen dataclass: a long filter makes tens of thousands of them
    and a tuple is several times cheaper to build.
    """

    kind: str
    text: str
    line: int
    column: int
    value: object = None

    @property
    def position(self) -> dict[str, int]:
        """``{"line", "column"}``, both 1-based."""
        return {"line": self.line, "column": self.column}


def parse_error(message: str, line: int, column: int) -> InvalidFilter:
    """An ``InvalidFilter`` for a CESQL parse error at a position."""
    return InvalidFilter(
        f"{message} (line {line}, column {column})", position={"line": line, "column": column}
    )


class TooManyTokens(Exception):
    """Raised by ``tokenize`` past ``max_tokens``; ``token`` is the first one over."""

    def __init__(self, token: Token) -> None:
        super().__init__(token.text)
        self.token = token


def tokenize(text: str, *, data_paths: bool = True, max_tokens: int | None = None
             ) -> list[Token]:
    """Split CESQL text into tokens, ending with an ``EOF`` token.

    ``data_paths`` enables the opsbus extension that reads ``data.a.b`` from JSON data.
    Raises ``InvalidFilter`` with the position of the first character that does not lex,
    and ``TooManyTokens`` once there are more than ``max_tokens`` besides parentheses and
    commas (then it stops reading).
    """
    tokens: list[Token] = []
    i = 0
    n = len(text)
    line = 1
    line_start = 0
    limit = n + 1 if max_tokens is None else max_tokens
    punctuation = 0  # parentheses and commas: not counted against max_tokens
    while i < n:
        if len(tokens) - punctuation > limit:
            raise TooManyTokens(tokens[-1])
        ch = text[i]
        column = i - line_start + 1
        if ch in _SPACE:
            i += 1
            if ch == "\n":
                line += 1
                line_start = i
            continue
        if ch in _WORD_CHARS:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            word = text[i:j]
            if word.isdigit():
                tokens.append(Token(INT, word, line, column))
                i = j
                continue
            if data_paths and word.lower() == "data" and j < n and text[j] == ".":
                i = _data_path(text, i, j, line, column, tokens)
                continue
            tokens.append(Token(WORD, word, line, column))
            i = j
            continue
        if ch == "'" or ch == '"':
            end = _string(text, i, line, column, tokens)
            newlines = text.count("\n", i, end)
            if newlines:
                # A literal may span lines; keep later positions right.
                line += newlines
                line_start = text.rfind("\n", i, end) + 1
            i = end
            continue
        pair = text[i : i + 2]
        if pair in _TWO_CHAR_OPS:
            tokens.append(Token(OP, pair, line, column))
            i += 2
            continue
        if ch in _ONE_CHAR_OPS:
            tokens.append(Token(OP, ch, line, column))
            punctuation += ch in "(),"
            i += 1
            continue
        raise parse_error(f"unexpected character {ch!r}", line, column)
    tokens.append(Token(EOF, "", line, n - line_start + 1))
    return tokens


def _data_path(text: str, start: int, i: int, line: int, column: int, out: list[Token]) -> int:
    """Lex ``data.seg.seg``; ``i`` points at the first dot. Returns the index after the path."""
    n = len(text)
    segments: list[str] = []
    while i < n and text[i] == ".":
        j = i + 1
        while j < n and text[j] in _WORD_CHARS:
            j += 1
        if j == i + 1:
            raise parse_error(
                "a data path needs a name after each '.'", line, column + (i - start) + 1
            )
        segments.append(text[i + 1 : j])
        i = j
    out.append(Token(DATA, text[start:i], line, column, tuple(segments)))
    return i


def _string(text: str, start: int, line: int, column: int, out: list[Token]) -> int:
    """Lex a quoted string literal starting at ``start``; returns the index after it.

    Inside the literal a backslash pairs with the next character: ``\\'`` (or ``\\"`` in a
    double-quoted literal) is the quote itself, every other pair is kept verbatim so that
    ``LIKE`` still sees its ``\\%`` and ``\\_`` escapes. A doubled quote (``'it''s'``) is
    also read as one quote, as SQL users expect and as the reference lexer tokenizes it.
    """
    quote = text[start]
    n = len(text)
    parts: list[str] = []
    i = start + 1
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            parts.append(nxt if nxt == quote else text[i : i + 2])
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:
                parts.append(quote)
                i += 2
                continue
            out.append(Token(STRING, text[start : i + 1], line, column, "".join(parts)))
            return i + 1
        parts.append(ch)
        i += 1
    raise parse_error("unterminated string literal", line, column)
