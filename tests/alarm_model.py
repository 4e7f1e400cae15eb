"""How CloudWatch evaluates a metric-math alarm over one-minute periods, modelled for tests.

moto stores alarms but never evaluates them, so what an alarm *does* with what workers
publish is checked here instead: the alarm's queries come from the Terraform plan, the
datapoints from real ``metricskit.Job`` objects recording into a MemorySink on a fake clock,
and the expression from ``examples.metric_math`` (the evaluator the demo's dashboard uses).

The model follows the CloudWatch documentation on alarm evaluation:

* At each minute the alarm looks at its last ``evaluation_periods`` points. The expression
  is evaluated over that range only, so ``FILL(x, REPEAT)`` fills only after a real value
  inside the range (what makes the stalled alarm's range one minute longer than the stall).
* ``datapoints_to_alarm`` breaching points in the range make ALARM; when the range holds
  enough non-breaching points that ALARM is impossible, the alarm is OK; otherwise it keeps
  its state.
* A range with no point at all follows ``treat_missing_data``: ``ignore`` keeps the state,
  ``missing`` makes INSUFFICIENT_DATA, ``breaching``/``notBreaching`` count every point so.

An alarm starts in INSUFFICIENT_DATA.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from examples.metric_math import MathContext, evaluate
from metricskit.batch import MetricBatch

Dims = tuple[tuple[str, str], ...]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


@dataclass(frozen=True)
class MetricInput:
    """One MetricStat query of an alarm: which series, read with which statistic."""

    name: str
    statistic: str
    dimensions: Dims
    period: int


@dataclass(frozen=True)
class MathAlarm:
    """A metric-math alarm as Terraform plans it (``aws_cloudwatch_metric_alarm``)."""

    expression: str
    inputs: dict[str, MetricInput]
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: str
    threshold: float
    treat_missing_data: str

    @classmethod
    def from_plan(cls, after: dict[str, Any]) -> MathAlarm:
        """Build from a planned alarm's ``after`` values (``metric_query`` blocks)."""
        expression = ""
        inputs: dict[str, MetricInput] = {}
        for query in after["metric_query"]:
            if query.get("expression"):
                assert query["return_data"], "the alarm must return its expression"
                expression = query["expression"]
                continue
            [metric] = query["metric"]
            inputs[query["id"]] = MetricInput(
                name=metric["metric_name"],
                statistic=metric["stat"],
                dimensions=tuple(sorted(metric["dimensions"].items())),
                period=int(metric["period"]),
            )
        assert expression, "no expression query in the alarm"
        return cls(
            expression=expression,
            inputs=inputs,
            evaluation_periods=int(after["evaluation_periods"]),
            datapoints_to_alarm=int(after["datapoints_to_alarm"] or after["evaluation_periods"]),
            comparison=after["comparison_operator"],
            threshold=float(after["threshold"]),
            treat_missing_data=after["treat_missing_data"],
        )


def minute_series(
    batches: Iterable[MetricBatch], wanted: MetricInput, *, base: float, minutes: int
) -> np.ndarray:
    """The per-minute statistic CloudWatch would serve for one series; NaN where no datapoint.

    ``base`` is the wall time of minute 0. Only the series whose dimensions equal the query's
    exactly are read, as CloudWatch does.
    """
    assert wanted.period == 60, "the model reads one-minute periods only"
    buckets: list[list[float]] = [[] for _ in range(minutes)]
    for batch in batches:
        minute = math.floor((batch.timestamp - base) / 60)
        if not 0 <= minute < minutes:
            continue
        for metric in batch.metrics:
            key = metric.key
            if key.name == wanted.name and tuple(sorted(key.dimensions)) == wanted.dimensions:
                assert metric.value is not None
                buckets[minute].append(float(metric.value))
    reduce: dict[str, Callable[[Sequence[float]], float]] = {
        "Sum": lambda v: float(sum(v)),
        "Maximum": max,
        "Minimum": min,
    }
    fold = reduce[wanted.statistic]
    return np.array([fold(b) if b else np.nan for b in buckets], dtype=float)


def alarm_states(
    alarm: MathAlarm, batches: Sequence[MetricBatch], *, base: float, minutes: int
) -> list[str]:
    """The alarm's state after its evaluation at the end of each minute."""
    series = {
        query_id: minute_series(batches, wanted, base=base, minutes=minutes)
        for query_id, wanted in alarm.inputs.items()
    }
    compare = _COMPARE[alarm.comparison]
    n, m = alarm.evaluation_periods, alarm.datapoints_to_alarm
    state = "INSUFFICIENT_DATA"
    states = []
    for end in range(minutes):
        start = max(0, end - n + 1)
        window = {k: v[start : end + 1] for k, v in series.items()}
        [result] = evaluate(alarm.expression, MathContext(window, period=60)).series
        points = [float(p) for p in result.values]
        points = [math.nan] * (n - len(points)) + points  # minutes before minute 0: no data
        state = _next_state(state, points, compare, alarm.threshold, m, alarm.treat_missing_data)
        states.append(state)
    return states


def _next_state(
    state: str,
    points: list[float],
    compare: Callable[[float, float], bool],
    threshold: float,
    to_alarm: int,
    treat_missing: str,
) -> str:
    present = [p for p in points if not math.isnan(p)]
    if not present:
        if treat_missing == "ignore":
            return state
        if treat_missing == "missing":
            return "INSUFFICIENT_DATA"
        return "ALARM" if treat_missing == "breaching" and len(points) >= to_alarm else "OK"
    missing = len(points) - len(present)
    breaching = sum(compare(p, threshold) for p in present)
    fine = len(present) - breaching
    if treat_missing == "breaching":
        breaching += missing
    elif treat_missing == "notBreaching":
        fine += missing
    if breaching >= to_alarm:
        return "ALARM"
    if fine > len(points) - to_alarm:
        return "OK"
    return state
