"""`python -m tests.invariants`: checker runs for as long as asked (`make soak`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from tests.invariants.runner import RunResult, describe, run_seed, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.invariants",
                                     description=__doc__)
    parser.add_argument("--seconds", type=float, default=0,
                        help="keep starting runs with new seeds until this much time passed")
    parser.add_argument("--seeds", default="",
                        help="comma-separated seeds to run (each once), e.g. 17,42")
    parser.add_argument("--ops", type=int, default=300, help="operations per run")
    parser.add_argument("--replicas", type=int, default=0,
                        help="run that many brokers on one PostgreSQL database"
                             " (127.0.0.1:5432/test, OPSBUS_TEST_PG) instead of one on SQLite")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's folder (broker log, database, config)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not seeds and not args.seconds:
        seeds = [random.randrange(1_000_000)]
    results: list[RunResult] = []
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="opsbus-soak-"))
    queue = list(seeds)
    while queue or (args.seconds and time.monotonic() - started < args.seconds):
        seed = queue.pop(0) if queue else random.randrange(1_000_000)
        workdir = base / f"seed-{seed}"
        result = asyncio.run(run_seed(seed, args.ops, workdir, replicas=args.replicas))
        results.append(result)
        verdict = "ok" if result.ok else "FAILED " + ", ".join(result.findings.failed)
        print(f"seed {seed}: {result.operations} operations, {result.events} events,"
              f" {sum(result.findings.checked.values())} checks, {result.seconds:.1f}s: {verdict}",
              flush=True)
        print(f"    phases: {result.phases}")
        print(f"    per operation: {result.op_seconds}")
        for note in result.notes:
            print(f"    note: {note}")
        if not result.ok:
            print(describe(result), flush=True)
            print(f"    run folder: {workdir}", flush=True)
    figures = summary(results)
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
