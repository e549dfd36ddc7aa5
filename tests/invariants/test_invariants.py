"""The invariant checker's short run, part of `make test`; `make soak` runs it longer.

Each invariant is its own test over the same runs, so a failure names the invariant,
the seed and how to reproduce it (`make soak SEEDS=<seed> OPS=<n>`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.invariants.checks import DESCRIPTIONS, INVARIANTS
from tests.invariants.driver import WEIGHTS
from tests.invariants.runner import RunResult, describe, run_seed, summary

pytestmark = pytest.mark.xdist_group("invariants")

SEEDS = [int(s) for s in os.environ.get("OPSBUS_CHECKER_SEEDS", "1,2").split(",") if s]
OPERATIONS = int(os.environ.get("OPSBUS_CHECKER_OPS", "80"))

@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunResult]:
    results = []
    for seed in SEEDS:
        folder: Path = tmp_path_factory.mktemp(f"checker-seed-{seed}")
        results.append(asyncio.run(run_seed(seed, OPERATIONS, folder)))
    return results


@pytest.mark.parametrize("invariant", INVARIANTS)
def test_invariant_holds(runs: list[RunResult], invariant: str,
                         record_property: Callable[[str, object], None]) -> None:
    record_property("checker", {"invariant": invariant, **summary(runs)})
    failed = [r for r in runs if r.findings.violations[invariant]]
    if failed:
        pytest.fail(f"{DESCRIPTIONS[invariant]}:\n" + "\n".join(describe(r) for r in failed),
                    pytrace=False)


def test_the_workload_exercises_every_invariant_and_operation(runs: list[RunResult]) -> None:
    """A check that checked nothing would pass vacuously."""
    for invariant in INVARIANTS:
        assert sum(r.findings.checked[invariant] for r in runs) > 0, invariant
    done = {kind for r in runs for kind in r.op_seconds}
    assert done >= set(WEIGHTS) - {"flip", "pause", "new_reader", "tail_restart"}, \
        set(WEIGHTS) - done
