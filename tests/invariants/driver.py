"""The seeded workload: a plan of operations drawn from the seed, run one after the
other against a real broker while stream readers, tail clients, receivers and the
broker's own dispatchers run alongside."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from broker.events import to_binary
from broker.timeutil import parse_rfc3339
from tests.broker_process import BrokerProcess
from tests.invariants import scenario
from tests.invariants.api import BATCH, NO_ANSWER, STRUCTURED, Api
from tests.invariants.eventgen import EventFactory
from tests.invariants.ledger import Ack, Epoch, Ledger, PullMessage
from tests.invariants.readers import Gate, SseReader, TailClient
from tests.invariants.receivers import Receivers

WEIGHTS: dict[str, float] = {
    "publish": 26, "binary": 8, "batch": 14, "burst": 5, "duplicate": 5, "conflict": 3,
    "batch_conflict": 2, "race": 3, "claim": 6, "claim_race": 3, "release": 3,
    "resolve": 4, "reemit": 3, "pull": 9, "tail_restart": 2, "new_reader": 1,
    "reload": 2, "api_route": 2, "flip": 2, "pause": 1, "drain": 2, "kill": 0.7,
}
READER_FILTERS = (None, "type LIKE 'alert.%'", "source = 'inv/tickets' OR type LIKE 'opsbus.%'",
                  "type LIKE 'opsbus.todo.%'", "subject LIKE 'db-%' OR type = 'job.failed'")
RUNAWAY_FACTOR = 20
"""A store holding this many events per acknowledged publish is amplifying: the
catch-all subscription is paused (as an operator would) so the run can finish."""


def plan(seed: int, operations: int) -> list[str]:
    """The operation kinds of a run: a pure function of the seed."""
    rng = random.Random(f"{seed}/plan")
    kinds = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=operations)
    if operations >= 40:
        # Every run long enough restarts a crashed broker and reloads its config once.
        for kind, where in (("kill", (0.3, 0.6)), ("reload", (0.1, 0.3))):
            if kind not in kinds:
                kinds[rng.randint(int(operations * where[0]), int(operations * where[1]))] = kind
    return kinds


class Driver:
    """Runs a plan and keeps the ledger."""

    def __init__(self, seed: int, broker: BrokerProcess, api: Api, receivers: Receivers,
                 config_path: Path, server: dict[str, Any], gate: Gate) -> None:
        self.seed = seed
        self.broker = broker
        self.api = api
        self.receivers = receivers
        self.config_path = config_path
        self.server = server
        self.gate = gate
        self.ledger = Ledger()
        self.factory = EventFactory(random.Random(f"{seed}/events"))
        self.readers: list[SseReader] = []
        self.tails: list[TailClient] = []
        self.version = 0
        self.api_routes: list[str] = []
        self.epoch_first = 1
        self.paused: set[str] = set()
        self.runaway = False
        self.stalled: set[str] = set()
        """Hooks paused because they were still busy when the bus should have been at
        rest (kept paused so the checks can run on what they did)."""

    # -- publishing ------------------------------------------------------------------
    async def _post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, Any]:
        try:
            return await self.api.call("POST", "/v1/events", data=body, headers=headers,
                                       spread=True)
        except NO_ANSWER:
            return None, None

    async def publish(self, events: list[dict[str, Any]], mode: str, *,
                      expect: str = "new") -> tuple[int | None, Any]:
        """Publish and record; `expect` is new, duplicate or conflict."""
        if mode == "batch":
            status, answer = await self._post(orjson.dumps(events), BATCH)
        elif mode == "binary":
            headers, body = to_binary(events[0])
            status, answer = await self._post(body, headers)
        else:
            status, answer = await self._post(orjson.dumps(events[0]), STRUCTURED)
        keys = [(e["source"], e["id"]) for e in events]
        self.ledger.count(f"publish:{mode}")
        if status is None:
            self.ledger.uncertain.update(keys)
            return status, answer
        if status == 409:
            if expect != "conflict":
                self.ledger.answer_problems.append(f"{mode} publish of {keys} answered 409:"
                                                   f" {answer}")
            self.ledger.refused.extend(k for k in keys if k not in self.ledger.acks)
            return status, answer
        if not 200 <= status < 300:
            self.ledger.answer_problems.append(f"{mode} publish answered {status}: {answer}")
            return status, answer
        if expect == "conflict":
            self.ledger.answer_problems.append(f"a conflicting {mode} publish of {keys} was"
                                               f" accepted: {answer}")
        results = answer if mode == "batch" else [answer]
        for event, result in zip(events, results, strict=True):
            key = (event["source"], event["id"])
            known = self.ledger.acks.get(key)
            if known is not None:
                if not result["duplicate"] or result["seq"] != known.seq:
                    self.ledger.answer_problems.append(
                        f"re-publish of {key} (seq {known.seq}) answered {result}")
                continue
            if result["duplicate"] and key not in self.ledger.uncertain:
                self.ledger.answer_problems.append(f"first publish of {key} answered {result}")
            self.ledger.ack(Ack(key[0], key[1], int(result["seq"]), event, mode))
        return status, answer

    def _acked_sample(self, rng: random.Random) -> Ack | None:
        acks = [a for a in self.ledger.acks.values() if a.mode != "reemit"]
        return rng.choice(acks) if acks else None

    async def op_publish(self, rng: random.Random) -> None:
        await self.publish([self.factory.event()], "structured")

    async def op_binary(self, rng: random.Random) -> None:
        await self.publish([self.factory.event()], "binary")

    async def op_batch(self, rng: random.Random) -> None:
        await self.publish([self.factory.event() for _ in range(rng.randint(2, 20))], "batch")

    async def op_burst(self, rng: random.Random) -> None:
        """Concurrent publishers: the writer commits them together (group commit)."""
        events = [self.factory.event() for _ in range(rng.randint(4, 12))]
        await asyncio.gather(*(self.publish([e], rng.choice(["structured", "binary"]))
                               for e in events))

    async def op_duplicate(self, rng: random.Random) -> None:
        ack = self._acked_sample(rng)
        if ack is None:
            return await self.op_publish(rng)
        if rng.random() < 0.5 or ack.mode == "binary":
            await self.publish([ack.event], ack.mode if ack.mode != "batch" else "structured",
                               expect="duplicate")
        else:
            await self.publish([ack.event, self.factory.event()], "batch")

    async def op_conflict(self, rng: random.Random) -> None:
        ack = self._acked_sample(rng)
        if ack is None or ack.mode == "binary":
            return await self.op_publish(rng)
        await self.publish([self.factory.conflicting(ack.event)], "structured",
                           expect="conflict")

    async def op_batch_conflict(self, rng: random.Random) -> None:
        ack = self._acked_sample(rng)
        if ack is None or ack.mode == "binary":
            return await self.op_batch(rng)
        batch = [self.factory.event() for _ in range(rng.randint(1, 5))]
        batch.insert(rng.randint(0, len(batch)), self.factory.conflicting(ack.event))
        await self.publish(batch, "batch", expect="conflict")

    async def op_race(self, rng: random.Random) -> None:
        """The same new event from two publishers at once: one seq, one original."""
        event = self.factory.event()
        first, second = await asyncio.gather(self.publish([event], "structured"),
                                             self.publish([event], "structured",
                                                          expect="duplicate"))
        answers = [a for s, a in (first, second) if s is not None and 200 <= s < 300]
        if len(answers) == 2:
            if answers[0]["seq"] != answers[1]["seq"] or \
                    sorted([answers[0]["duplicate"], answers[1]["duplicate"]]) != [False, True]:
                self.ledger.answer_problems.append(f"racing publishes answered {answers}")

    # -- todo items --------------------------------------------------------------------
    async def _items(self, state: str) -> list[dict[str, Any]]:
        page = await self.api.ok("GET", "/v1/todos", params={"state": state, "limit": "200"})
        return list(page["items"])

    async def _todo_op(self, item: int, op: str, operator: str, **body: Any) -> dict[str, Any]:
        headers = await self.api.as_operator(operator)
        started = time.time()
        status, answer = await self.api.call("POST", f"/v1/todos/{item}/{op}",
                                             {"operator": operator, **body}, headers=headers,
                                             spread=True)
        record = {"item": item, "op": op, "operator": operator, "status": status,
                  "answer": answer, "started": started, "answered": time.time()}
        self.ledger.claims.append(record)
        self.ledger.count(f"todo:{op}:{status}")
        return record

    async def op_claim(self, rng: random.Random) -> None:
        items = await self._items(rng.choice(["open", "claimed"]))
        if items:
            await self._todo_op(rng.choice(items)["id"], "claim",
                                rng.choice(scenario.OPERATORS))

    async def op_claim_race(self, rng: random.Random) -> None:
        items = await self._items("open")
        if items:
            item = rng.choice(items)["id"]
            first, second = rng.sample(scenario.OPERATORS, 2)
            results = await asyncio.gather(self._todo_op(item, "claim", first),
                                           self._todo_op(item, "claim", second))
            if all(r["status"] == 200 for r in results):
                self.ledger.answer_problems.append(
                    f"item {item}: both {first} and {second} were answered 200 to a claim")

    async def op_release(self, rng: random.Random) -> None:
        items = await self._items("claimed")
        if items:
            item = rng.choice(items)
            force = rng.random() < 0.3
            operator = rng.choice(scenario.OPERATORS) if force else item["owner"]
            await self._todo_op(item["id"], "release", operator, force=force)

    async def op_resolve(self, rng: random.Random) -> None:
        items = await self._items(rng.choice(["open", "claimed"]))
        if items:
            await self._todo_op(rng.choice(items)["id"], "resolve",
                                rng.choice(scenario.OPERATORS), note="checked")

    async def op_reemit(self, rng: random.Random) -> None:
        items = await self._items(rng.choice(["open", "claimed", "resolved"]))
        if not items:
            return
        item = rng.choice(items)
        original = await self.api.ok("GET", f"/v1/events/{item['event_seq']}")
        record = await self._todo_op(item["id"], "reemit", rng.choice(scenario.OPERATORS),
                                     seq=item["event_seq"])
        if record["status"] == 200:
            published = record["answer"]["event"]
            self.ledger.ack(Ack(published["source"], published["id"], published["seq"],
                                {"reemittedfrom": original["event"]["id"],
                                 "causationid": original["event"]["id"]}, "reemit"))

    # -- pull consumers ----------------------------------------------------------------
    async def receive(self, consumer: str, subscription: str, count: int, lease_s: float
                      ) -> list[PullMessage]:
        started = time.time()
        try:
            status, answer = await self.api.call(
                "POST", f"/v1/subscriptions/{subscription}/receive",
                {"max": count, "wait_s": 0, "lease_s": lease_s})
        except NO_ANSWER:
            return []
        answered = time.time()
        self.ledger.count(f"pull:receive:{status}")
        if status != 200:
            return []
        batch = [PullMessage(consumer, subscription, int(m["seq"]), m["lease"],
                             parse_rfc3339(m["lease_expires_at"]).timestamp(), started,
                             answered) for m in answer]
        self.ledger.pull_batches.append(batch)
        return batch

    async def settle(self, verb: str, messages: list[PullMessage]) -> None:
        if not messages:
            return
        started = time.time()
        try:
            status, _ = await self.api.call(
                "POST", f"/v1/subscriptions/{messages[0].subscription}/{verb}",
                {"leases": [m.lease for m in messages]})
        except NO_ANSWER:
            return
        self.ledger.count(f"pull:{verb}:{status}")
        if status == 200:
            for m in messages:
                m.settled, m.settle_started, m.settle_answered = verb, started, time.time()

    async def op_pull(self, rng: random.Random) -> None:
        batch = await self.receive(rng.choice(["c1", "c2"]), rng.choice(["jobs", "audit"]),
                                   rng.randint(1, 8), rng.choice([0.3, 1.0, 3.0]))
        verbs: dict[str, list[PullMessage]] = {"ack": [], "release": [], "reject": []}
        for message in batch:
            choice = rng.choices(["ack", "release", "reject", "lapse"], weights=(5, 2, 1, 3))[0]
            if choice != "lapse":
                verbs[choice].append(message)
        for verb, messages in verbs.items():
            await self.settle(verb, messages)

    # -- readers -------------------------------------------------------------------------
    async def add_reader(self, rng: random.Random) -> None:
        name = f"sse-{len(self.readers)}"
        reader = SseReader(name, self.api.spread_url(), rng.choice(READER_FILTERS),
                           rng.choice(["zero", "head", "bare"]),
                           random.Random(f"{self.seed}/{name}"), self.gate, self.api.headers)
        self.readers.append(reader)
        reader.run(self.api.session, await self.api.head())

    async def add_tail(self, rng: random.Random) -> None:
        name = f"tail-{len(self.tails)}"
        token = self.api.headers.get("Authorization", "").removeprefix("Bearer ")
        tail = TailClient(name, self.api.spread_url(), rng.choice(READER_FILTERS),
                          rng.choice([0, await self.api.head()]),
                          {"OPSBUS_TOKEN": token} if token else {},
                          self.config_path.parent / f"{name}.log", self.gate)
        self.tails.append(tail)
        await tail.start()

    async def op_tail_restart(self, rng: random.Random) -> None:
        if self.tails:
            await rng.choice(self.tails).restart(rng.choice([signal.SIGKILL, signal.SIGTERM]))

    async def op_new_reader(self, rng: random.Random) -> None:
        if len(self.readers) < 6:
            await self.add_reader(rng)

    # -- configuration -------------------------------------------------------------------
    async def _dry_run(self, first: int, last: int) -> None:
        """Ask the dry run about every event routed under the configuration now live."""
        epoch = Epoch(first, last)
        self.ledger.epochs.append(epoch)
        if last < first:
            return
        stored = await self.api.events(after=first - 1, until=last)
        for start in range(0, len(stored), 1000):
            chunk = stored[start:start + 1000]
            answer = await self.api.ok("POST", "/v1/routes/test",
                                       {"events": [s["event"] for s in chunk]})
            for item, result in zip(chunk, answer["results"], strict=True):
                epoch.decisions[item["seq"]] = {
                    "routes": set(result.get("routes", [])),
                    "targets": {(t["route"], t["target"]) for t in result.get("targets", [])},
                    "loop": bool(result.get("loop")), "error": result.get("error")}

    async def change_config(self, change: Callable[[], Awaitable[None]]) -> None:
        """A configuration change between two epochs; events committed while it is
        being applied belong to neither and are not compared with the dry run."""
        before = await self.api.head()
        await self._dry_run(self.epoch_first, before)
        await change()
        self.epoch_first = await self.api.head() + 1

    def write_config(self) -> None:
        text = scenario.render(scenario.version(self.seed, self.version), self.receivers.url,
                               self.server)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)  # as editors save: a rename

    async def op_reload(self, rng: random.Random) -> None:
        async def reload() -> None:
            status = await self.api.ok("GET", "/v1/config/status")
            self.version += 1
            self.write_config()
            await until(lambda: self._reloaded(status["reloads"]), 20,
                        "the config file to be reloaded")

        await self.change_config(reload)

    async def _reloaded(self, reloads: int) -> bool:
        status = await self.api.ok("GET", "/v1/config/status")
        if status["error"]:
            raise AssertionError(f"config reload refused: {status['error']}")
        return bool(status["reloads"] > reloads)

    async def op_api_route(self, rng: random.Random) -> None:
        if self.api_routes and rng.random() < 0.4:
            name = self.api_routes.pop(rng.randrange(len(self.api_routes)))

            async def apply() -> None:
                await self.api.ok("DELETE", f"/v1/routes/{name}")
        else:
            name = f"api-{len(self.api_routes)}-{rng.randint(0, 999)}"
            self.api_routes.append(name)
            spec = {"filter": rng.choice([{"exact": {"type": "note.added"}},
                                          {"sql": "data.severity = 'warn'"},
                                          {"prefix": {"source": "inv/t"}}]),
                    "targets": rng.sample(["queue:alerts", "queue:tickets",
                                           "subscription:jobs", "subscription:deploy-hook"],
                                          rng.randint(1, 2))}

            async def apply() -> None:
                await self.api.ok("PUT", f"/v1/routes/{name}", spec)
        await self.change_config(apply)

    # -- receivers and subscriptions -----------------------------------------------------
    async def op_flip(self, rng: random.Random) -> None:
        hook, modes = rng.choice([("slow-hook", ("slow", "ok")), ("ticket-hook", ("flaky", "ok")),
                                  ("deploy-hook", ("ok", "slow"))])
        current = self.receivers.behaviours[hook]
        self.receivers.behaviours[hook] = modes[1] if current == modes[0] else modes[0]

    async def op_pause(self, rng: random.Random) -> None:
        name = "deploy-hook"
        verb = "resume" if name in self.paused else "pause"
        await self.api.ok("POST", f"/v1/subscriptions/{name}/{verb}", {"operator": "checker"})
        (self.paused.discard if verb == "resume" else self.paused.add)(name)

    async def op_drain(self, rng: random.Random) -> None:
        await until(self.push_idle, 3, "push deliveries to settle", required=False)

    async def push_idle(self) -> bool:
        return not await self.busy_hooks(first=True)

    async def busy_hooks(self, *, first: bool = False) -> list[str]:
        """The push subscriptions (not paused) with deliveries pending or leased."""
        busy = []
        for hook in scenario.HOOKS:
            if hook.name in self.paused:
                continue
            status = await self.api.ok("GET", f"/v1/subscriptions/{hook.name}/status")
            counts = status["counts"]
            if counts.get("pending", 0) or counts.get("leased", 0):
                busy.append(hook.name)
                if first:
                    break
        return busy

    # -- crashes -------------------------------------------------------------------------
    async def op_kill(self, rng: random.Random) -> None:
        """SIGKILL while publishers are in flight, then start again on the same data."""
        events = [self.factory.event() for _ in range(rng.randint(6, 16))]
        tasks = [asyncio.create_task(self.publish([e], rng.choice(["structured", "batch"])))
                 for e in events]
        wait_for = rng.randint(0, 3)
        while wait_for and tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            wait_for -= len(done)
            if all(t.done() for t in tasks):
                break
        self.gate.up.clear()
        self.ledger.kills.append(time.monotonic())
        self.broker.kill()
        await asyncio.gather(*tasks)
        await asyncio.to_thread(self.broker.start, scenario.START_TIMEOUT_S)
        self.gate.up.set()
        self.ledger.notes.append(f"SIGKILL and restart at op {self.ledger.operations}")

    # -- the run ---------------------------------------------------------------------------
    async def guard_runaway(self) -> None:
        if self.runaway:
            return
        head = await self.api.head()
        if head > RUNAWAY_FACTOR * (len(self.ledger.acks) + 1) + 500:
            self.runaway = True
            await self.api.ok("POST", "/v1/subscriptions/chat/pause", {"operator": "checker"})
            self.paused.add("chat")
            self.ledger.notes.append(
                f"amplification: {head} events stored for {len(self.ledger.acks)}"
                f" acknowledged publishes at op {self.ledger.operations}; paused `chat`")

    async def watch_runaway(self) -> None:
        """Amplification outruns any operation: watch the store's head all along."""
        while not self.runaway:
            try:
                await self.guard_runaway()
            except NO_ANSWER:
                pass  # the broker is being restarted
            except AssertionError:
                pass
            await asyncio.sleep(0.1)

    async def run(self, kinds: list[str]) -> None:
        for index, kind in enumerate(kinds):
            rng = random.Random(f"{self.seed}/op/{index}")
            began = time.monotonic()
            await getattr(self, f"op_{kind}")(rng)
            spent = self.ledger.seconds
            spent[kind] = round(spent.get(kind, 0.0) + time.monotonic() - began, 2)
            self.ledger.operations += 1
            self.ledger.count(f"op:{kind}")


async def until(check: Callable[[], Awaitable[bool]], timeout: float,
                what: str | Callable[[], str], *, required: bool = True,
                interval: float = 0.05) -> bool:
    """Poll an external condition (the broker's state) until it holds or time is up;
    `what` names it in the error (a callable: as it stands at the time-out)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            if required:
                name = what() if callable(what) else what
                raise AssertionError(f"timed out after {timeout}s waiting for {name}")
            return False
        await asyncio.sleep(interval)
