"""Does the checker find a broken bus? Each mutant puts one of the bus's historical
breaks back into a copy of the broker's source (a temporary folder, never this tree),
runs the checker against a broker started from that copy with a fixed seed, and reports
whether the invariant that break violates failed.

    python -m tests.invariants.mutants                 # every mutant, seed 1
    python -m tests.invariants.mutants hub-unsorted --seed 7 --ops 120

`tests/invariants/test_checker_catches.py` runs the same in `make test`."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.broker_process import ROOT
from tests.invariants.checks import DESCENDANTS, STREAMS
from tests.invariants.runner import RunResult, describe, run_seed

SEED = 1
OPERATIONS = 80


@dataclass(frozen=True)
class Edit:
    """Replace `old` (which must occur exactly once) by `new` in `path`."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str
    """The promise the edits take back, as the bus once broke it."""
    edits: tuple[Edit, ...]
    invariant: str
    """The checker's invariant that must fail with the edits applied."""


MUTANTS = (
    Mutant(
        "hub-unsorted",
        "live streams in commit order: the hub fans a committed batch out in the order the"
        " writer appended it (an event, the audit event its routing derived, the next"
        " event), so SSE readers see a lower seq after a higher one and resume past it",
        (Edit("broker/hub.py", "            batch = sorted(batch, key=_seq_of)\n",
              "            pass\n"),),
        STREAMS,
    ),
    Mutant(
        "own-dead-letters",
        "a failing subscription is never fed its own failures: bus events reach every"
        " route whose filter matches them (not only routes that name them) and a"
        " subscription is handed its own dead letters, so a match-all webhook answering"
        " 400 dead-letters its dead letters",
        (Edit("broker/routing/index.py",
              "    return not is_bus_event(event) or names_bus_events(route.filter.spec)\n",
              "    return True\n"),
         Edit("broker/routing/index.py",
              "        if is_bus_event(event):\n"
              "            return [self.routes[i] for i in self._bus_order]",
              "        if False:\n"
              "            return [self.routes[i] for i in self._bus_order]"),
         Edit("broker/delivery/service.py",
              "        if about_subscription(stored.event) == name:\n",
              "        if False:\n")),
        DESCENDANTS,
    ),
)
BY_NAME = {m.name: m for m in MUTANTS}


def build(mutant: Mutant, folder: Path) -> Path:
    """A copy of the broker (and the shipped plugins it loads) with the mutant's edits;
    the folder to put first on PYTHONPATH."""
    for package in ("broker", "plugins"):
        # Compiled files come along (copied with their sources' times, they stay valid
        # for the files not edited): a broker compiling everything starts slowly.
        shutil.copytree(ROOT / package, folder / package)
    for edit in mutant.edits:
        path = folder / edit.path
        text = path.read_text()
        found = text.count(edit.old)
        if found != 1:
            raise RuntimeError(f"{mutant.name}: {edit.path} has {found} copies of the line"
                               f" to change (the source moved on: update the mutant)")
        path.write_text(text.replace(edit.old, edit.new))
    # The copy, not this tree, is what `python -m broker` must import.
    where = subprocess.run(
        [sys.executable, "-c", "import broker; print(broker.__file__)"],
        env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True, text=True,
        check=True, cwd=folder).stdout.strip()
    if Path(where).resolve() != (folder / "broker" / "__init__.py").resolve():
        raise RuntimeError(f"a broker started from {folder} imports {where}")
    return folder


@dataclass
class Verdict:
    mutant: Mutant
    result: RunResult

    @property
    def caught(self) -> bool:
        return self.mutant.invariant in self.result.findings.failed

    def line(self) -> str:
        failed = ", ".join(self.result.findings.failed) or "nothing"
        what = "caught" if self.caught else "MISSED"
        return (f"{self.mutant.name}: {what} (expected {self.mutant.invariant}; failed:"
                f" {failed}; seed {self.result.seed}, {self.result.operations} operations,"
                f" {self.result.events} events)")


async def run_mutant(mutant: Mutant, seed: int, operations: int, folder: Path) -> Verdict:
    source = build(mutant, folder / "source")
    result = await run_seed(seed, operations, folder / "run", source=source)
    return Verdict(mutant, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.invariants.mutants",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"mutants to run: {', '.join(BY_NAME)}")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--ops", type=int, default=OPERATIONS)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"no mutant named {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    missed = 0
    for mutant in [BY_NAME[n] for n in args.names] or list(MUTANTS):
        with tempfile.TemporaryDirectory(prefix=f"opsbus-mutant-{mutant.name}-") as folder:
            verdict = asyncio.run(run_mutant(mutant, args.seed, args.ops, Path(folder)))
        print(verdict.line(), flush=True)
        if verdict.result.findings.failed:
            print(describe(verdict.result, limit=2), flush=True)
        missed += not verdict.caught
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
