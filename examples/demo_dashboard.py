"""The dashboard body the demo draws when no deployed dashboard is found.

It follows the Terraform module's layout (text header, a summary row of throughput, progress
and errors, then detail rows) on CloudWatch's 24-column grid, reads metric names and
statistics from the catalog, and uses the metric math forms the module uses, so the local
renderer is exercised on them.
"""

from __future__ import annotations

from typing import Any, Final

from metricskit import catalog

FULL: Final = 24
THIRD: Final = 8
HALF: Final = 12
HEADER_HEIGHT: Final = 2
ROW_HEIGHT: Final = 6


def _stat(name: str) -> str:
    return catalog.entry(name).statistic


def demo_dashboard_body(
    namespace: str, job_id: str, *, latency_metric: str, period: int, region: str = "us-east-1"
) -> dict[str, Any]:
    """A CloudWatch dashboard body (the JSON ``PutDashboard`` takes) for one job.

    >>> body = demo_dashboard_body("CSVToKafka", "demo-1", latency_metric="KafkaLatency",
    ...                            period=60)
    >>> body["widgets"][0]["type"]
    'text'
    """
    job = [catalog.JOB_ID, job_id]

    def metric(name: str, **options: Any) -> list[Any]:
        return [namespace, name, *job, {"stat": _stat(name), **options}]

    def widget(
        title: str, x: int, y: int, width: int, metrics: list[list[Any]], **extra: Any
    ) -> dict[str, Any]:
        props = {"title": title, "region": region, "period": period, "metrics": metrics}
        props.update(extra)
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": width,
            "height": ROW_HEIGHT,
            "properties": props,
        }

    summary_y = HEADER_HEIGHT
    detail_y = summary_y + ROW_HEIGHT
    cost_y = detail_y + ROW_HEIGHT
    search = (
        f'SEARCH(\'{{{namespace},{catalog.JOB_ID}}} MetricName="{catalog.RECORDS_PER_SECOND}" '
        f"{job_id}', 'Average', {period})"
    )
    return {
        "widgets": [
            {
                "type": "text",
                "x": 0,
                "y": 0,
                "width": FULL,
                "height": HEADER_HEIGHT,
                "properties": {
                    "markdown": f"# {namespace}: job {job_id}\n"
                    "Throughput, progress, errors, Kafka latency, ETA and cost."
                },
            },
            widget(
                "Throughput (records/s, all workers)",
                0,
                summary_y,
                THIRD,
                [
                    metric(catalog.RECORDS_PROCESSED, id="m1", visible=False),
                    [{"expression": "m1/PERIOD(m1)", "label": "records/s", "id": "e1"}],
                ],
            ),
            widget(
                "Progress (%)",
                THIRD,
                summary_y,
                THIRD,
                [
                    metric(catalog.PROGRESS_PERCENTAGE, label="progress"),
                ],
                view="gauge",
                yAxis={"left": {"min": 0, "max": 100}},
            ),
            widget(
                "Errors",
                2 * THIRD,
                summary_y,
                THIRD,
                [
                    metric(catalog.ERROR_COUNT, id="m1", label="errors"),
                    metric(catalog.RECORDS_PROCESSED, id="m2", visible=False),
                    [{"expression": "100*m1/(m1+m2)", "label": "error rate %", "id": "e1"}],
                ],
                view="singleValue",
                setPeriodToTimeRange=True,
            ),
            widget(
                f"{latency_metric} (ms)",
                0,
                detail_y,
                HALF,
                [
                    [namespace, latency_metric, *job, {"stat": "Average", "label": "average"}],
                    [".", ".", ".", ".", {"stat": "p99", "label": "p99"}],
                ],
            ),
            widget(
                "Records done",
                HALF,
                detail_y,
                HALF,
                [
                    metric(catalog.RECORDS_PROCESSED, id="m1", visible=False),
                    [{"expression": "RUNNING_SUM(m1)", "label": "records done (job)", "id": "e1"}],
                    [{"expression": search, "id": "e2", "visible": False}],
                ],
            ),
            widget(
                "Worker rate (records/s)",
                0,
                cost_y,
                THIRD,
                [
                    [{"expression": search, "id": "e1", "label": "rate"}],
                ],
            ),
            widget("ETA (s)", THIRD, cost_y, THIRD, [metric(catalog.ETA_SECONDS, label="ETA")]),
            widget(
                "Cost (USD)",
                2 * THIRD,
                cost_y,
                THIRD,
                [
                    metric(catalog.ESTIMATED_COST, label="estimated"),
                    metric(catalog.COST_PER_MILLION_RECORDS, label="per 1M records"),
                ],
                view="singleValue",
                setPeriodToTimeRange=True,
            ),
        ]
    }
