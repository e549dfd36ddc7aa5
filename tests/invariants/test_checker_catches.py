"""The checker finds the bus's historical breaks when they are put back: each mutant
edits a copy of the broker's source (see `mutants.py`), a broker runs from the copy, and
the invariant that break violates must fail. A checker that cannot fail proves nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.invariants.mutants import MUTANTS, Mutant, run_mutant

pytestmark = pytest.mark.xdist_group("mutants")

SEED = 1
OPERATIONS = 40
"""Enough for both mutants to show with seed 1 (an out-of-order batch reaches a reader,
the match-all webhook fails); `python -m tests.invariants.mutants` runs more."""


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_checker_finds_the_break(mutant: Mutant, tmp_path: Path) -> None:
    verdict = asyncio.run(run_mutant(mutant, SEED, OPERATIONS, tmp_path))
    assert verdict.caught, f"{verdict.line()}\nthe break: {mutant.breaks}"
