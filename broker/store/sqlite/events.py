"""SQLite statements for the event log: appends, route target hits, lineage use, reads."""

from __future__ import annotations

import functools
import sqlite3
from bisect import bisect_right
from collections.abc import Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, cast

import orjson

from broker.bus.lineage import RootUse
from broker.bus.log import (
    AppendResult,
    EventItem,
    EventLog,
    EventWrites,
    RoutedRow,
    StoredEvent,
    TargetRecord,
    item_bytes,
    item_event,
)
from broker.filters.narrow import NARROW_ATTRIBUTES, Narrowing
from broker.store.keys import (
    BLAKE2B_64,
    CAUSATION,
    CORRELATION,
    IDENTITY,
    SIGNED_64,
    identity_key,
    link_key,
)
from broker.store.sqlite.connections import ReaderPool, beside_held, held_rows, insert_later
from broker.store.sqlite.periods import VIEW, KeyPeriods, union_all
from broker.store.sqlite.transaction import connection_of
from broker.store.targets import by_event, encoded, merged, records
from broker.store.transaction import Transaction
from broker.store.window import DedupeWindow

EVENT_COLUMNS = "seq, recvtime, body, routes, root"
KEY_SEQS = f"SELECT seq FROM {VIEW} WHERE key = ? AND kind = ?"
"""Seqs of one key in every period's table and the kept keys (one index probe each)."""


def row_to_event(row: Sequence[Any]) -> StoredEvent:
    routes = tuple(orjson.loads(row[3])) if row[3] else ()
    return StoredEvent(row[0], row[1], bytes(row[2]), routes, root=row[4] or 0)


# The `digest` column of every row this backend writes is empty (x''): a repeated
# (source, id) is told from a duplicate by comparing its bytes with the stored body,
# which the probe reads only for the few identities it finds. A digest per event
# appended (~9,000 instructions) would only be compared where the body is at hand
# anyway. Rows written before carry a digest, which nothing here reads; a copy to
# PostgreSQL, which compares digests, makes them from the bodies.
INSERT_EVENT = (
    "INSERT INTO events (source, id, type, subject, time, recvtime, correlationid,"
    " causationid, digest, body, root, idhash, corrkey, causekey, routes, targets)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, x'', ?, ?, ?, ?, ?, ?, ?)"
)
"""The last two values, `routes` and `targets`, are NULL when the row is made: routing
decides them later, and `set_routes` writes them into the row while the row is still
held back."""
INSERT_KEY = "INSERT INTO {table} (key, kind, seq) VALUES (?, ?, ?)"

CHUNK = 256
"""Rows per statement inserting root rows (`roots_sql`; a power of two). A statement
run per row (`executemany`) opens its cursors and reads and writes the AUTOINCREMENT
counter once per row; one run for many rows does that once (~6,000 instructions per
row less). The rows past the last whole chunk go in statements of the powers of two
their count is made of (`pieces`): a few statements, of few distinct texts (a compiled
128-row insert holds ~300 KB)."""
ROOT_COLUMNS = ("recvtime, source, id, type, subject, time, body, idhash, digest, routes,"
                " targets")
WIDTH = 9
"""Values bound per root row (`ROOT_COLUMNS` but the empty digest and `recvtime`, which
every row of a statement shares: bound once, as `?1`, at the head of each chunk); the
link, lineage and key columns left out are NULL for a root a client published: sqlite3
adapts every None it binds (~1,300 instructions each), an absent column costs nothing."""
BODY, IDHASH, ROUTES, TARGETS = 5, 6, 7, 8
"""Where a chunked row's body, identity key, routes and targets are among its values."""
NO_ROUTES = 0
"""A chunked row's routes and targets until routing sets them: stored as NULL
(`nullif`), bound as an int, which sqlite3 binds without adapting it as it does None."""
ROOTS_HEAD = f"INSERT INTO events ({ROOT_COLUMNS}) VALUES "
ROOT_VALUES = ("(?1, " + "?, " * (WIDTH - 2)
               + f"x'', nullif(?, {NO_ROUTES}), nullif(?, {NO_ROUTES}))")
"""A row's values: `?1` is the statement's recvtime (bound first, so the unnumbered
parameters after it take the numbers from 2 on)."""


@functools.lru_cache(maxsize=CHUNK.bit_length())
def roots_sql(rows: int) -> str:
    """The insert of `rows` root rows in one statement."""
    return ROOTS_HEAD + ", ".join([ROOT_VALUES] * rows)


def pieces(rows: int) -> list[int]:
    """The row counts of the statements inserting `rows` root rows: whole chunks, then
    the powers of two the rest is made of, largest first."""
    rest = rows % CHUNK
    return [CHUNK] * (rows // CHUNK) + [1 << bit for bit in range(rest.bit_length() - 1,
                                                                  -1, -1) if rest >> bit & 1]


@functools.lru_cache(maxsize=128)
def rows_sql(statement: tuple[str, str], rows: int) -> str:
    """`statement`'s text (with `{rows}` where its VALUES go) for `rows` rows, each
    written as its second part (one row's placeholders); for row counts from `pieces`,
    so a few texts per statement reach the connection's cache."""
    text, values = statement
    return text.format(rows=", ".join([values] * rows))


ROOT_KEYS = ("INSERT INTO {table} (key, kind, seq)"
             " SELECT idhash, 0, seq FROM events WHERE seq BETWEEN ? AND ?")
"""The identity keys of the chunked rows, read back from them: one statement, where
binding a key row per event cost as much again as inserting it."""


def _row(event: dict[str, Any], raw: bytes, recvtime: str, root: int, idhash: int
         ) -> tuple[Any, ...]:
    corr, cause = _text(event.get("correlationid")), _text(event.get("causationid"))
    return (event["source"], event["id"], event["type"], event.get("subject"),
            event.get("time"), recvtime, corr, cause, raw, root or None, idhash,
            link_key(corr), link_key(cause), None, None)


def _root_values(items: Sequence[EventItem], keys: Sequence[int]) -> list[Any]:
    """The chunked rows' values (`ROOT_COLUMNS`' order but the recvtime, `WIDTH` per
    row) of `items`, up to the first whose event names a correlation or cause."""
    events = list(map(item_event, items))
    links = (list(map(dict.get, events, repeat("correlationid")))
             + list(map(dict.get, events, repeat("causationid"))))
    if links.count(None) != len(links):
        flat: list[Any] = []
        extend = flat.extend
        for (event, raw, _), idhash in zip(items, keys, strict=False):
            get = event.get
            if get("correlationid") is not None or get("causationid") is not None:
                break
            extend((event["source"], event["id"], event["type"], get("subject"),
                    get("time"), raw, idhash, NO_ROUTES, NO_ROUTES))
        return flat
    # None does (roots as clients publish them): made without a Python step per event.
    return list(chain.from_iterable(zip(
        map(_SOURCE, events), map(_ID, events), map(_TYPE, events),
        map(dict.get, events, repeat("subject")), map(dict.get, events, repeat("time")),
        map(item_bytes, items), keys, repeat(NO_ROUTES), repeat(NO_ROUTES))))


_SOURCE, _ID, _TYPE = itemgetter("source"), itemgetter("id"), itemgetter("type")


def identity_keys(items: Sequence[EventItem]) -> list[int]:
    """`identity_key` of each item's event, in one loop: it runs for every event
    appended in a batch."""
    keys: list[int] = []
    append, fresh, signed = keys.append, BLAKE2B_64.copy, SIGNED_64
    for event, _, _ in items:
        state = fresh()
        state.update(f"{event['source']}\0{event['id']}".encode())
        append(signed(state.digest())[0])
    return keys


def _keys(row: tuple[Any, ...], seq: int) -> list[tuple[int, int, int]]:
    """The key-table rows of one event row (`_row`'s layout)."""
    keys = [(row[10], IDENTITY, seq)]
    if row[11] is not None:
        keys.append((row[11], CORRELATION, seq))
    if row[12] is not None:
        keys.append((row[12], CAUSATION, seq))
    return keys


JOIN_TABLES = 8
"""Up to this many key tables probed, each joins the keys as a list of rows."""


@functools.lru_cache(maxsize=64)
def _probe_sql(tables: tuple[str, ...]) -> str:
    """The newest stored events of the identity keys in `?1` (a JSON array) in the key
    `tables` and received from `?2` on. The key tables hold every identity of their
    period; the window's edge and the stored (source, id) (a 64-bit key may collide)
    are checked on the row. `+recvtime`: the window only narrows the hits, it must
    never make the planner walk the recvtime index instead."""
    return (f"SELECT seq, source, id, body FROM events WHERE seq IN"
            f" ({_probes(tables)}) AND +recvtime >= ?2 ORDER BY seq")


def _probes(tables: Sequence[str]) -> str:
    """The seqs of the identity keys in `?1` (a JSON array) in the key `tables`. The
    keys come as one bound text that SQLite reads (`json_each`), not as a parameter
    each: one statement of one text for any count (compiled once, nothing padded, no
    chunks), one value bound instead of hundreds. With a few tables each looks the
    keys up as a list of rows (a loop of index probes: 2,000 instructions a key
    against 3,500 for `key IN (...)`, which first sorts the list into a temporary
    index, in every table again); with many, `IN` keeps the statement short."""
    if len(tables) <= JOIN_TABLES:
        return union_all([f"SELECT {t}.seq FROM json_each(?1) AS probe CROSS JOIN {t}"
                          f" ON {t}.key = probe.value AND {t}.kind = 0" for t in tables])
    return union_all([f"SELECT seq FROM {t} WHERE key IN (SELECT value FROM json_each(?1))"
                      " AND kind = 0" for t in tables])


class _HeldBatch:
    """Event rows held back (`insert_later`) with their keys, while they wait: an append
    of the same transaction joins them instead of running them first. The rows come in
    two runs, in seq order: chunks of root rows (flat lists of the recvtime, then
    `WIDTH` values per row, of `pieces` rows each; their keys are read back from them),
    then `rows` in `_row`'s
    layout with their `keys`, which later appends join."""

    __slots__ = ("_seqs", "chunked", "chunks", "first", "held", "keys", "rows", "starts",
                 "table")

    def __init__(self, first: int, chunks: list[list[Any]], rows: list[tuple[Any, ...]],
                 keys: list[tuple[int, int, int]], table: str,
                 held: list[list[list[Any]]]) -> None:
        self.first = first
        self.chunks = chunks
        self.starts: list[int] = []
        """The row (from `first`) each chunk starts at."""
        at = 0
        for chunk in chunks:
            self.starts.append(at)
            at += (len(chunk) - 1) // WIDTH
        self.chunked = at
        self.held = held
        """The lists of chunks handed to `insert_later`, one per statement text."""
        self.rows = rows
        self.keys = keys
        self.table = table
        self._seqs: dict[int, list[int]] | None = None
        """Identity key -> seqs of the held rows with it (made when first asked)."""

    def _chunk_of(self, at: int) -> tuple[list[Any], int]:
        """The chunk holding chunked row `at` and where its values start in it."""
        index = bisect_right(self.starts, at) - 1
        return self.chunks[index], 1 + (at - self.starts[index]) * WIDTH

    @property
    def next_seq(self) -> int:
        """The seq the next row gets: AUTOINCREMENT's, once the held rows have run."""
        return self.first + self.chunked + len(self.rows)

    def add(self, row: tuple[Any, ...], keys: list[tuple[int, int, int]]) -> int:
        seq = self.next_seq
        self.rows.append(row)
        self.keys.extend(keys)
        if self._seqs is not None:
            self._seqs.setdefault(row[10], []).append(seq)
        return seq

    def _index(self) -> dict[int, list[int]]:
        seqs: dict[int, list[int]] = {}
        seq = self.first
        for chunk in self.chunks:
            for at in range(1 + IDHASH, len(chunk), WIDTH):
                seqs.setdefault(chunk[at], []).append(seq)
                seq += 1
        for row in self.rows:
            seqs.setdefault(row[10], []).append(seq)
            seq += 1
        self._seqs = seqs
        return seqs

    def find(self, source: str, id: str, idhash: int) -> tuple[int, bytes] | None:
        """(seq, body) of the newest held row with this identity. A savepoint rolled
        back drops the rows held since it: seqs past the rows, or of another row now,
        are stale."""
        seqs = self._seqs if self._seqs is not None else self._index()
        for seq in reversed(seqs.get(idhash, ())):
            at = seq - self.first
            if at < self.chunked:
                chunk, base = self._chunk_of(at)
                if chunk[base] == source and chunk[base + 1] == id:
                    return seq, chunk[base + BODY]
                continue
            at -= self.chunked
            if at < len(self.rows):
                row = self.rows[at]
                if row[0] == source and row[1] == id:
                    return seq, row[8]
        return None

    def set_routes(self, seq: int, routes: bytes, targets: bytes | int) -> bool:
        """Write `routes` and `targets` (`NO_ROUTES`: none) into the held row of `seq`;
        False when none holds it."""
        at = seq - self.first
        if 0 <= at < self.chunked:
            chunk, base = self._chunk_of(at)
            chunk[base + ROUTES] = routes
            chunk[base + TARGETS] = targets
            return True
        at -= self.chunked
        if 0 <= at < len(self.rows):
            self.rows[at] = (*self.rows[at][:-2], routes, targets or None)
            return True
        return False

    def targets(self, seq: int) -> tuple[bool, bytes | None]:
        """(True, the `targets` value) of the held row of `seq`; (False, None) when none
        holds it."""
        at = seq - self.first
        if 0 <= at < self.chunked:
            chunk, base = self._chunk_of(at)
            return True, chunk[base + TARGETS] or None  # NO_ROUTES until set
        at -= self.chunked
        if 0 <= at < len(self.rows):
            return True, self.rows[at][-1]
        return False, None

    def set_targets(self, seq: int, targets: bytes) -> None:
        """Write `targets` into the held row of `seq` (`targets` found it held)."""
        at = seq - self.first
        if at < self.chunked:
            chunk, base = self._chunk_of(at)
            chunk[base + TARGETS] = targets
        else:
            at -= self.chunked
            self.rows[at] = (*self.rows[at][:-1], targets)


class SqliteEventWrites(EventWrites):
    """Event-log writes on the writer connection. Dedupe is decided here, by the single
    writer: a probe of the key tables of the periods the dedupe window reaches (and the
    kept keys), then a plain insert of the event and of its keys into the current
    period's table (a repeat outside the window is stored)."""

    def __init__(self, conn: sqlite3.Connection, window: DedupeWindow,
                 periods: KeyPeriods) -> None:
        self.conn = conn
        self.window = window
        self.periods = periods
        self._held: _HeldBatch | None = None
        """The last batch of event rows held back."""

    def _live(self) -> _HeldBatch | None:
        """The held batch while its rows still wait and no other event rows do: appends
        may join it, and statements that read the log may run beside it (what it
        holds is looked up in it)."""
        batch = self._held
        if batch is None or not held_rows(self.conn, batch.rows):
            return None
        ours = batch.held
        if any((sql == INSERT_EVENT or sql.startswith(ROOTS_HEAD)) and rows is not batch.rows
               and not any(rows is chunks for chunks in ours)
               for sql, rows in getattr(self.conn, "held", ())):
            return None
        return batch

    def _probe(self, keys: Sequence[int], recvtime: str, batch: _HeldBatch | None = None
               ) -> dict[tuple[str, str], tuple[int, bytes]]:
        """(source, id) -> (seq, body) of the newest stored event in the window (the
        rows of `batch` not included: the caller looks there first)."""
        since = self.window.start(recvtime)
        tables = self.periods.window(self.conn, since)
        found: dict[tuple[str, str], tuple[int, bytes]] = {}
        if not tables:  # no key stored in the window
            return found
        sql = _probe_sql(tuple(tables))
        # Text, not the bytes orjson makes: SQLite reads a bound blob as binary JSON
        # (JSONB) from 3.45 on.
        params = (orjson.dumps(keys).decode(), since)
        # Beside a live batch: its rows are looked up in it, and nothing else held
        # changes what this reads.
        rows = (beside_held(self.conn, sql, params) if batch is not None
                else self.conn.execute(sql, params)).fetchall()
        for seq, source, id, body in rows:
            found[(source, id)] = (seq, bytes(body))
        return found

    def _next_seq(self) -> int:
        (high,) = self.conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        ).fetchone()
        return int(high) + 1

    def _table(self, recvtime: str, next_seq: int | None = None) -> str:
        """The current period's key table, opened here (from `next_seq`, by default the
        next seq AUTOINCREMENT gives) if `recvtime` is past its end."""
        found = self.periods.current(self.conn, recvtime)
        if found is None:
            first = self._next_seq() if next_seq is None else next_seq
            found = self.periods.open(self.conn, recvtime, first).name
        return found

    async def append(
        self, event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes | None,
        root: int = 0
    ) -> AppendResult:
        source, id = event["source"], event["id"]
        idhash = identity_key(str(source), str(id))
        batch = self._live()
        stored = batch.find(source, id, idhash) if batch is not None else None
        if stored is None:
            stored = self._probe([idhash], recvtime, batch).get((source, id))
        if stored is not None:
            return AppendResult(stored[0], True, conflict=stored[1] != raw)
        row = _row(event, raw, recvtime, root, idhash)
        if batch is not None:
            # A derived event (an item's announcement) while the routed batch waits:
            # it joins the batch, so the whole commit is still inserted in its few
            # statements.
            table = self._table(recvtime, batch.next_seq)
            if table == batch.table and self._live() is batch:
                seq = batch.next_seq
                return AppendResult(batch.add(row, _keys(row, seq)), False)
        table = self._table(recvtime)
        (seq,) = self.conn.execute(INSERT_EVENT + " RETURNING seq", row).fetchone()
        self.conn.executemany(INSERT_KEY.format(table=table), _keys(row, seq))
        return AppendResult(seq, False)

    async def append_many(self, items: Sequence[EventItem], recvtime: str,
                          roots: Sequence[int] | None = None) -> list[AppendResult]:
        if len(items) == 1:
            event, raw, digest = items[0]
            return [await self.append(event, raw, recvtime, digest,
                                      roots[0] if roots is not None else 0)]
        keys = identity_keys(items)
        batch = self._live()
        stored = self._probe(keys, recvtime, batch)
        if batch is not None:  # its rows are newer than any stored one
            for (event, _, _), idhash in zip(items, keys, strict=True):
                held = batch.find(event["source"], event["id"], idhash)
                if held is not None:
                    stored[(event["source"], event["id"])] = held
        first = batch.next_seq if batch is not None else self._next_seq()
        new = tuple.__new__  # AppendResult without its Python frame, once per event
        if not stored and len(set(keys)) == len(keys):
            # Nothing repeats (the common case): every event is stored, in order.
            fresh, fresh_keys, fresh_roots = items, keys, roots
            results = list(map(new, repeat(AppendResult), zip(
                range(first, first + len(items)), repeat(False), repeat(False),
                repeat(False))))
        else:
            fresh, fresh_keys, fresh_roots, results = self._sift(items, keys, roots, stored,
                                                                 first)
        if not fresh:
            return results
        # A period is opened only by an event that goes into it.
        table = self._table(recvtime, first)
        if fresh_roots is None:
            fresh_roots = [0] * len(fresh)
        if batch is not None and table == batch.table and self._live() is batch:
            for (event, raw, _), idhash, root in zip(fresh, fresh_keys, fresh_roots,
                                                     strict=True):
                row = _row(event, raw, recvtime, root, idhash)
                batch.add(row, _keys(row, batch.next_seq))
            return results
        # Held back to the transaction's next statement or its end: a batch nothing
        # else reads is then inserted in a few statements, its routes written into its
        # rows in place, and later appends join it. The root rows in chunks
        # first (`pieces`), the rest (and what joins later) row by row with their keys.
        # Chunk rows have no lineage columns: only roots go in them, up to the first
        # that names a correlation or cause.
        flat = _root_values(fresh, fresh_keys) if roots is None else []
        chunked = len(flat) // WIDTH
        chunks: list[list[Any]] = []
        at = 0
        for count in pieces(chunked):
            chunks.append([recvtime, *flat[at:at + count * WIDTH]])  # `?1` first
            at += count * WIDTH
        rows: list[tuple[Any, ...]] = []
        key_rows: list[tuple[int, int, int]] = []
        seq = first + chunked
        for (event, raw, _), idhash, root in zip(fresh[chunked:], fresh_keys[chunked:],
                                                 fresh_roots[chunked:], strict=True):
            row = _row(event, raw, recvtime, root, idhash)
            rows.append(row)
            key_rows.extend(_keys(row, seq))
            seq += 1
        # Lists, not tuples: `set_routes` writes into a chunk in place, and sqlite3
        # binds a list's values as it binds a tuple's. One statement per piece but the
        # whole chunks, which share one.
        statements: list[list[list[Any]]] = []
        for chunk in chunks:
            if statements and len(statements[-1][0]) == len(chunk):
                statements[-1].append(chunk)
            else:
                statements.append([chunk])
        for same in statements:
            insert_later(self.conn, roots_sql((len(same[0]) - 1) // WIDTH),
                         cast("list[tuple[Any, ...]]", same))
        insert_later(self.conn, INSERT_EVENT, rows)
        if chunks:
            insert_later(self.conn, ROOT_KEYS.format(table=table),
                         [(first, first + chunked - 1)])
        insert_later(self.conn, INSERT_KEY.format(table=table), key_rows)
        self._held = _HeldBatch(first, chunks, rows, key_rows, table, statements)
        return results

    def _sift(self, items: Sequence[EventItem], keys: list[int], roots: Sequence[int] | None,
              stored: dict[tuple[str, str], tuple[int, bytes]], first: int
              ) -> tuple[list[EventItem], list[int], list[int], list[AppendResult]]:
        """The items to store (an identity stored in the window, or earlier in this
        batch, is a duplicate), their keys and roots, and every item's result."""
        fresh: list[EventItem] = []
        fresh_keys: list[int] = []
        fresh_roots: list[int] = []
        results: list[AppendResult] = []
        for index, (item, idhash) in enumerate(zip(items, keys, strict=True)):
            event, raw, _ = item
            key = (event["source"], event["id"])
            earlier = stored.get(key)
            if earlier is not None:
                results.append(AppendResult(earlier[0], True, conflict=earlier[1] != raw))
                continue
            # Seqs of one batch are consecutive: AUTOINCREMENT under the single writer.
            seq = first + len(fresh)
            stored[key] = (seq, raw)
            fresh.append(item)
            fresh_keys.append(idhash)
            fresh_roots.append(roots[index] if roots is not None else 0)
            results.append(AppendResult(seq, False))
        return fresh, fresh_keys, fresh_roots, results

    async def set_routes(self, items: Sequence[RoutedRow]) -> None:
        # An event whose row is still held back gets its routes and hits in that row:
        # it is written once. Any other is updated (after the held rows, before COMMIT).
        batch = self._held
        if batch is not None and not held_rows(self.conn, batch.rows):
            batch = None
        updates = []
        # Encoded once per distinct list: a batch's events mostly matched the same routes.
        encoded_of: dict[tuple[str, ...], bytes] = {}
        for seq, routes, hits in items:
            key = routes if type(routes) is tuple else tuple(routes)
            names = encoded_of.get(key)
            if names is None:
                names = encoded_of[key] = orjson.dumps(list(routes))
            targets = encoded(hits) if hits else None
            if batch is None or not batch.set_routes(seq, names, targets or NO_ROUTES):
                updates.append((names, targets, seq))
        if updates:
            insert_later(self.conn, "UPDATE events SET routes = ?, targets = ? WHERE seq = ?",
                         updates)

    async def root_use(self, root: int) -> RootUse:
        row = self.conn.execute(
            "SELECT descendants, noticed FROM event_lineage WHERE root = ?", (root,)
        ).fetchone()
        return RootUse(row[0], bool(row[1])) if row else RootUse()

    async def add_root_use(self, changes: Sequence[tuple[int, int, bool]]) -> None:
        # Held back like the inserts: nothing reads it before COMMIT but `root_use`,
        # and any other statement runs the held ones first.
        insert_later(
            self.conn,
            "INSERT INTO event_lineage (root, descendants, noticed) VALUES (?, ?, ?)"
            " ON CONFLICT (root) DO UPDATE SET descendants = descendants"
            " + excluded.descendants, noticed = max(noticed, excluded.noticed)",
            [(root, added, int(noticed)) for root, added, noticed in changes],
        )

    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        # Rare (a hand-over after routing): each event's hits merged with what it holds,
        # in its held row or read and updated.
        batch = self._live()
        for seq, hits in by_event(records).items():
            held, stored = batch.targets(seq) if batch is not None else (False, None)
            if not held:
                row = self.conn.execute("SELECT targets FROM events WHERE seq = ?",
                                        (seq,)).fetchone()
                stored = row[0] if row else None
            value = merged(stored, hits)
            if value is None:
                continue
            if held:
                assert batch is not None
                batch.set_targets(seq, value)
            else:
                self.conn.execute("UPDATE events SET targets = ? WHERE seq = ?", (value, seq))


class SqliteEventLog(EventLog):
    """The event log in the `events` table, its keys in the period tables
    (`periods.py`); reads on the reader pool, keys through the `event_keys` view."""

    def __init__(self, readers: ReaderPool, window: DedupeWindow | None = None) -> None:
        self._readers = readers
        self.window = window or DedupeWindow()
        self.periods = KeyPeriods(self.window.period_s)

    def writes(self, tx: Transaction) -> SqliteEventWrites:
        return SqliteEventWrites(connection_of(tx), self.window, self.periods)

    async def last_seq(self) -> int:
        row = await self._readers.fetchone("SELECT max(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def first_seq(self) -> int:
        row = await self._readers.fetchone("SELECT min(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def retained_from(self) -> int:
        row = await self._readers.fetchone("SELECT cut FROM log_retention WHERE id = 1")
        return int(row[0]) + 1 if row else 1

    async def get(self, seq: int) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?", (seq,)
        )
        return row_to_event(row) if row else None

    async def find(self, source: str, id: str) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN ({KEY_SEQS})"
            " AND source = ? AND id = ? ORDER BY seq DESC LIMIT 1",
            (identity_key(source, id), IDENTITY, source, id)
        )
        return row_to_event(row) if row else None

    async def read(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        type: str | None = None,
        source: str | None = None,
        subject: str | None = None,
        since: str | None = None,
        until: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        id: str | None = None,
        descending: bool = False,
        scan_to: int | None = None,
        narrow: Narrowing = (),
    ) -> list[StoredEvent]:
        clauses: list[str] = []
        params: list[Any] = []
        if descending:
            if after > 0:
                clauses.append("seq < ?")
                params.append(after)
        else:
            clauses.append("seq > ?")
            params.append(after)
        if scan_to is not None:
            clauses.append("seq >= ?" if descending else "seq <= ?")
            params.append(scan_to)
        if source is not None and id is not None:
            clauses.append(f"seq IN ({KEY_SEQS})")
            params.extend((identity_key(source, id), IDENTITY))
        for column, value in (("type", type), ("source", source), ("subject", subject),
                              ("id", id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for column, kind, value in (("correlationid", CORRELATION, correlationid),
                                    ("causationid", CAUSATION, causationid)):
            if value is not None:
                clauses.extend((f"seq IN ({KEY_SEQS})", f"{column} = ?"))
                params.extend((link_key(value), kind, value))
        if narrow:
            clauses.extend(narrow_clauses(narrow, params))
        if since is not None:
            clauses.append("recvtime >= ?")
            params.append(since)
        if until is not None:
            clauses.append("recvtime < ?")
            params.append(until)
        where = " AND ".join(clauses) or "1"
        order = "DESC" if descending else "ASC"
        rows = await self._readers.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq {order} LIMIT ?",
            (*params, limit),
        )
        return [row_to_event(r) for r in rows]

    async def count(self) -> int:
        row = await self._readers.fetchone("SELECT count(*) FROM events")
        return int(row[0]) if row else 0

    async def targets_of(self, seq: int) -> list[TargetRecord]:
        row = await self._readers.fetchone("SELECT targets FROM events WHERE seq = ?",
                                           (seq,))
        return records(seq, row[0] if row else None)


def narrow_clauses(narrow: Narrowing, params: list[Any]) -> list[str]:
    """`narrow` as SQL conditions with `?` placeholders (values appended to `params`).
    SQLite's LIKE folds ASCII case: a looser test, which a narrowing may be."""
    clauses = []
    for n in narrow:
        if n.attribute not in NARROW_ATTRIBUTES:
            raise ValueError(f"no column to narrow by {n.attribute!r}")
        terms = []
        if n.exact:
            terms.append(f"{n.attribute} IN ({', '.join('?' * len(n.exact))})")
            params.extend(sorted(n.exact))
        for pattern in sorted(n.patterns):
            terms.append(f"{n.attribute} LIKE ? ESCAPE '\\'")
            params.append(pattern)
        clauses.append("(" + " OR ".join(terms or ["0"]) + ")")
    return clauses


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
