"""The store's SQL statements, kept as data in queries.sql and looked up by name."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z0-9_]+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """{name: statement} of a query file; comment lines are kept out of the statements."""
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise RuntimeError(f"query {name!r} is defined twice")
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        found[name] = "\n".join(lines).strip()
    return found


@cache
def queries() -> dict[str, str]:
    folder = resources.files("broker.store.postgres")
    return parse(folder.joinpath("queries.sql").read_text("utf-8"))


def query(name: str) -> str:
    """One named statement."""
    return queries()[name]
