"""The dashboard renderer and its local metric math, on datapoints from an in-memory source."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from examples.dashboard_render import (
    PALETTE,
    Datapoints,
    MetricQuery,
    RenderReport,
    WidgetReport,
    format_number,
    parse_metric_rows,
    render_dashboard,
)
from examples.metric_math import MathContext, UnsupportedExpressionError, evaluate

START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(minutes=10)
NS = "Test/Render"
JOB = (("JobId", "j1"),)


class DictSource:
    """Datapoints per (metric name, dimensions, stat), at 60 s spacing from START."""

    def __init__(self, series: dict[tuple[str, tuple[tuple[str, str], ...], str], list[float]]):
        self.series = series
        self.queries: list[MetricQuery] = []

    def fetch(self, query: MetricQuery, start: dt.datetime, end: dt.datetime) -> Datapoints:
        self.queries.append(query)
        values = self.series.get((query.name, query.dimensions, query.stat), [])
        if query.period >= (end - start).total_seconds():  # one period over the whole range
            return ([start.timestamp()], [sum(values)]) if values else ([], [])
        stamps = [START.timestamp() + 60 * i for i in range(len(values))]
        return stamps, values

    def list_metrics(
        self, namespace: str, name: str | None
    ) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        return [(n, d) for n, d, _ in self.series if name is None or n == name]


def ctx(**series: list[float]) -> MathContext:
    return MathContext({k: np.asarray(v, dtype=float) for k, v in series.items()}, period=60)


def values(expression: str, context: MathContext) -> list[list[float]]:
    result = evaluate(expression, context)
    if result.scalar is not None:
        return [[result.scalar]]
    return [np.round(s.values, 6).tolist() for s in result.series]


def test_rate_from_a_sum_divided_by_its_period() -> None:
    assert values("m1/PERIOD(m1)", ctx(m1=[60, 120])) == [[1.0, 2.0]]


def test_error_rate_expression_with_precedence_and_parentheses() -> None:
    context = ctx(e1=[1, 0, 3], e2=[99, 50, 0])
    assert values("e1/(e1+e2)*100", context) == [[1.0, 0.0, 100.0]]
    assert values("100*e1/(e1+e2)", context) == [[1.0, 0.0, 100.0]]
    assert values("-e1 + 2 * 3", context) == [[5.0, 6.0, 3.0]]


def test_division_by_zero_leaves_a_gap_not_an_infinity() -> None:
    result = values("m1/m2", ctx(m1=[1, 2], m2=[0, 4]))
    assert math.isnan(result[0][0])
    assert result[0][1] == 0.5


def test_sum_of_metrics_adds_series_point_by_point_ignoring_gaps() -> None:
    context = ctx(m1=[1, math.nan, math.nan], m2=[10, 20, math.nan])
    result = values("SUM(METRICS())", context)
    assert result[0][:2] == [11.0, 20.0]
    assert math.isnan(result[0][2])
    assert values("MAX([m1, m2])", context)[0][:2] == [10.0, 20.0]
    assert values("AVG(METRICS('m2'))", context)[0][:2] == [10.0, 20.0]


def test_fill_running_sum_rate_and_diff() -> None:
    context = ctx(m1=[1, math.nan, 3])
    assert values("FILL(m1, 0)", context) == [[1.0, 0.0, 3.0]]
    assert values("FILL(m1, REPEAT)", context) == [[1.0, 1.0, 3.0]]
    running = values("RUNNING_SUM(m1)", context)[0]
    assert running[0] == 1.0
    assert math.isnan(running[1])
    assert running[2] == 4.0
    assert values("RATE(m2)", ctx(m2=[0, 60, 180]))[0][1:] == [1.0, 2.0]


def test_comparisons_and_if_leave_missing_points_missing() -> None:
    """What the alarms need: 1/0 per point, a gap where an operand has one, and IF picking a
    branch per point (the error-rate and stalled alarms)."""
    nan = math.nan
    context = ctx(m1=[0, 5, nan, 2], m2=[1, 1, 1, nan])
    assert values("m1 < 1", context)[0][:2] == [1.0, 0.0]
    assert all(math.isnan(v) for v in values("m1 >= m2", context)[0][2:])
    assert values("2 == 2", context) == [[1.0]]
    assert values("m1 != 5", context)[0][:2] == [1.0, 0.0]
    picked = values("IF(m1 > 1, m2 * 10, 7)", context)[0]
    assert picked[:2] == [7.0, 10.0]
    assert math.isnan(picked[2])
    assert math.isnan(picked[3])  # the chosen branch, m2 * 10, has a gap there
    # The stalled alarm's shape: a 1 repeated over silence clears it, a 0 does not.
    done = ctx(p=[5, nan, nan], c=[1, nan, nan])
    stalled = "IF(FILL(c, REPEAT) > 0, 0, IF(FILL(p, 0) < 1, 1, 0))"
    assert values(stalled, done) == [[0.0, 0.0, 0.0]]
    died = ctx(p=[5, nan, nan], c=[0, nan, nan])
    assert values(stalled, died) == [[0.0, 1.0, 1.0]]
    before_start = values(stalled, ctx(p=[nan, nan], c=[nan, nan]))[0]
    assert all(math.isnan(v) for v in before_start)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("ANOMALY_DETECTION_BAND(m1)", "not evaluated locally"),
        ("m9 + 1", "names no metric"),
        ("m1 +", "ends too early"),
        ("m1 ? 2", "cannot read"),
        ("(m1", "ends too early"),
    ],
)
def test_unsupported_expressions_raise_a_clear_error(expression: str, message: str) -> None:
    with pytest.raises(UnsupportedExpressionError, match=message):
        evaluate(expression, ctx(m1=[1.0]))


def test_metric_rows_expand_the_dot_shorthand_and_number_unnamed_rows() -> None:
    rows = parse_metric_rows(
        {
            "stat": "Sum",
            "period": 60,
            "metrics": [
                [NS, "RecordsProcessed", "JobId", "j1"],
                [".", "ErrorCount", ".", ".", {"stat": "Maximum", "id": "err"}],
                [{"expression": "m1/PERIOD(m1)", "label": "rate"}],
            ],
        }
    )
    assert rows[0].ident == "m1"
    assert rows[0].query == MetricQuery(NS, "RecordsProcessed", JOB, "Sum", 60)
    assert rows[1].ident == "err"
    assert rows[1].query == MetricQuery(NS, "ErrorCount", JOB, "Maximum", 60)
    assert rows[2].expression == "m1/PERIOD(m1)"
    assert rows[2].label == "rate"


def body() -> dict[str, object]:
    def metric(title: str, x: int, y: int, metrics: list[list[object]], **extra: object):  # type: ignore[no-untyped-def]
        props = {"title": title, "period": 60, "stat": "Sum", "metrics": metrics, **extra}
        return {"type": "metric", "x": x, "y": y, "width": 8, "height": 6, "properties": props}

    search = f"SEARCH('{{{NS},JobId}} MetricName=\"RecordsPerSecond\"', 'Average', 60)"
    return {
        "widgets": [
            {
                "type": "text",
                "x": 0,
                "y": 0,
                "width": 24,
                "height": 2,
                "properties": {"markdown": "# Jobs\nA **test** dashboard"},
            },
            metric(
                "Throughput",
                0,
                2,
                [
                    [NS, "RecordsProcessed", "JobId", "j1", {"id": "m1", "visible": False}],
                    [{"expression": "m1/PERIOD(m1)", "label": "records/s", "id": "e1"}],
                ],
            ),
            metric(
                "Errors",
                8,
                2,
                [
                    [NS, "ErrorCount", "JobId", "j1", {"id": "m1"}],
                    [NS, "RecordsProcessed", "JobId", "j1", {"id": "m2", "visible": False}],
                    [{"expression": "100*m1/(m1+m2)", "label": "error rate %", "id": "e1"}],
                ],
                view="singleValue",
                setPeriodToTimeRange=True,
            ),
            metric("Search", 16, 2, [[{"expression": search, "id": "e1"}]]),
            metric("Empty", 0, 8, [[NS, "ETASeconds", "JobId", "j1", {"stat": "Average"}]]),
            metric(
                "Unsupported",
                8,
                8,
                [
                    [NS, "RecordsProcessed", "JobId", "j1", {"id": "m1"}],
                    [{"expression": "ANOMALY_DETECTION_BAND(m1)", "id": "e1"}],
                ],
            ),
        ]
    }


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[RenderReport, DictSource]:
    source = DictSource(
        {
            ("RecordsProcessed", JOB, "Sum"): [600.0, 1200.0, 900.0, 300.0],
            ("ErrorCount", JOB, "Sum"): [1.0, 0.0, 2.0, 0.0],
            ("RecordsPerSecond", (("JobId", "j1"),), "Average"): [5.0, 6.0, 7.0],
            ("RecordsPerSecond", (("JobId", "j2"),), "Average"): [1.0, 2.0],
            ("RecordsPerSecond", (("JobId", "j1"), ("WorkerId", "w")), "Average"): [9.0],
        }
    )
    report = render_dashboard(
        body(), source, tmp_path / "dash.png", start=START, end=END, title="test"
    )
    return report, source


def by_title(report: RenderReport, title: str) -> WidgetReport:
    return next(w for w in report.widgets if w.title == title)


def test_each_widget_draws_what_its_metrics_and_math_say(
    rendered: tuple[RenderReport, DictSource],
) -> None:
    report, _ = rendered
    throughput = by_title(report, "Throughput")
    assert throughput.series_drawn == 1  # m1 is hidden; e1 is drawn
    assert throughput.points_drawn == 4
    assert throughput.values == {"records/s": 5.0}
    errors = by_title(report, "Errors")
    assert errors.values["ErrorCount (Sum)"] == 3.0
    assert errors.values["error rate %"] == pytest.approx(100 * 3 / 3003)
    search = by_title(report, "Search")
    assert search.series_drawn == 2  # j1 and j2; the series with a WorkerId does not match
    assert by_title(report, "Empty").series_drawn == 0
    unsupported = by_title(report, "Unsupported")
    assert unsupported.problem is not None
    assert "ANOMALY_DETECTION_BAND" in unsupported.problem


def test_the_png_has_lines_inside_the_plot_areas_that_have_data(
    rendered: tuple[RenderReport, DictSource],
) -> None:
    from matplotlib import image

    report, _ = rendered
    pixels = image.imread(report.path)[:, :, :3]
    assert pixels.shape[:2] == (report.height_px, report.width_px)
    line = np.asarray([int(PALETTE[0][i : i + 2], 16) / 255 for i in (1, 3, 5)])

    def line_pixels(widget: WidgetReport) -> int:
        left, top, right, bottom = widget.box_px
        area = pixels[top:bottom, left:right]
        return int((np.abs(area - line).max(axis=2) < 0.08).sum())

    assert line_pixels(by_title(report, "Throughput")) > 100
    assert line_pixels(by_title(report, "Search")) > 100
    assert line_pixels(by_title(report, "Empty")) == 0


def test_widgets_without_coordinates_flow_across_the_grid(tmp_path: Path) -> None:
    widgets = [
        {"type": "text", "width": 12, "height": 2, "properties": {"markdown": str(i)}}
        for i in range(3)
    ]
    report = render_dashboard(
        {"widgets": widgets}, DictSource({}), tmp_path / "flow.png", start=START, end=END
    )
    tops = [w.box_px[1] for w in report.widgets]
    lefts = [w.box_px[0] for w in report.widgets]
    assert tops[0] == tops[1] < tops[2]
    assert lefts[0] == lefts[2] < lefts[1]


def test_numbers_are_formatted_like_a_dashboard() -> None:
    assert format_number(1_234_567) == "1.23M"
    assert format_number(45_600) == "45.6k"
    assert format_number(12) == "12"
    assert format_number(0.01234) == "0.0123"


def test_a_bare_fetch_function_is_enough(tmp_path: Path) -> None:
    asked: list[MetricQuery] = []

    def fetch(query: MetricQuery, start: dt.datetime, end: dt.datetime) -> Datapoints:
        asked.append(query)
        return [START.timestamp(), START.timestamp() + 60], [1.0, 3.0]

    widget = {
        "type": "metric",
        "x": 0,
        "y": 0,
        "width": 12,
        "height": 6,
        "properties": {
            "title": "t",
            "period": 60,
            "stat": "Maximum",
            "metrics": [[NS, "RecordsDone", "JobId", "j1"]],
        },
    }
    report = render_dashboard(
        {"widgets": [widget]}, fetch, tmp_path / "f.png", start=START, end=END
    )
    assert asked == [MetricQuery(NS, "RecordsDone", JOB, "Maximum", 60)]
    assert report.widgets[0].points_drawn == 2


def _search_widget(expression: str) -> dict[str, object]:
    return {
        "type": "metric",
        "x": 0,
        "y": 0,
        "width": 12,
        "height": 6,
        "properties": {"title": "s", "period": 60, "metrics": [[{"expression": expression}]]},
    }


def test_search_with_own_dimensions_matches_them_exactly_by_name(tmp_path: Path) -> None:
    """What the Terraform module writes when its dimensions input is set: quoted schema names
    and Name="value" exact terms with \\ " ( ) escaped. The resolver once took Env="prod" for
    a word to find and matched nothing at all."""
    own = (("Env", "prod"), ("team_name", 'a(b) "x" \\y'))
    other = (("Env", "dev"), ("team_name", 'a(b) "x" \\y'))
    source = DictSource(
        {
            ("ProgressPercentage", (("JobId", "j1"), ("Stage", "read"), *own), "Maximum"): [50.0],
            ("ProgressPercentage", (("JobId", "j2"), ("Stage", "load"), *own), "Maximum"): [9.0],
            ("ProgressPercentage", (("JobId", "j1"), ("Stage", "read"), *other), "Maximum"): [1.0],
            ("ProgressPercentage", (("JobId", "j1"), ("Stage", "read")), "Maximum"): [2.0],
        }
    )
    query = (
        f'{{"{NS}",JobId,Stage,"Env","team_name"}} MetricName="ProgressPercentage" '
        'Env="prod" team_name="a\\(b\\) \\"x\\" \\\\y"'
    )
    report = render_dashboard(
        {"widgets": [_search_widget(f"SEARCH('{query}', 'Maximum', 60)")]},
        source,
        tmp_path / "s.png",
        start=START,
        end=END,
    )
    (widget,) = report.widgets
    assert widget.problem is None
    assert widget.series_drawn == 2  # j1/read and j2/load with Env=prod; not dev, not bare
    assert sorted(q.dimensions[:2] for q in source.queries) == [
        (("JobId", "j1"), ("Stage", "read")),
        (("JobId", "j2"), ("Stage", "load")),
    ]
    assert all(dict(q.dimensions)["Env"] == "prod" for q in source.queries)


def test_search_terms_exact_and_partial() -> None:
    from examples.dashboard_render import SearchQuery

    query = SearchQuery.parse('{"Rev/NS",JobId,"team.name"} "RecordsDone" team.name=ops j1')
    assert query.namespace == "Rev/NS"
    assert query.dimension_names == ("JobId", "team.name")
    assert query.exact == (("", "RecordsDone"),)
    assert query.partial == (("team.name", "ops"), ("", "j1"))
    dims = (("JobId", "j10"), ("team.name", "devops"))
    assert query.matches("RecordsDone", dims)
    assert not query.matches("RecordsDoneTotal", dims)  # "..." is exact
    assert not query.matches("RecordsDone", (("JobId", "j10"),))  # not the schema's names
    with pytest.raises(UnsupportedExpressionError, match="Boolean"):
        SearchQuery.parse("{NS,JobId} a OR b")
