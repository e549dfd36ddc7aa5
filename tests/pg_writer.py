"""A writer process for the ordering hammer: appends batches on its own connection and
prints, for each committed batch, the seqs it was given (one JSON line per batch)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys

import orjson

from broker.store.postgres import log as pglog
from broker.store.postgres.connection import PgOptions, connect


def new_event(source: str, n: int) -> pglog.NewEvent:
    event = {"specversion": "1.0", "id": f"e{n}", "source": source, "type": "hammer.tick",
             "data": {"n": n}}
    raw = orjson.dumps(event)
    return pglog.NewEvent(event, raw, hashlib.blake2b(raw, digest_size=16).digest())


async def main(url: str, name: str, batches: int, seed: int) -> None:
    rng = random.Random(seed)
    conn = await connect(PgOptions(url))
    n = 0
    try:
        for _ in range(batches):
            items = []
            for _ in range(rng.randint(1, 20)):
                n += 1
                items.append(new_event(name, n))
            # A repeat now and then: it must answer the original seq and take none.
            if n > 5 and rng.random() < 0.2:
                items.append(new_event(name, rng.randint(1, n - 1)))
            async with conn.transaction():
                results = await pglog.append(conn, items, "2026-11-25T10:00:00Z")
            fresh = [[item.event["id"], r.seq] for item, r in zip(items, results, strict=True)
                     if not r.duplicate]
            sys.stdout.write(orjson.dumps(fresh).decode() + "\n")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
