"""One checker run: a broker, receivers and readers; the seeded plan; a quiet end;
the snapshot; the checks. `run_seed` is what the test and `make soak` call."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from broker.settings import Settings
from tests.broker_process import AUTH, BrokerProcess
from tests.invariants import checks, scenario
from tests.invariants.api import Api
from tests.invariants.checks import QUIET, Findings
from tests.invariants.driver import Driver, plan, until
from tests.invariants.readers import MARKER_TYPE, Gate
from tests.invariants.receivers import Receivers
from tests.invariants.snapshot import PULL, take

QUIET_TIMEOUT_S = 60.0
READER_TIMEOUT_S = 20.0


def descendant_bound() -> int:
    """The documented bound on one root event's descendants, from the settings."""
    for name, value in vars(Settings()).items():
        if "descendant" in name and isinstance(value, int):
            return value
    return 64  # no setting yet: the checker's own expectation


@dataclass
class RunResult:
    seed: int
    operations: int
    findings: Findings
    seconds: float
    events: int = 0
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each phase (workload, quiet, readers, snapshot, checks)."""
    op_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings.failed


async def _quiesce(driver: Driver, api: Api, findings: Findings) -> None:
    """Let every consequence of the workload happen: hanging receivers answer, paused
    hooks resume (except one paused to stop an amplification), claims lapse, pull
    subscriptions are drained and acknowledged, until a pass changes nothing. A bus that
    does not come to rest fails that invariant; when webhooks are what keeps it busy they
    are paused, so the other checks still run on what happened."""
    driver.receivers.release_hanging()
    for name in list(driver.paused):
        if name in driver.stalled:
            continue
        if name != "chat" or not driver.runaway:
            await api.ok("POST", f"/v1/subscriptions/{name}/resume", {"operator": "checker"})
            driver.paused.discard(name)

    moving = ["nothing checked yet"]
    """What the last pass found still moving (named when the wait times out)."""

    async def quiet() -> bool:
        await driver.guard_runaway()
        before = await api.head()
        if not await driver.push_idle():
            moving[0] = "webhook deliveries pending or leased"
            return False
        claimed = await api.ok("GET", "/v1/todos", params={"state": "claimed", "limit": "1000"})
        if any(i["lease_expires"] for i in claimed["items"]):
            moving[0] = "claimed items with a lease to lapse"
            return False  # a lease will lapse and publish a change
        for name in PULL:
            status = await api.ok("GET", f"/v1/subscriptions/{name}/status")
            if status["state"] == "disabled":
                continue
            batch = await driver.receive("drain", name, 100, 30.0)
            await driver.settle("ack", batch)
            if batch or status["counts"].get("leased", 0):
                moving[0] = f"pull subscription {name} still had messages"
                return False
        moving[0] = "the log still grew"
        return await api.head() == before

    timeout = QUIET_TIMEOUT_S * max(1, len(api.peers) - 1)
    rested = await until(quiet, timeout, "", interval=0.1, required=False)
    findings.check(QUIET, rested, f"still moving {timeout:.0f}s after the workload:"
                   f" {moving[0]}")
    if rested:
        return
    busy = await driver.busy_hooks()
    for name in busy:
        await api.ok("POST", f"/v1/subscriptions/{name}/pause", {"operator": "checker"})
        driver.paused.add(name)
        driver.stalled.add(name)
    driver.ledger.notes.append(f"not at rest after {timeout:.0f}s ({moving[0]}); paused"
                               f" {', '.join(busy) or 'nothing'}")
    await until(quiet, timeout, lambda: f"the broker to become quiet ({moving[0]})",
                interval=0.1)


async def run_seed(seed: int, operations: int, workdir: Path, *, replicas: int = 0,
                   source: Path | None = None) -> RunResult:
    """Drive a fresh broker with the plan for `seed` and check every invariant. With
    `replicas`, that many brokers share one PostgreSQL database: publishes, todo changes
    and readers are spread over them, and the SIGKILL hits the first. With `source`, the
    brokers run the `broker` package found there (a mutant, see `mutants.py`)."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    receivers = await Receivers({h.name: h.behaviour for h in scenario.HOOKS}).start()
    config = workdir / "opsbus.toml"
    server = dict(scenario.SERVER)
    config.write_text(scenario.render(scenario.version(seed, 0), receivers.url, server))
    schema = store_url = None
    args: list[str] = []
    if replicas:
        from tests.pg_support import PG_URL, create_schema, with_schema

        schema = await asyncio.to_thread(create_schema)
        store_url = with_schema(PG_URL, schema)
        args = ["--store", store_url + "&pool_size=3"]
    env = {"PYTHONPATH": str(source)} if source is not None else None
    peers = [BrokerProcess(workdir / ("data" if n == 0 else f"data{n}"), config=config,
                           args=args, env=env) for n in range(max(1, replicas))]
    broker = peers[0]
    gate = Gate()
    findings = Findings()
    rng = random.Random(f"{seed}/clients")
    try:
        for peer in peers:
            await asyncio.to_thread(peer.start, scenario.START_TIMEOUT_S)
        gate.up.set()
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                headers=AUTH) as session:
            api = Api(session, broker, peers, store_url)
            driver = Driver(seed, broker, api, receivers, config, server, gate)
            for _ in range(3):
                await driver.add_reader(rng)
            await driver.add_tail(rng)
            phases: dict[str, float] = {}
            clock = time.monotonic()

            def lap(name: str) -> None:
                nonlocal clock
                phases[name] = round(time.monotonic() - clock, 2)
                clock = time.monotonic()

            watch = asyncio.create_task(driver.watch_runaway())
            try:
                await driver.run(plan(seed, operations))
                lap("workload")
                await _quiesce(driver, api, findings)
                lap("quiet")
                # A subject, so that filters testing one evaluate without an error.
                marker = await driver.publish([{
                    "specversion": "1.0", "id": f"marker-{seed}", "source": "inv/checker",
                    "type": MARKER_TYPE, "subject": "end"}], "structured")
                marker_seq = int(marker[1]["seq"])
                reached = dict(zip(
                    [r.name for r in driver.readers] + [t.name for t in driver.tails],
                    await asyncio.gather(
                        *(r.finish(marker_seq, READER_TIMEOUT_S) for r in driver.readers),
                        *(t.finish(marker_seq, READER_TIMEOUT_S) for t in driver.tails)),
                    strict=True))
                lap("readers")
                await _quiesce(driver, api, findings)  # what the marker itself caused
                await driver.change_config(_nothing)  # the dry run of the last epoch
            finally:
                watch.cancel()
                for reader in driver.readers:
                    await reader.stop()
                for tail in driver.tails:
                    await tail.kill()
            snap = await take(api)
            lap("snapshot")
            ledger = driver.ledger
            await checks.check_streams(findings, api, driver.readers, driver.tails,
                                       ledger.pull_batches, marker_seq, reached)
            checks.check_acked(findings, ledger, snap)
            bound = descendant_bound()
            checks.check_derived(findings, snap, bound)
            checks.check_descendants(findings, snap, bound)
            checks.check_dry_run_routes(findings, ledger, snap)
            await checks.check_dry_run_grouping(findings, api, snap)
            checks.check_items(findings, snap)
            checks.check_webhooks(findings, ledger, snap, receivers.requests)
            checks.check_pull(findings, ledger, snap)
            lap("checks")
            return RunResult(seed, ledger.operations, findings, time.monotonic() - started,
                             len(snap.events), ledger.notes, phases,
                             dict(sorted(ledger.seconds.items(), key=lambda kv: -kv[1])))
    finally:
        for peer in peers:
            peer.stop()
        await receivers.stop()
        if schema is not None:
            from tests.pg_support import drop_schema

            await asyncio.to_thread(drop_schema, schema)


async def _nothing() -> None:
    return None


def describe(result: RunResult, limit: int = checks.EXAMPLES) -> str:
    """Failures of one run, each invariant with its first examples and the seed."""
    lines = []
    for invariant in result.findings.failed:
        found = result.findings.violations[invariant]
        lines.append(f"seed {result.seed}: {invariant}: {len(found)} violation(s)"
                     f" [reproduce: make soak SEEDS={result.seed} OPS={result.operations}]")
        lines += [f"    {v}" for v in found[:limit]]
    return "\n".join(lines)


def summary(results: list[RunResult]) -> dict[str, Any]:
    checked = sum(sum(r.findings.checked.values()) for r in results)
    return {"runs": len(results), "operations": sum(r.operations for r in results),
            "events": sum(r.events for r in results), "invariants checked": checked,
            "failures": sum(len(r.findings.failed) for r in results),
            "failed runs": [r.seed for r in results if not r.ok]}
