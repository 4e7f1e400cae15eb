"""Which series of a batch an EMF document can publish together with its twin.

A twin has a series' name, unit, kind and data, and its dimensions less exactly one
(name, value) pair: ``Job(worker_id=...)`` publishes every series with ``WorkerId`` and again
without it. The EMF sink writes such a pair once, in a document whose directive lists both
dimension sets (see :mod:`metricskit.sinks.emf`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metricskit import limits
from metricskit.batch import Dimensions, Metric, MetricKind, SeriesKey


def find_twins(
    metrics: Sequence[Metric],
    *,
    root_of: Callable[[Dimensions], Mapping[str, Any]],
    writable: Callable[[Metric], bool],
) -> dict[int, int]:
    """Pairs of positions (series -> its twin) that one set of documents can publish.

    A twin has the series' name, unit, kind and data (value, or values and counts), and its
    dimensions less exactly one (name, value) pair, the others in the same order: a
    per-worker series and the job-wide copy ``Job`` publishes without ``WorkerId``. Series
    pair a whole dimension set at a time: only when every series of the set that its own
    documents would hold (a name no dimension has, at most 30 dimensions) has a twin in the
    same smaller set, and when that set's documents would carry no root member that the
    larger set's do not (a ``ServiceName`` or extra property named like the dropped
    dimension). So a stage's counter that happens to equal the job's (both 0) stays as it
    was; pairing it alone would cost a document. A series is in at most one pair; larger
    sets pair first, and the last dimension (``WorkerId``) is dropped first, so a per-stage,
    per-worker series finds its per-stage copy, not the job's per-worker series.

    The specification makes a directive's ``Dimensions`` "A DimensionSet array", and "Every
    DimensionSet used creates a new metric in CloudWatch" (section "DimensionSet array" of
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
    a document with root members ``JobId``, ``WorkerId`` and ``"Dimensions": [["JobId",
    "WorkerId"], ["JobId"]]`` publishes each of its metrics into both series, as the two
    documents of one set each did.
    """
    positions: dict[tuple[SeriesKey, MetricKind], list[int]] = {}
    by_dims: dict[Dimensions, list[int]] = {}
    for position, metric in enumerate(metrics):
        positions.setdefault((metric.key, metric.kind), []).append(position)
        by_dims.setdefault(metric.key.dimensions, []).append(position)
    twins: dict[int, int] = {}
    taken: set[int] = set()  # positions already claimed as a twin
    for dims in sorted(by_dims, key=len, reverse=True):  # stable: ties keep batch order
        if len(dims) > limits.EMF_MAX_DIMENSIONS_PER_SET:
            continue
        members = [p for p in by_dims[dims] if p not in taken and writable(metrics[p])]
        if not members:
            continue
        root = root_of(dims)
        # The last dimension first: Job and Stage put WorkerId last, so a stage's per-worker
        # series meets its per-stage copy before the job's per-worker series, which an idle
        # stage's zeros equal by chance (the metrics would be right, the log documents not).
        for drop in reversed(range(len(dims))):
            rest = dims[:drop] + dims[drop + 1 :]
            if rest in by_dims and _covers(root, root_of(rest)):
                found = _twins_in(metrics, members, positions, rest, taken)
                if found is not None:
                    twins.update(found)
                    taken.update(found.values())
                    break
    return twins


def _twins_in(
    metrics: Sequence[Metric],
    members: list[int],
    positions: dict[tuple[SeriesKey, MetricKind], list[int]],
    rest: Dimensions,
    taken: set[int],
) -> dict[int, int] | None:
    """A twin with dimensions ``rest`` (and not ``taken``) for every member, or None."""
    found: dict[int, int] = {}
    claimed: set[int] = set()
    for position in members:
        metric = metrics[position]
        candidates = positions.get((SeriesKey(metric.name, metric.key.unit, rest), metric.kind))
        twin = next(
            (
                other
                for other in candidates or ()
                if other not in taken
                and other not in claimed
                and _same_data(metric, metrics[other])
            ),
            None,
        )
        if twin is None:
            return None
        found[position] = twin
        claimed.add(twin)
    return found


def _same_data(metric: Metric, other: Metric) -> bool:
    """Equal data, NaN matching NaN (both series would drop it alike)."""
    return (
        _same_numbers((metric.value,), (other.value,))
        and _same_numbers(metric.values, other.values)
        and _same_numbers(metric.counts, other.counts)
    )


def _same_numbers(first: tuple[float, ...], second: tuple[float, ...]) -> bool:
    if first == second:
        return True
    return len(first) == len(second) and all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(first, second, strict=True)
    )


def _covers(root: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether every member of ``other`` is in ``root`` with the same value."""
    return all(name in root and root[name] == value for name, value in other.items())
