"""The immutable batch a sink exports: one aggregation period of every series.

Sinks only ever see these frozen objects (collect by swap, STYLE.md 4); recording code
never sees them. A batch can be merged with a later one of the same series, which is how
periods that could not be delivered during an outage are kept in bounded memory.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from metricskit import limits

Dimensions = tuple[tuple[str, str], ...]
"""Dimension (name, value) pairs in the order they were defined."""


class MetricKind(enum.Enum):
    """How a series aggregates within a period and merges across periods."""

    COUNTER = "counter"  # deltas: sum
    GAUGE = "gauge"  # last value wins
    DISTRIBUTION = "distribution"  # value -> count, with a bounded relative error


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """The identity of one CloudWatch series: name, unit and dimensions."""

    name: str
    unit: str
    dimensions: Dimensions

    def dimension(self, name: str) -> str | None:
        """Return the value of dimension ``name``, or None when the series lacks it."""
        for key, value in self.dimensions:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Metric:
    """One series aggregated over one period.

    ``value`` is the sum (counter) or the last value (gauge). A distribution carries
    ``values`` (bucket representatives, ascending) and ``counts`` of the same length.
    """

    key: SeriesKey
    kind: MetricKind
    value: float = 0.0
    values: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def sample_count(self) -> float:
        """How many observations a distribution holds (1 for counters and gauges)."""
        return sum(self.counts) if self.kind is MetricKind.DISTRIBUTION else 1.0

    @property
    def total(self) -> float:
        """Sum of a distribution's observations (approximate), or the scalar value."""
        if self.kind is MetricKind.DISTRIBUTION:
            return sum(v * c for v, c in zip(self.values, self.counts, strict=True))
        return self.value

    def merged_with(self, later: Metric) -> Metric:
        """Combine this period's aggregate with a later period of the same series."""
        if later.key != self.key or later.kind is not self.kind:
            raise ValueError(f"cannot merge {later.key} into {self.key}")
        if self.kind is MetricKind.COUNTER:
            return Metric(self.key, self.kind, value=self.value + later.value)
        if self.kind is MetricKind.GAUGE:
            return later
        merged = dict(zip(self.values, self.counts, strict=True))
        for value, count in zip(later.values, later.counts, strict=True):
            merged[value] = merged.get(value, 0.0) + count
        return distribution(self.key, merged)


def distribution(key: SeriesKey, counts_by_value: Mapping[float, float]) -> Metric:
    """Build a distribution metric from a value -> count mapping."""
    ordered = sorted(counts_by_value.items())
    return Metric(
        key,
        MetricKind.DISTRIBUTION,
        values=tuple(v for v, _ in ordered),
        counts=tuple(c for _, c in ordered),
    )


@dataclass(frozen=True, slots=True)
class MetricBatch:
    """Every series of one namespace over one period ending at ``timestamp`` (epoch s).

    ``period_seconds`` is the length of time the batch covers; merged batches cover more.
    ``storage_resolution`` is 1 (high resolution) or 60, as PutMetricData defines it.
    """

    namespace: str
    timestamp: float
    metrics: tuple[Metric, ...]
    period_seconds: float = 60.0
    storage_resolution: int = 60
    extra: Mapping[str, str] = field(default_factory=dict)
    """Properties a sink may attach where its format allows (EMF), e.g. the job's status."""

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def with_metrics(self, metrics: tuple[Metric, ...]) -> MetricBatch:
        """This batch (namespace, time, period, resolution) holding ``metrics`` instead."""
        return dataclasses.replace(self, metrics=metrics)

    def merged_with(self, later: MetricBatch) -> MetricBatch:
        """Merge a later batch into this one; the result carries the later timestamp.

        Counters add and distributions add their counts, so merged periods lose only time
        resolution, never counts. Gauges keep the later value.
        """
        if later.namespace != self.namespace:
            raise ValueError("cannot merge batches of different namespaces")
        return MetricBatch(
            namespace=self.namespace,
            timestamp=later.timestamp,
            metrics=merge_metrics((*self.metrics, *later.metrics)),
            period_seconds=self.period_seconds + later.period_seconds,
            storage_resolution=max(self.storage_resolution, later.storage_resolution),
            extra={**self.extra, **later.extra},
        )


def publishable_value(value: float) -> float | None:
    """``value`` as CloudWatch accepts it: None for NaN, +/-inf or a magnitude beyond
    limits.MAX_ABS_VALUE (1.174271e108), and 0 for one closer to zero than
    limits.MIN_ABS_VALUE (8.515920e-109)."""
    if not math.isfinite(value) or abs(value) > limits.MAX_ABS_VALUE:
        return None
    return 0.0 if abs(value) < limits.MIN_ABS_VALUE else value


def publishable(metric: Metric) -> tuple[Metric | None, int]:
    """``metric`` holding only what CloudWatch accepts, and how many values were left out.

    One unacceptable value makes CloudWatch refuse a whole PutMetricData request (up to 1000
    datums), so every sink passes its metrics through here. None when nothing is left. A
    distribution's count must be a number CloudWatch accepts too (> 0, in the same range).
    """
    if metric.kind is not MetricKind.DISTRIBUTION:
        value = publishable_value(metric.value)
        if value is None:
            return None, 1
        return (metric if value == metric.value else dataclasses.replace(metric, value=value)), 0
    kept: dict[float, float] = {}
    dropped = 0
    for raw, count in zip(metric.values, metric.counts, strict=True):
        value = publishable_value(raw)
        if value is None or not limits.MIN_ABS_VALUE <= count <= limits.MAX_ABS_VALUE:
            dropped += 1
            continue
        kept[value] = kept.get(value, 0.0) + count
    if not kept:
        return None, dropped
    if dropped == 0 and len(kept) == len(metric.values) and tuple(kept) == metric.values:
        return metric, 0
    return distribution(metric.key, kept), dropped


def merge_metrics(metrics: Iterable[Metric]) -> tuple[Metric, ...]:
    """Merge metrics of the same series in order, keeping first-seen order of series."""
    merged: dict[tuple[SeriesKey, MetricKind], Metric] = {}
    for metric in metrics:
        slot = (metric.key, metric.kind)
        earlier = merged.get(slot)
        merged[slot] = metric if earlier is None else earlier.merged_with(metric)
    return tuple(merged.values())
