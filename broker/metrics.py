"""The broker's Prometheus metrics: one registry per broker that features register typed
metrics with (prometheus_client), rendered by `GET /metrics`.

Features either own a prometheus_client metric (`metrics.counter(...)` and friends, for
values they update as things happen) or expose a value they already keep
(`metrics.sampled(...)`, read at scrape time, so a hot path pays nothing extra).
Values that need the store (queue depth) are read by an async `refresh` hook just
before rendering.
"""

from __future__ import annotations

import logging
import math
import os
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text format (0.0.4), what every scraper reads."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
"""Seconds: ingest and commit are sub-millisecond to a few hundred ms (fsync)."""

Reading = float | Mapping[tuple[str, ...], float]
"""A sampled value: a number, or numbers by label values when the metric has labels."""


class _Sampled:
    """A collector reading values a feature already keeps, when scraped."""

    def __init__(self, name: str, doc: str, kind: Literal["counter", "gauge"],
                 labels: Sequence[str], read: Callable[[], Reading]) -> None:
        self.name, self.doc, self.kind, self.labels, self.read = name, doc, kind, labels, read

    def collect(self) -> Iterator[Metric]:
        family: CounterMetricFamily | GaugeMetricFamily
        if self.kind == "counter":
            family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        else:
            family = GaugeMetricFamily(self.name, self.doc, labels=self.labels)
        try:
            value = self.read()
        except Exception:  # a broken reader must not take /metrics down
            log.exception("metric %s could not be read", self.name)
            yield family
            return
        if isinstance(value, Mapping):
            for label_values, number in sorted(value.items()):
                family.add_metric(list(label_values), float(number))
        else:
            family.add_metric([], float(value))
        yield family

    def describe(self) -> Iterator[Metric]:
        # Names only: describing must not call the reader before the feature is ready.
        if self.kind == "counter":
            yield CounterMetricFamily(self.name, self.doc, labels=self.labels)
        else:
            yield GaugeMetricFamily(self.name, self.doc, labels=self.labels)


class LoopHistogram:
    """A histogram observed from the event loop's thread only, exposed with the samples
    of prometheus_client's `Histogram` (`_bucket`, `_count`, `_sum`, `_created`). That
    one takes a lock for its sum and for a bucket, ~9,000 instructions an observation,
    paid once per publish; this one adds to a list."""

    __slots__ = ("_bounds", "_counts", "_created", "_le", "_sum", "doc", "name")

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name, self.doc = name, doc
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._bounds = tuple(bounds)
        # Each bound as prometheus_client writes it (`le="0.005"`, `le="+Inf"`).
        self._le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self._counts = [0] * len(bounds)
        self._sum = 0.0
        # As prometheus_client decides whether to show when the series began.
        self._created = None if os.environ.get(
            "PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() in ("true", "1", "t") \
            else time.time()

    def observe(self, amount: float) -> None:
        # The first bucket whose upper bound is at least `amount` (`le`, inclusive).
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.doc, "histogram")
        total = 0.0
        for le, count in zip(self._le, self._counts, strict=True):
            total += count
            family.add_sample(self.name + "_bucket", {"le": le}, total)
        family.add_sample(self.name + "_count", {}, total)
        if self._bounds[0] >= 0:
            family.add_sample(self.name + "_sum", {}, self._sum)
        if self._created is not None:
            family.add_sample(self.name + "_created", {}, self._created)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.doc, "histogram")


class Metrics:
    """Typed metrics of one broker. Names start with `opsbus_`; counters are given
    without `_total` (prometheus_client adds it). Registering a name twice with the same
    kind returns the first metric, so a handler may look its counter up by name."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._owned: dict[str, Any] = {}
        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    def _own(self, kind: type, name: str, doc: str, labels: Sequence[str],
             **options: Any) -> Any:
        found = self._owned.get(name)
        if found is not None:
            if not isinstance(found, kind):
                raise ValueError(f"metric {name} is already registered as another kind")
            return found
        metric = kind(name, doc, labelnames=tuple(labels), registry=self.registry, **options)
        self._owned[name] = metric
        return metric

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        """A counter the caller increments (`.inc()`, `.labels(...).inc()`)."""
        metric: Counter = self._own(Counter, name, doc, labels)
        return metric

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge the caller sets."""
        metric: Gauge = self._own(Gauge, name, doc, labels)
        return metric

    def histogram(self, name: str, doc: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        """A histogram of seconds (or another unit named in `name`)."""
        metric: Histogram = self._own(Histogram, name, doc, labels, buckets=tuple(buckets))
        return metric

    def loop_histogram(self, name: str, doc: str,
                       buckets: Sequence[float] = LATENCY_BUCKETS) -> LoopHistogram:
        """A histogram without labels observed on the event loop only (a hot path: the
        writer's and publishers' latencies), cheaper than `histogram`."""
        found = self._owned.get(name)
        if found is not None:
            if not isinstance(found, LoopHistogram):
                raise ValueError(f"metric {name} is already registered as another kind")
            return found
        histogram = LoopHistogram(name, doc, buckets)
        self._owned[name] = histogram
        self.registry.register(histogram)
        return histogram

    def sampled(self, name: str, doc: str, kind: Literal["counter", "gauge"],
                read: Callable[[], Reading], labels: Sequence[str] = ()) -> None:
        """Expose a value the feature keeps anyway, read at each scrape. A counter's
        `name` ends in `_total`."""
        if name in self._owned:
            raise ValueError(f"metric {name} is already registered")
        collector = _Sampled(name, doc, kind, tuple(labels), read)
        self._owned[name] = collector
        self.registry.register(collector)

    def refresh(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` before each scrape (to read the store into gauges)."""
        self._refreshers.append(hook)

    async def render(self) -> bytes:
        """The text exposition of every metric, refreshed first."""
        for hook in self._refreshers:
            try:
                await hook()
            except Exception:
                log.exception("a metrics refresh failed; serving the last values")
        return generate_latest(self.registry)


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the seconds the block took (a monotonic duration, not a wall-clock time)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)
