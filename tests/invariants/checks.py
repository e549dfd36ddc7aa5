"""The bus's invariants, checked after a run against what the clients saw (the ledger,
the readers, the receivers) and what the store holds (the snapshot)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from broker.bus.lineage import hop_count
from broker.settings import Settings
from broker.timeutil import parse_rfc3339, to_rfc3339
from tests.invariants import scenario
from tests.invariants.api import Api
from tests.invariants.ledger import Ledger, PullMessage
from tests.invariants.readers import Segment, SseReader, TailClient
from tests.invariants.receivers import Request
from tests.invariants.snapshot import LOOP_TYPE, Snapshot, starts_chain

STREAMS = "streams-ordered-and-complete"
ACKED_ONCE = "acked-stored-once"
DERIVED = "derived-records"
DESCENDANTS = "descendants-bounded"
DRY_RUN = "dry-run-agrees"
ITEMS = "items-count-and-owner"
WEBHOOKS = "webhook-acks-final"
PULL = "pull-leases-exclusive"
QUIET = "comes-to-rest"
INVARIANTS = (STREAMS, ACKED_ONCE, DERIVED, DESCENDANTS, DRY_RUN,
              ITEMS, WEBHOOKS, PULL, QUIET)
DESCRIPTIONS = {
    STREAMS: "every stream a client read (SSE, tail, pull receive) was strictly increasing"
             " in seq, and the union of its resumed reads equals the store's log for its"
             " filter: no gap, no duplicate",
    ACKED_ONCE: "every acknowledged event is stored exactly once, as sent; refused and"
                " duplicate publishes are answered as such",
    DERIVED: "every record routing derived from an event exists: target hits, todo"
             " changes, deliveries (and nothing else)",
    DESCENDANTS: "no root event has more descendants than the documented bound (one loop"
                 " notice per root), and no subscription is fed the news of its own"
                 " failures",
    DRY_RUN: "the route dry run decides as the engine did for every event (routes,"
             " targets, group keys, titles)",
    ITEMS: "each item's count equals the events grouped into it; no item has two owners",
    WEBHOOKS: "every webhook delivery its receiver acknowledged is recorded delivered and"
              " not sent again after that (beyond a crash's at-least-once window)",
    PULL: "a pull message is held by one consumer at a time and never redelivered after"
          " its ack",
    QUIET: "after the workload the bus comes to rest: every delivery, retry, lease and"
           " event they cause settles within the quiet timeout",
}
LOOP_NOTICES = (LOOP_TYPE,)
DELIVERY_SOURCE = "opsbus/delivery"
"""Source of dead letters and breaker events, whose subject is the subscription."""
EXAMPLES = 5
HOP_LIMIT = Settings().hop_limit


@dataclass
class Findings:
    """Violations per invariant and how many facts each invariant checked."""

    violations: dict[str, list[str]] = field(default_factory=lambda: {i: [] for i in INVARIANTS})
    checked: Counter[str] = field(default_factory=Counter)

    def check(self, invariant: str, ok: bool, message: str | None = None) -> bool:
        self.checked[invariant] += 1
        if not ok:
            self.violations[invariant].append(message or "violated")
        return ok

    def fail(self, invariant: str, message: str) -> None:
        self.check(invariant, False, message)

    @property
    def failed(self) -> list[str]:
        return [i for i in INVARIANTS if self.violations[i]]


def _short(seqs: Iterable[int]) -> str:
    ordered = sorted(seqs)
    head = ", ".join(map(str, ordered[:8]))
    return f"[{head}{', …' if len(ordered) > 8 else ''}] ({len(ordered)})"


# -- streams ------------------------------------------------------------------------------
def _segment_order(findings: Findings, who: str, segments: list[Segment]) -> None:
    for index, segment in enumerate(segments):
        seqs = segment.seqs
        inversions = [(a, b) for a, b in itertools.pairwise(seqs) if b <= a]
        findings.check(STREAMS, not inversions,
                       f"{who} connection {index} read {inversions[0][1]} after"
                       f" {inversions[0][0]} ({len(inversions)} inversions in"
                       f" {len(seqs)} events)" if inversions else None)


async def check_streams(findings: Findings, api: Api, readers: list[SseReader],
                        tails: list[TailClient], pull: list[list[PullMessage]],
                        marker: int, reached: dict[str, bool]) -> None:
    clients: list[tuple[str, str | None, int | None, list[Segment]]] = []
    for reader in readers:
        start = reader.start_after
        if start is None and reader.segments:
            start = reader.segments[0].opened_after
        clients.append((f"{reader.name} ({reader.start}, filter {reader.expression!r})",
                        reader.filter, start, reader.segments))
    for tail in tails:
        clients.append((f"{tail.name} (filter {tail.expression!r})", tail.filter,
                        tail.start_after, tail.segments))
    for who, expression, start, segments in clients:
        _segment_order(findings, who, segments)
        if start is None:
            findings.fail(STREAMS, f"{who}: the stream never said where it starts")
            continue
        findings.check(STREAMS, reached.get(who.split(" ")[0], False),
                       f"{who}: never reached the end marker (seq {marker}); its connections"
                       f" ended: {[s.ended for s in segments][-4:]}")
        expected = [e["seq"] for e in await api.events(after=start, until=marker,
                                                       expression=expression)]
        got = [seq for segment in segments for seq in segment.seqs if seq <= marker]
        repeated = [seq for seq, n in Counter(got).items() if n > 1]
        missing = set(expected) - set(got)
        extra = set(got) - set(expected)
        findings.check(STREAMS, not repeated, f"{who}: read {_short(repeated)} twice")
        findings.check(STREAMS, not missing,
                       f"{who}: missed {_short(missing)} of {len(expected)} events after"
                       f" {start} over {len(segments)} connections")
        findings.check(STREAMS, not extra,
                       f"{who}: read {_short(extra)} that its filter does not select")
        for index, segment in enumerate(segments):
            if segment.asked_after is not None and segment.seqs:
                findings.check(STREAMS, segment.seqs[0] > segment.asked_after,
                               f"{who} connection {index}: resumed after"
                               f" {segment.asked_after} but read {segment.seqs[0]}")
    for batch in pull:
        seqs = [m.seq for m in batch]
        findings.check(STREAMS, seqs == sorted(set(seqs)),
                       f"pull receive by {batch[0].consumer} on {batch[0].subscription}"
                       f" returned seqs {seqs}" if batch else None)


# -- publishing -------------------------------------------------------------------------
def check_acked(findings: Findings, ledger: Ledger, snap: Snapshot) -> None:
    for problem in ledger.answer_problems:
        findings.fail(ACKED_ONCE, problem)
    for key, seqs in snap.by_key.items():
        findings.check(ACKED_ONCE, len(seqs) == 1, f"{key} is stored {len(seqs)} times: {seqs}")
    for key, ack in ledger.acks.items():
        seqs = snap.by_key.get(key, [])
        if not findings.check(ACKED_ONCE, seqs == [ack.seq],
                              f"acknowledged {key} as seq {ack.seq}, stored at {seqs}"):
            continue
        stored = snap.by_seq[ack.seq]["event"]
        if ack.mode in ("structured", "batch"):
            same = stored == ack.event
        elif ack.mode == "binary":
            same = all(stored.get(k) == ack.event.get(k)
                       for k in ("id", "source", "type", "subject", "data"))
        else:  # reemit: a copy of the item's event, caused by it
            same = all(stored.get(k) == v for k, v in ack.event.items())
        findings.check(ACKED_ONCE, same, f"seq {ack.seq} ({ack.mode}) is stored as {stored},"
                                         f" not as acknowledged: {ack.event}")
    for key in ledger.refused:
        if key not in ledger.acks:
            findings.check(ACKED_ONCE, key not in snap.by_key,
                           f"{key} was in a publish refused with 409 but is stored at"
                           f" {snap.by_key.get(key)}")


# -- derived records ----------------------------------------------------------------------
AUDIT_OF = {"opened": "opsbus.todo.opened", "resolved": "opsbus.todo.resolved"}
"""Changes announced by an audit event the routed event caused. An attached event is
announced with the item's other repeats of its transaction: see `check_repeat`."""


def check_derived(findings: Findings, snap: Snapshot, bound: int) -> None:
    delivery_by_id = {(name, d["id"]): d for name, rows in snap.deliveries.items()
                      for d in rows}
    delivery_by_seq = {(name, d["seq"]): d for name, rows in snap.deliveries.items()
                       for d in rows}
    hits: set[tuple[int, str]] = set()
    sizes: dict[int, int] = {}

    def at_bound(seq: int) -> bool:
        """The root of `seq` used its descendant budget: announcements derived from it
        may have been dropped, as documented (the work itself still happened)."""
        root = snap.root_of(seq)
        if root not in sizes:
            sizes[root] = len(snap.family(root))
        return sizes[root] >= bound - 1
    for seq, records in snap.targets.items():
        for record in records:
            target, detail = record["target"], record.get("detail") or {}
            hits.add((seq, target))
            where = f"seq {seq} -> {target} (route {record['route']})"
            findings.check(DERIVED, "error" not in detail, f"{where} failed: {detail}")
            kind, name = target.split(":", 1)
            if kind == "queue" and "todo" in detail:
                item = snap.items.get(int(detail["todo"]))
                if not findings.check(DERIVED, item is not None,
                                      f"{where}: item {detail['todo']} does not exist"):
                    continue
                assert item is not None
                findings.check(DERIVED, item["queue"] == name and
                               seq in snap.item_seqs[item["id"]],
                               f"{where}: item {item['id']} ({item['queue']}) does not list"
                               " the event")
                if detail.get("attached"):
                    check_repeat(findings, snap, where, seq, item, at_bound)
                for change, audit in AUDIT_OF.items():
                    if detail.get(change):
                        audits = [s for s in snap.caused(seq, audit)
                                  if s["event"]["data"]["item"]["id"] == item["id"]]
                        dropped = not audits and at_bound(seq)
                        findings.check(DERIVED, len(audits) == 1 or dropped,
                                       f"{where}: {len(audits)} {audit} events for item"
                                       f" {item['id']}, expected one")
            elif kind == "subscription" and "delivery" in detail:
                found = delivery_by_id.get((name, int(detail["delivery"])))
                findings.check(DERIVED, found is not None and found["seq"] == seq,
                               f"{where}: delivery {detail['delivery']} is {found}")
            elif kind == "subscription" and detail.get("duplicate"):
                findings.check(DERIVED, (name, seq) in delivery_by_seq,
                               f"{where}: a duplicate hit, but no delivery exists")
    for (name, seq), delivery in delivery_by_seq.items():
        findings.check(DERIVED, (seq, f"subscription:{name}") in hits,
                       f"delivery {delivery['id']} of seq {seq} to {name} has no target hit")
    for item in snap.items.values():
        for seq in snap.item_seqs[item["id"]]:
            findings.check(DERIVED, (seq, f"queue:{item['queue']}") in hits,
                           f"item {item['id']} lists seq {seq}, which has no"
                           f" queue:{item['queue']} target hit")


def check_repeat(findings: Findings, snap: Snapshot, where: str, seq: int,
                 item: dict[str, Any], at_bound: Callable[[int], bool]) -> None:
    """An attached event is listed by exactly one `updated` history entry of its item,
    whose `opsbus.todo.updated` event (caused by the entry's latest event) lists it too,
    unless that cause's root had used its descendant budget."""
    entries = [h for h in item.get("history", []) if h["action"] == "updated"
               and seq in (h.get("detail") or {}).get("events", ())]
    if not findings.check(DERIVED, len(entries) == 1,
                          f"{where}: {len(entries)} updated history entries of item"
                          f" {item['id']} list it, expected one"):
        return
    entry = entries[0]
    audit = snap.by_seq.get(entry["audit_seq"]) if entry["audit_seq"] else None
    if audit is None:
        findings.check(DERIVED, entry["audit_seq"] is None and at_bound(entry["event_seq"]),
                       f"{where}: the updated entry of item {item['id']} has no audit event"
                       f" (audit seq {entry['audit_seq']})")
        return
    event = audit["event"]
    findings.check(DERIVED, event["type"] == "opsbus.todo.updated"
                   and event["data"]["item"]["id"] == item["id"]
                   and seq in event["data"]["detail"]["events"]
                   and audit in snap.caused(entry["event_seq"], "opsbus.todo.updated"),
                   f"{where}: audit seq {entry['audit_seq']} of item {item['id']} does not"
                   " announce it")


# -- descendants --------------------------------------------------------------------------
def check_descendants(findings: Findings, snap: Snapshot, bound: int) -> None:
    for stored in snap.events:
        event = stored["event"]
        if not starts_chain(event, snap.seq_of_id):
            continue
        family = snap.family(stored["seq"])
        types = Counter(snap.by_seq[s]["event"]["type"] for s in family)
        findings.check(DESCENDANTS, len(family) <= bound,
                       f"root seq {stored['seq']} ({event['type']}) has {len(family)}"
                       f" descendants (bound {bound}): {dict(types.most_common(4))}")
        notices = sum(types[t] for t in LOOP_NOTICES)
        findings.check(DESCENDANTS, notices <= 1,
                       f"root seq {stored['seq']} ({event['type']}) produced {notices}"
                       " loop notices (one per root at most)")
    # A failing webhook sent its own dead letters fails again: the amplifier itself.
    for name, rows in snap.deliveries.items():
        for delivery in rows:
            event = snap.by_seq[delivery["seq"]]["event"]
            about_itself = event["source"] == DELIVERY_SOURCE and event.get("subject") == name
            findings.check(DESCENDANTS, not about_itself,
                           f"{name} was handed seq {delivery['seq']} ({event['type']}),"
                           " an event about itself")


# -- the dry run --------------------------------------------------------------------------
def _engine_targets(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    # A dead letter is handed to its queue by the subscription, not by a route.
    return {(r["route"], r["target"]) for r in records
            if not (r["route"].startswith("subscription:") and r["target"].startswith("queue:"))}


def check_dry_run_routes(findings: Findings, ledger: Ledger, snap: Snapshot) -> None:
    for epoch in ledger.epochs:
        for seq, decision in epoch.decisions.items():
            stored = snap.by_seq.get(seq)
            if stored is None:
                continue
            engine_routes = set(stored["routes"])
            engine_targets = _engine_targets(snap.targets.get(seq, []))
            findings.check(DRY_RUN, decision["error"] is None,
                           f"seq {seq}: the dry run could not read the stored event:"
                           f" {decision['error']}")
            findings.check(DRY_RUN, engine_routes == decision["routes"],
                           f"seq {seq} ({stored['event']['type']}): engine routes"
                           f" {sorted(engine_routes)}, dry run {sorted(decision['routes'])}")
            findings.check(DRY_RUN, engine_targets == decision["targets"],
                           f"seq {seq} ({stored['event']['type']}): engine targets"
                           f" {sorted(engine_targets)}, dry run {sorted(decision['targets'])}")


async def check_dry_run_grouping(findings: Findings, api: Api, snap: Snapshot,
                                 sample: int = 300) -> None:
    """The dry run's history mode predicts the item key (and title) of the events a
    queue took: every event that opened an item, and a seeded sample of the others."""
    per_queue: dict[str, list[tuple[int, str]]] = {}
    for seq, records in snap.targets.items():
        for record in records:
            detail = record.get("detail") or {}
            # Past the hop limit no route (a draft neither) takes an event; only a dead
            # letter still reaches its queue then.
            looped = hop_count(snap.by_seq[seq]["event"].get("hopcount")) > HOP_LIMIT
            if record["target"].startswith("queue:") and "key" in detail and not looped \
                    and "resolved" not in detail and not detail.get("duplicate_target"):
                per_queue.setdefault(record["target"][6:], []).append((seq, detail["key"]))
    for queue, hits in per_queue.items():
        if len(hits) > sample:
            hits = random.Random(f"{queue}/{len(hits)}").sample(hits, sample)
        hits.sort()
        chunks: list[list[tuple[int, str]]] = [[]]
        for seq, key in hits:
            keys = {k for _, k in chunks[-1]}
            if len(chunks[-1]) >= 100 or (key not in keys and len(keys) >= 40):
                chunks.append([])
            chunks[-1].append((seq, key))
        for chunk in chunks:
            await _ask_grouping(findings, api, snap, queue, chunk)


async def _ask_grouping(findings: Findings, api: Api, snap: Snapshot, queue: str,
                        chunk: list[tuple[int, str]]) -> None:
    """Ask about a chunk of events (at most 40 engine keys, so no item is left out of
    the report): the dry run must group them into one item per engine key, keyed alike."""
    events = [snap.by_seq[seq] for seq, _ in chunk]
    since = min(e["recvtime"] for e in events)
    until = to_rfc3339(parse_rfc3339(max(e["recvtime"] for e in events))
                       + timedelta(microseconds=1))
    draft = {"name": "invariant-probe", "targets": [f"queue:{queue}"],
             "filter": {"any": [{"all": [{"exact": {"id": e["event"]["id"]}},
                                         {"exact": {"source": e["event"]["source"]}}]}
                                for e in events]}}
    answer = await api.ok("POST", "/v1/routes/test", {"route": draft, "history": {
        "since": since, "until": until, "limit": 200_000}})
    report = answer["history"]["queues"][0]
    predicted = {item["first_seq"]: item for item in report["items"]}
    groups: dict[str, list[int]] = {}
    for seq, key in chunk:
        groups.setdefault(key, []).append(seq)
    for key, seqs in groups.items():
        first = min(seqs)
        item = predicted.get(first)
        if not findings.check(DRY_RUN, item is not None,
                              f"seq {first} into {queue}: the dry run opened no item for it"
                              f" (engine key {key!r}; dry run items"
                              f" {[(i['first_seq'], i['key']) for i in report['items']][:4]})"):
            continue
        assert item is not None
        findings.check(DRY_RUN, item["key"] == key,
                       f"seq {first} into {queue}: engine key {key!r}, dry run {item['key']!r}")
        findings.check(DRY_RUN, (item["count"], item["last_seq"]) == (len(seqs), max(seqs)),
                       f"seqs {_short(seqs)} into {queue}: the engine grouped them under"
                       f" {key!r}; the dry run's item from {first} holds {item['count']}"
                       f" up to seq {item['last_seq']}")
        # An item's title follows its latest event: compare after the group's last one.
        last = max(seqs)
        changed = [s["event"]["data"]["item"] for s in snap.caused(last)
                   if s["event"]["type"] in ("opsbus.todo.opened", "opsbus.todo.updated")
                   and s["event"]["data"]["item"]["queue"] == queue]
        if changed:
            title = changed[0]["title"]
            findings.check(DRY_RUN, item["title"] == title,
                           f"seq {last} into {queue}: engine title {title!r} after it, dry"
                           f" run {item['title']!r}")


# -- todo items ---------------------------------------------------------------------------
def check_items(findings: Findings, snap: Snapshot) -> None:
    active: dict[tuple[str, str], int] = {}
    audits: dict[int, list[dict[str, Any]]] = {}
    for stored in snap.events:
        event = stored["event"]
        if event["type"].startswith("opsbus.todo.") and isinstance(event.get("data"), dict) \
                and isinstance(event["data"].get("item"), dict):
            audits.setdefault(int(event["data"]["item"]["id"]), []).append(event["data"]["item"])
    for item in snap.items.values():
        auto = bool((item.get("resolution") or {}).get("auto"))
        grouped = len(snap.item_seqs[item["id"]]) - (1 if auto else 0)
        findings.check(ITEMS, item["count"] == grouped,
                       f"item {item['id']} ({item['queue']}, {item['state']}) counts"
                       f" {item['count']} but groups {grouped} events")
        if item["state"] != "resolved":
            where = (item["queue"], item["key"])
            findings.check(ITEMS, where not in active,
                           f"items {active.get(where)} and {item['id']} are both active for"
                           f" key {where}")
            active[where] = item["id"]
        if item["state"] in ("open", "claimed"):
            findings.check(ITEMS, (item["state"] == "claimed") == (item["owner"] is not None),
                           f"item {item['id']} is {item['state']} with owner {item['owner']!r}")
        holder: dict[str, Any] | None = None
        for state in audits.get(item["id"], []):
            if state["state"] == "claimed":
                if holder is not None and holder["owner"] != state["owner"]:
                    lapsed = holder["lease_expires"] is not None and \
                        holder["lease_expires"] <= state["updated_at"]
                    findings.check(ITEMS, lapsed,
                                   f"item {item['id']} claimed by {state['owner']} at"
                                   f" {state['updated_at']} while {holder['owner']} held it"
                                   f" (lease {holder['lease_expires']})")
                holder = state
            else:
                holder = None


# -- webhooks -----------------------------------------------------------------------------
def check_webhooks(findings: Findings, ledger: Ledger, snap: Snapshot,
                   requests: list[Request]) -> None:
    acked: dict[tuple[str, str, str], Request] = {}
    for request in requests:
        key = (request.hook, request.source, request.id)
        seqs = snap.by_key.get((request.source, request.id))
        if not findings.check(WEBHOOKS, bool(seqs),
                              f"{request.hook} received {request.source}/{request.id},"
                              " which is not a stored event"):
            continue
        first = acked.get(key)
        if first is not None and first.acked_at is not None:
            # The at-least-once window: a broker killed while the call was in flight may
            # never have read the answer, and sends it again once its lease expires. The
            # call may have left the broker just before the kill and reached the receiver
            # just after it, so the window opens one call timeout before the arrival.
            findings.check(WEBHOOKS, ledger.killed_between(
                               first.arrived - scenario.HOOK_TIMEOUT_S, request.arrived),
                           f"{request.hook} got {request.source}/{request.id} again"
                           f" {request.arrived - first.acked_at:.3f}s after acknowledging it")
        if request.acked_at is not None and key not in acked:
            acked[key] = request
    deliveries = {(name, d["seq"]): d for name, rows in snap.deliveries.items() for d in rows}
    for hook, source, ident in acked:
        seq = snap.by_key[(source, ident)][0]
        delivery = deliveries.get((hook, seq))
        findings.check(WEBHOOKS, delivery is not None and delivery["state"] == "delivered",
                       f"{hook} acknowledged seq {seq}, recorded as"
                       f" {delivery and delivery['state']}")
    hooks = {h.name for h in scenario.HOOKS}
    for (hook, seq), delivery in deliveries.items():
        if hook in hooks and delivery["state"] == "delivered":
            event = snap.by_seq[seq]["event"]
            findings.check(WEBHOOKS, (hook, event["source"], event["id"]) in acked,
                           f"delivery {delivery['id']} of seq {seq} to {hook} is recorded"
                           " delivered, but its receiver never acknowledged it")


# -- pull -----------------------------------------------------------------------------------
def check_pull(findings: Findings, ledger: Ledger, snap: Snapshot) -> None:
    history: dict[tuple[str, int], list[PullMessage]] = {}
    for batch in ledger.pull_batches:
        for message in batch:
            history.setdefault((message.subscription, message.seq), []).append(message)
    deliveries = {(name, d["seq"]): d for name, rows in snap.deliveries.items() for d in rows}
    for (subscription, seq), messages in history.items():
        messages.sort(key=lambda m: m.started)
        for before, after in itertools.pairwise(messages):
            released = before.settled in ("release", "reject") and \
                before.settle_started is not None and before.settle_started <= after.answered
            if before.settled == "ack" and before.settle_answered is not None:
                # An answered ack is committed: no crash can bring the message back.
                findings.check(PULL, after.started < before.settle_answered,
                               f"{subscription} seq {seq} received by {after.consumer} after"
                               f" {before.consumer} acknowledged it")
            elif not released:
                findings.check(PULL, after.answered >= before.lease_expires_at - 0.005,
                               f"{subscription} seq {seq} leased to {after.consumer}"
                               f" {before.lease_expires_at - after.answered:.3f}s before"
                               f" {before.consumer}'s lease ended")
        acks = [m for m in messages if m.settled == "ack"]
        if acks:
            delivery = deliveries.get((subscription, seq))
            findings.check(PULL, delivery is not None and delivery["state"] == "delivered",
                           f"{subscription} seq {seq} was acknowledged, recorded as"
                           f" {delivery and delivery['state']}")
