"""Filter bounds: what a filter at the limits costs, how fast an oversize one is refused,
and how long /healthz waits on a real broker while such filters arrive.

    .venv/bin/python bench/filter_bounds.py [--rounds 8]

In process: CPU time to compile filters just under the default limits (a disjunction at
the node limit, an IN set at the element limit, nesting at the depth limit) and to
evaluate them against an event they miss; CPU time to refuse the 80,000-term, 1 MB
disjunction and the 100,000-element IN set. Then against an `opsbus serve` process: the
/healthz latency idle and while `--rounds` filters at the limit and as many 1 MB ones
are posted to /v1/filters/evaluate from other threads. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from typing import Any

import orjson
from _common import AUTH, machine, start_broker

from broker.errors import InvalidFilter
from broker.filters import DEFAULT_LIMITS, FilterLimits, compile_filter
from broker.filters.expression import clear_cache

LIMITS = DEFAULT_LIMITS
EVENT = {"specversion": "1.0", "id": "1", "source": "bench/filters", "type": "bench.event",
         "subject": "nobody", "data": {"severity": "info"}}
HUGE_OR = " OR ".join(f"subject = 'host-{i:05d}'" for i in range(80_000))
HUGE_IN = "subject IN (" + ", ".join(f"'host-{i:06d}'" for i in range(100_000)) + ")"


def at_limit_filters(salt: int = 0) -> dict[str, str]:
    terms = (LIMITS.max_nodes - 1) // 3
    return {
        f"OR of {terms} comparisons ({LIMITS.max_nodes} nodes)":
            " OR ".join(f"subject = 'h{salt}-{i}'" for i in range(terms)),
        f"IN of {LIMITS.max_in_items} strings":
            "subject IN (" + ", ".join(f"'h{salt}-{i}'" for i in range(LIMITS.max_in_items)) + ")",
        f"LIKE/AND/data mix ({LIMITS.max_nodes // 8} terms)": " OR ".join(
            f"(type LIKE 's{salt}{i}.%' AND data.severity = 'critical')"
            for i in range(LIMITS.max_nodes // 8)),
        f"nesting {LIMITS.max_depth} deep":
            "(" * (LIMITS.max_depth - 2) + "subject = 'x'" + ")" * (LIMITS.max_depth - 2),
    }


def cpu(work: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        clear_cache()
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def in_process() -> None:
    print("\nIn process (CPU time, best of 3):")
    for name, text in at_limit_filters().items():
        assert len(text) <= LIMITS.max_length, (name, len(text))
        compile_time = cpu(lambda text=text: compile_filter(text))  # type: ignore[misc]
        flt = compile_filter(text)
        rounds = 200
        started = time.process_time()
        for _ in range(rounds):
            flt.matches(EVENT)
        per_event = (time.process_time() - started) / rounds
        print(f"  {name:40} {len(text):6} chars: compile {1e3 * compile_time:6.1f} ms,"
              f" evaluate (miss) {1e6 * per_event:7.1f} us")
    for name, text, limits in (
        ("80,000-term OR, 1 MB", HUGE_OR, LIMITS),
        ("100,000-element IN", HUGE_IN, LIMITS),
        ("80,000-term OR, length limit lifted", HUGE_OR, FilterLimits(max_length=10**7)),
        ("100,000-element IN, length limit lifted", HUGE_IN, FilterLimits(max_length=10**7)),
    ):
        def refuse(text: str = text, limits: FilterLimits = limits) -> None:
            try:
                compile_filter(text, limits=limits)
            except InvalidFilter as exc:
                refuse.setting = exc.extra.get("setting")  # type: ignore[attr-defined]

        took = cpu(refuse)
        print(f"  refuse {name:42} {1e3 * took:7.2f} ms"
              f" ({refuse.setting})")  # type: ignore[attr-defined]


def post(port: int, payload: Any) -> tuple[int, float]:
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.monotonic()
    conn.request("POST", "/v1/filters/evaluate", body=orjson.dumps(payload),
                 headers={"Content-Type": "application/json", **AUTH})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, time.monotonic() - started


def healthz(port: int) -> float:
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    conn.close()
    return time.monotonic() - started


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{len(ordered)} probes, median {1e3 * statistics.median(ordered):.1f} ms,"
            f" p99 {1e3 * p99:.1f} ms, max {1e3 * ordered[-1]:.1f} ms")


async def against_broker(rounds: int) -> None:
    proc = start_broker()
    try:
        idle = [healthz(proc.port) for _ in range(200)]
        print(f"\nopsbus serve /healthz, idle: {summary(idle)}")
        payloads: list[Any] = []
        for salt in range(rounds):
            text = next(iter(at_limit_filters(salt).values()))
            payloads.append({"filter": text, "event": EVENT})
            payloads.append({"filter": HUGE_OR, "event": EVENT})
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(len(payloads)) as pool:
            attack = asyncio.gather(*(loop.run_in_executor(pool, post, proc.port, payload)
                                      for payload in payloads))
            during: list[float] = []
            with ThreadPoolExecutor(1) as prober:
                while not attack.done():
                    during.append(await loop.run_in_executor(prober, healthz, proc.port))
            results = await attack
        print(f"  while {rounds} filters at the limit and {rounds} of 1 MB are posted at once:"
              f" {summary(during)}")
        refused = [took for status, took in results if status == 400]
        compiled = [took for status, took in results if status == 200]
        print(f"  1 MB filters refused: {len(refused)}, slowest answer {max(refused):.2f} s;"
              f" filters at the limit evaluated: {len(compiled)}, slowest answer"
              f" {max(compiled):.2f} s (queued behind one another on the filter thread)")
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    print(machine())
    print(f"limits: {LIMITS}")
    in_process()
    asyncio.run(against_broker(args.rounds))


if __name__ == "__main__":
    main()
