"""The metric catalog: the names, units and statistics every part of metricskit agrees on.

The data lives in ``catalog.json`` beside this module so that Terraform (``jsondecode(file())``)
and Python read the very same file. Tests fail when the dashboard or the library drift from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from metricskit.batch import MetricKind

JOB_ID: Final = "JobId"
STAGE: Final = "Stage"
WORKER_ID: Final = "WorkerId"
COST_CATEGORY: Final = "CostCategory"
METRICSKIT_DIMENSIONS: Final = (JOB_ID, STAGE, WORKER_ID)
"""The dimensions metricskit sets itself: a user may not give them, nor name a metric so."""

RECORDS_PROCESSED: Final = "RecordsProcessed"
RECORDS_PER_SECOND: Final = "RecordsPerSecond"
ERROR_COUNT: Final = "ErrorCount"
RETRY_COUNT: Final = "RetryCount"
CHECKPOINT_COUNT: Final = "CheckpointCount"
RECORDS_DONE: Final = "RecordsDone"
RECORDS_TOTAL: Final = "RecordsTotal"
PROGRESS_PERCENTAGE: Final = "ProgressPercentage"
ETA_SECONDS: Final = "ETASeconds"
JOB_COMPLETED: Final = "JobCompleted"
ESTIMATED_COST: Final = "EstimatedCost"
ACTUAL_COST: Final = "ActualCost"
COST_PER_MILLION_RECORDS: Final = "CostPerMillionRecords"
MONTHLY_COST: Final = "MonthlyCost"
ACTUAL_COST_AVAILABLE: Final = "ActualCostAvailable"
DROPPED_VALUES: Final = "MetricskitDroppedValues"
FAILED_EXPORTS: Final = "MetricskitFailedExports"
RETRIES: Final = "MetricskitRetries"
QUEUED_PERIODS: Final = "MetricskitQueuedPeriods"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One standard metric: what it is called, its unit, and how dashboards read it."""

    name: str
    unit: str
    kind: MetricKind
    statistic: str
    emitter: str
    dimensions: tuple[str, ...]
    description: str


@cache
def _raw() -> dict[str, object]:
    text = resources.files("metricskit").joinpath("catalog.json").read_text(encoding="utf-8")
    data: dict[str, object] = json.loads(text)
    return data


def _entries(section: str) -> tuple[CatalogEntry, ...]:
    items = _raw()[section]
    assert isinstance(items, list)
    return tuple(
        CatalogEntry(
            name=item["name"],
            unit=item["unit"],
            kind=MetricKind(item["kind"]),
            statistic=item["statistic"],
            emitter=item["emitter"],
            dimensions=tuple(item["dimensions"]),
            description=item["description"],
        )
        for item in items
    )


@cache
def standard_metrics() -> tuple[CatalogEntry, ...]:
    """Every standard metric, from the library and from the cost tracker."""
    return _entries("metrics")


@cache
def self_metrics() -> tuple[CatalogEntry, ...]:
    """The metrics metricskit publishes about itself (drops, failed exports, queue)."""
    return _entries("self_metrics")


@cache
def reserved_dimension_names() -> tuple[str, ...]:
    """Names a user's dimension may not have: metricskit's own dimensions, and every metric it
    publishes (EMF writes dimensions and metrics side by side, so the metric could not be)."""
    return (*METRICSKIT_DIMENSIONS, *(e.name for e in (*standard_metrics(), *self_metrics())))


@cache
def entry(name: str) -> CatalogEntry:
    """Look up one catalog entry by metric name (standard or self-metric)."""
    for item in (*standard_metrics(), *self_metrics()):
        if item.name == name:
            return item
    raise KeyError(name)


def unit_of(name: str) -> str:
    """The catalog unit of a standard metric."""
    return entry(name).unit
