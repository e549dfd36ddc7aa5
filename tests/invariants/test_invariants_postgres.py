"""The invariant checker against three replicas on one PostgreSQL database: the same
workload spread over them (publishes, todo changes, readers), the same invariants. Part
of `make test` with one seed and a short plan (a SIGKILL and restart included);
`make soak REPLICAS=3` runs it longer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from tests.invariants.checks import DESCRIPTIONS, INVARIANTS
from tests.invariants.runner import RunResult, describe, run_seed, summary

pytestmark = [pytest.mark.xdist_group("invariants"), pytest.mark.slow]

SEEDS = [int(s) for s in os.environ.get("OPSBUS_CHECKER_PG_SEEDS", "3").split(",") if s]
OPERATIONS = int(os.environ.get("OPSBUS_CHECKER_PG_OPS", "30"))
REPLICAS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunResult]:
    return [asyncio.run(run_seed(seed, OPERATIONS, tmp_path_factory.mktemp(f"pg-seed-{seed}"),
                                 replicas=REPLICAS)) for seed in SEEDS]


@pytest.mark.parametrize("invariant", INVARIANTS)
def test_invariant_holds_on_three_replicas(runs: list[RunResult], invariant: str,
                                           record_property: Callable[[str, object], None]
                                           ) -> None:
    record_property("checker", {"invariant": invariant, "replicas": REPLICAS, **summary(runs)})
    failed = [r for r in runs if r.findings.violations[invariant]]
    if failed:
        pytest.fail(f"{DESCRIPTIONS[invariant]}:\n" + "\n".join(describe(r) for r in failed),
                    pytrace=False)
    assert sum(r.findings.checked[invariant] for r in runs) > 0

