"""Command output: indented JSON for scripts, aligned tables for people."""

from __future__ import annotations

import shutil
from typing import Any

import orjson

WIDEST = 60
"""Characters a cell may take before it is cut (the last column may use the rest of
the terminal instead)."""


def print_json(doc: Any) -> None:
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns under upper-case headers; long cells end in `…`, and the
    last column is cut to the terminal width."""
    widths = [min(WIDEST, max([len(h), *(len(r[i]) for r in rows)]))
              for i, h in enumerate(headers)]
    last = max([len(headers[-1]), *(len(r[-1]) for r in rows)])
    room = shutil.get_terminal_size((120, 24)).columns - sum(w + 2 for w in widths[:-1])
    widths[-1] = max(10, min(last, room))

    def line(cells: list[str]) -> str:
        cut = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(cells, widths,
                                                                      strict=True)]
        return "  ".join(c.ljust(w) for c, w in zip(cut, widths, strict=True)).rstrip()

    return "\n".join([line([h.upper() for h in headers]), *(line(r) for r in rows)])


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    print(table(rows, headers))
