"""Draw a CloudWatch dashboard body as a PNG, from datapoints fetched by the caller.

The body is CloudWatch's own JSON (``GetDashboard``'s ``DashboardBody``): widgets with
``type``/``x``/``y``/``width``/``height`` on the 24-column grid and ``properties``
(``metrics`` rows, ``view``, ``stat``, ``period``, ``title``, ``markdown``, ``yAxis``...).
Datapoints come from a :class:`MetricSource`: :class:`CloudWatchSource` (GetMetricData and
ListMetrics, for real AWS) or any object with the same two methods (the demo reads its local
moto store, which has no percentiles). Metric math is evaluated locally by
:mod:`examples.metric_math`, because moto evaluates none.

>>> answer = cloudwatch.get_dashboard(DashboardName="jobs")                  # doctest: +SKIP
>>> report = render_dashboard(json.loads(answer["DashboardBody"]),          # doctest: +SKIP
...                           CloudWatchSource(cloudwatch), "dash.png", start=start, end=end)
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from examples.metric_math import (
    FloatArray,
    Labeled,
    MathContext,
    UnsupportedExpressionError,
    evaluate,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLUMN_PX: Final = 64
"""Pixels per grid column (24 columns make a 1536 px wide picture)."""
ROW_PX: Final = 44
"""Pixels per grid row (a default 6-row widget is 264 px high)."""
DPI: Final = 100
DEFAULT_PERIOD: Final = 300
BACKGROUND: Final = "#ffffff"
PALETTE: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One metric at one statistic and period, as a widget row asks for it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int


Datapoints = tuple[Sequence[float], Sequence[float]]
"""(epoch-second timestamps, values)."""


class MetricSource(Protocol):
    """Where datapoints come from: CloudWatch, or a local store in tests and the demo."""

    def fetch(self, query: MetricQuery, start: dt.datetime, end: dt.datetime) -> Datapoints: ...

    def list_metrics(
        self, namespace: str, name: str | None
    ) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        """(metric name, dimensions) of every metric in ``namespace`` (and ``name``)."""
        ...


FetchFunction = Callable[[MetricQuery, dt.datetime, dt.datetime], Datapoints]
"""A bare fetch function is enough when the dashboard uses no SEARCH."""


class FunctionSource:
    """A :class:`MetricSource` from a fetch function (SEARCH then finds no metrics)."""

    def __init__(self, fetch: FetchFunction) -> None:
        self._fetch = fetch

    def fetch(self, query: MetricQuery, start: dt.datetime, end: dt.datetime) -> Datapoints:
        return self._fetch(query, start, end)

    def list_metrics(
        self, namespace: str, name: str | None
    ) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        return []


class CloudWatchSource:
    """Datapoints from GetMetricData, metric lists from ListMetrics.

    >>> source = CloudWatchSource(boto3.client("cloudwatch"))   # doctest: +SKIP
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def fetch(self, query: MetricQuery, start: dt.datetime, end: dt.datetime) -> Datapoints:
        metric: dict[str, Any] = {"Namespace": query.namespace, "MetricName": query.name}
        if query.dimensions:
            metric["Dimensions"] = [{"Name": n, "Value": v} for n, v in query.dimensions]
        answer = self._client.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "q",
                    "MetricStat": {"Metric": metric, "Period": query.period, "Stat": query.stat},
                    "ReturnData": True,
                }
            ],
            StartTime=start,
            EndTime=end,
        )
        results = answer["MetricDataResults"]
        if not results:
            return [], []
        stamps = [t.timestamp() for t in results[0]["Timestamps"]]
        return stamps, [float(v) for v in results[0]["Values"]]

    def list_metrics(
        self, namespace: str, name: str | None
    ) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        kwargs: dict[str, Any] = {"Namespace": namespace}
        if name:
            kwargs["MetricName"] = name
        found = []
        for page in self._client.get_paginator("list_metrics").paginate(**kwargs):
            for item in page["Metrics"]:
                dims = tuple((d["Name"], d["Value"]) for d in item.get("Dimensions", []))
                found.append((item["MetricName"], dims))
        return found


@dataclass
class WidgetReport:
    """What was drawn for one widget: where (pixels, top-left origin) and how much."""

    kind: str
    title: str
    view: str
    box_px: tuple[int, int, int, int]
    """(left, top, right, bottom) of the plotting area in the PNG."""
    series_drawn: int = 0
    points_drawn: int = 0
    values: dict[str, float] = field(default_factory=dict)
    """Last value of each drawn series (what a single-value widget shows)."""
    problem: str | None = None


@dataclass
class RenderReport:
    path: Path
    width_px: int
    height_px: int
    widgets: list[WidgetReport]


@dataclass
class _Row:
    ident: str
    label: str
    visible: bool
    query: MetricQuery | None = None
    expression: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def parse_metric_rows(properties: Mapping[str, Any]) -> list[_Row]:
    """The rows of a metric widget, with CloudWatch's ``"."`` shorthand expanded.

    ``"."`` repeats the value at the same position of the previous row. Rows without an
    ``id`` get ``m1``, ``m2``, ... by position, as the console does.
    """
    rows: list[_Row] = []
    previous: list[Any] = []
    default_stat = str(properties.get("stat", "Average"))
    default_period = int(properties.get("period", DEFAULT_PERIOD))
    for number, raw in enumerate(properties.get("metrics", []), start=1):
        items = list(raw)
        options: Mapping[str, Any] = items.pop() if items and isinstance(items[-1], dict) else {}
        ident = str(options.get("id", f"m{number}"))
        visible = bool(options.get("visible", True))
        if "expression" in options:
            label = str(options.get("label", ident))
            rows.append(
                _Row(ident, label, visible, expression=str(options["expression"]), options=options)
            )
            continue
        expanded = [
            previous[i] if v == "." and i < len(previous) else v for i, v in enumerate(items)
        ]
        previous = expanded
        if len(expanded) < 2 or len(expanded) % 2:
            raise UnsupportedExpressionError(f"metric row {raw!r} is not [ns, name, dim, value...]")
        dims = tuple((str(expanded[i]), str(expanded[i + 1])) for i in range(2, len(expanded), 2))
        stat = str(options.get("stat", default_stat))
        query = MetricQuery(
            str(expanded[0]),
            str(expanded[1]),
            dims,
            stat,
            int(options.get("period", default_period)),
        )
        label = str(options.get("label", f"{expanded[1]} ({stat})"))
        rows.append(_Row(ident, label, visible, query=query, options=options))
    return rows


def align(start: dt.datetime, period: int) -> dt.datetime:
    """``start`` rounded down to a multiple of ``period`` seconds since the epoch."""
    stamp = math.floor(start.timestamp() / period) * period
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC)


def _grid(start: dt.datetime, end: dt.datetime, period: int) -> FloatArray:
    first = start.timestamp()
    count = max(1, math.ceil((end.timestamp() - first) / period))
    return np.asarray([first + i * period for i in range(count)], dtype=float)


def _on_grid(points: Datapoints, grid: FloatArray, period: int) -> FloatArray:
    values = np.full(len(grid), np.nan)
    for stamp, value in zip(*points, strict=True):
        slot = int((stamp - grid[0]) // period)
        if 0 <= slot < len(grid):
            values[slot] = value if np.isnan(values[slot]) else values[slot] + value
    return values


_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
"""A double-quoted string in which a backslash escapes the next character."""
_SEARCH_SCHEMA: Final = re.compile(r"\{((?:" + _QUOTED + r'|[^}"])*)\}')
_SCHEMA_ITEM: Final = re.compile(r"\s*(" + _QUOTED + r"|[^,]*?)\s*(?:,|$)")
_SEARCH_TERM: Final = re.compile(
    r"\s*(?:(?P<name>[A-Za-z0-9_.:-]+)\s*=\s*)?(?:(?P<exact>" + _QUOTED + r")|(?P<word>[^\s\"]+))"
)


def _unquote(text: str) -> str:
    r"""``"a\(b\)"`` -> ``a(b)``: the quotes off, each escaped character kept as itself."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


@dataclass(frozen=True)
class SearchQuery:
    r"""The parts of a CloudWatch search query this renderer resolves: a schema
    ``{Namespace,Dim,...}`` (names may be double-quoted), then terms, each an exact match
    (``"text"``, ``Name="value"``: double quotes, ``\ " ( )`` escaped with a backslash) or a
    partial one (a bare word, ``Name=word``). Boolean operators are not supported.

    >>> SearchQuery.parse('{"NS",JobId,"team_name"} MetricName="X" team_name="a\\(b\\)"').exact
    (('MetricName', 'X'), ('team_name', 'a(b)'))
    """

    namespace: str
    dimension_names: tuple[str, ...]
    exact: tuple[tuple[str, str], ...] = ()
    """(designator, value) pairs; the designator "" matches any name or value exactly."""
    partial: tuple[tuple[str, str], ...] = ()
    """(designator, word) pairs; the designator "" matches a word anywhere."""

    @classmethod
    def parse(cls, text: str) -> SearchQuery:
        schema = _SEARCH_SCHEMA.search(text)
        if schema is None:
            raise UnsupportedExpressionError(
                f"SEARCH {text!r}: expected a {{Namespace,...}} schema"
            )
        items = [_unquote(m.group(1)) for m in _SCHEMA_ITEM.finditer(schema.group(1))]
        namespace, *names = [item for item in items if item]
        exact: list[tuple[str, str]] = []
        partial: list[tuple[str, str]] = []
        rest = text[: schema.start()] + " " + text[schema.end() :]
        position = 0
        while rest[position:].strip():
            term = _SEARCH_TERM.match(rest, position)
            if term is None or term.end() == position:
                raise UnsupportedExpressionError(
                    f"SEARCH {text!r}: cannot read {rest[position:]!r}"
                )
            name = term.group("name") or ""
            if term.group("exact") is not None:
                exact.append((name, _unquote(term.group("exact"))))
            elif term.group("word") in {"AND", "OR", "NOT"} or "(" in term.group("word"):
                raise UnsupportedExpressionError(f"SEARCH {text!r}: Boolean operators")
            else:
                partial.append((name, term.group("word")))
            position = term.end()
        return cls(namespace, tuple(names), tuple(exact), tuple(partial))

    @property
    def metric_name(self) -> str | None:
        """The exact ``MetricName`` asked for, if any (lets the lister narrow its answer)."""
        return next((value for name, value in self.exact if name == "MetricName"), None)

    def matches(self, metric_name: str, dimensions: Sequence[tuple[str, str]]) -> bool:
        """Whether a metric of the schema's namespace matches: exactly the schema's dimension
        names, every exact term and every partial one (a substring, case-sensitive: a rough
        stand-in for CloudWatch's token matching)."""
        if sorted(n for n, _ in dimensions) != sorted(self.dimension_names):
            return False
        fields = {"MetricName": metric_name, "Namespace": self.namespace, **dict(dimensions)}
        anything = [metric_name, self.namespace, *(x for pair in dimensions for x in pair)]
        for name, value in self.exact:
            if (fields.get(name) != value) if name else (value not in anything):
                return False
        for name, word in self.partial:
            haystack = [fields.get(name, "")] if name else anything
            if not any(word in text for text in haystack):
                return False
        return True


class _WidgetData:
    """Fetches and evaluates a metric widget's rows on one time grid."""

    def __init__(
        self, source: MetricSource, start: dt.datetime, end: dt.datetime, period: int
    ) -> None:
        self.source = source
        self.start = start
        self.end = end
        self.period = period
        self.grid = _grid(start, end, period)

    def fetch(self, query: MetricQuery) -> FloatArray:
        return _on_grid(self.source.fetch(query, self.start, self.end), self.grid, self.period)

    def search(self, text: str, stat: str, period: int) -> list[tuple[str, FloatArray]]:
        """SEARCH approximated by ListMetrics and :class:`SearchQuery`'s matching."""
        search = SearchQuery.parse(text)
        namespace = search.namespace
        found: list[tuple[str, FloatArray]] = []
        for metric_name, dims in sorted(
            set(self.source.list_metrics(namespace, search.metric_name))
        ):
            if not search.matches(metric_name, dims):
                continue
            query = MetricQuery(namespace, metric_name, dims, stat, period)
            label = " ".join([metric_name, *(v for _, v in dims)])
            found.append((label, self.fetch(query)))
        return found

    def evaluate(self, rows: list[_Row]) -> list[Labeled]:
        """Every visible row as labelled series (expressions evaluated in row order)."""
        values: dict[str, FloatArray] = {}
        labels: dict[str, str] = {}
        drawn: list[Labeled] = []
        metric_ids = tuple(r.ident for r in rows if r.query is not None)
        for row in rows:
            if row.query is None:
                continue
            values[row.ident] = self.fetch(row.query)
            labels[row.ident] = row.label
            if row.visible:
                drawn.append(Labeled(row.label, values[row.ident]))
        for row in rows:
            if row.expression is None:
                continue
            context = MathContext(values, self.period, self.search, labels, metric_ids)
            result = evaluate(row.expression, context)
            series: tuple[Labeled, ...]
            if result.scalar is not None:
                series = (Labeled(row.label, np.full(len(self.grid), result.scalar)),)
            else:
                series = result.series
            if len(series) == 1:
                values[row.ident] = series[0].values
                series = (Labeled(row.label, series[0].values),)
            labels[row.ident] = row.label
            if row.visible:
                drawn.extend(series)
        return drawn


def render_dashboard(
    body: Mapping[str, Any],
    source: MetricSource | FetchFunction,
    out: str | Path,
    *,
    start: dt.datetime,
    end: dt.datetime,
    title: str | None = None,
) -> RenderReport:
    """Draw every widget of ``body`` between ``start`` and ``end`` into the PNG ``out``.

    A widget whose data or expression cannot be had locally shows why, in its own box.
    """
    import matplotlib

    data: MetricSource = FunctionSource(source) if callable(source) else source
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    widgets = list(body.get("widgets", []))
    _place(widgets)
    rows = max((int(w["y"]) + int(w.get("height", 6)) for w in widgets), default=1)
    header_px = 40 if title else 0
    width_px, height_px = 24 * COLUMN_PX, rows * ROW_PX + header_px
    fig = plt.figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor=BACKGROUND)
    if title:
        fig.text(0.01, 1 - 20 / height_px, title, fontsize=14, weight="bold", va="center")
    canvas = _Canvas(fig, data, start, end, (width_px, height_px, header_px))
    reports = [canvas.draw_widget(w) for w in widgets]
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor=BACKGROUND)
    plt.close(fig)
    return RenderReport(path, width_px, height_px, reports)


def _place(widgets: list[dict[str, Any]]) -> None:
    """Widgets without x/y flow left to right, as CloudWatch places them."""
    x = y = row_height = 0
    for widget in widgets:
        width, height = int(widget.get("width", 6)), int(widget.get("height", 6))
        if "x" in widget and "y" in widget:
            continue
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        widget["x"], widget["y"] = x, y
        x += width
        row_height = max(row_height, height)


class _Canvas:
    """The figure, the data source and the time range every widget shares."""

    def __init__(
        self,
        fig: Figure,
        source: MetricSource,
        start: dt.datetime,
        end: dt.datetime,
        size: tuple[int, int, int],
    ) -> None:
        self.fig = fig
        self.source = source
        self.start = start
        self.end = end
        self.width_px, self.height_px, self.header_px = size

    def draw_widget(self, widget: Mapping[str, Any]) -> WidgetReport:
        props: Mapping[str, Any] = widget.get("properties", {})
        kind = str(widget.get("type", "metric"))
        view = str(props.get("view", "timeSeries")) if kind == "metric" else kind
        x, y = int(widget["x"]), int(widget["y"])
        w, h = int(widget.get("width", 6)), int(widget.get("height", 6))
        width_px, height_px, header_px = self.width_px, self.height_px, self.header_px
        left, top = x * COLUMN_PX + 10, header_px + y * ROW_PX + 30
        right, bottom = (x + w) * COLUMN_PX - 10, header_px + (y + h) * ROW_PX - 26
        if view == "timeSeries":
            left += 40
        ax = self.fig.add_axes(
            (
                left / width_px,
                1 - bottom / height_px,
                (right - left) / width_px,
                (bottom - top) / height_px,
            )
        )
        title = str(props.get("title", ""))
        report = WidgetReport(kind, title, view, (left, top, right, bottom))
        self.fig.text(
            (x * COLUMN_PX + 10) / width_px,
            1 - (header_px + y * ROW_PX + 16) / height_px,
            title,
            fontsize=10,
            weight="bold",
            va="center",
        )
        try:
            if kind == "text":
                _draw_text(ax, str(props.get("markdown", "")))
            elif kind == "metric":
                self.draw_metric(ax, props, view, report)
            elif kind == "alarm":
                names = [str(a).rsplit(":", 1)[-1] for a in props.get("alarms", [])]
                _draw_text(ax, "Alarms (states are not evaluated locally):\n" + "\n".join(names))
            else:
                _draw_text(ax, f"{kind} widget: not drawn locally")
        except (UnsupportedExpressionError, KeyError, TypeError, ValueError) as exc:
            report.problem = str(exc)
            ax.clear()
            _draw_text(ax, f"not drawn locally: {exc}")
        return report

    def draw_metric(
        self, ax: Axes, props: Mapping[str, Any], view: str, report: WidgetReport
    ) -> None:
        start, end = self.start, self.end
        period = int(props.get("period", DEFAULT_PERIOD))
        if props.get("setPeriodToTimeRange") and view != "timeSeries":
            # One period covering exactly the dashboard's time range.
            period = max(1, math.ceil((end - start).total_seconds()))
        else:
            start = align(start, period)
        data = _WidgetData(self.source, start, end, period)
        rows = parse_metric_rows({**props, "period": period})
        series = data.evaluate(rows)
        for item in series:
            present = item.values[~np.isnan(item.values)]
            if present.size:
                report.values[item.label] = float(present[-1])
        if view == "timeSeries":
            right = {r.label for r in rows if r.options.get("yAxis") == "right"}
            _draw_lines(ax, data.grid, series, props, report, period=period, right=right)
        elif view in {"singleValue", "gauge"}:
            _draw_numbers(ax, report.values, props, view)
            report.series_drawn = len(report.values)
            report.points_drawn = len(report.values)
        else:  # bar and pie: the latest value of each series as a bar
            labels = list(report.values)
            ax.bar(range(len(labels)), list(report.values.values()), color=PALETTE[0])
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            report.series_drawn = report.points_drawn = len(labels)


def _draw_text(ax: Axes, markdown: str) -> None:
    ax.set_axis_off()
    text = re.sub(r"^#+\s*", "", markdown, flags=re.MULTILINE)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("**", "").replace("`", "")
    ax.text(0.0, 1.0, text, va="top", ha="left", fontsize=9, wrap=True, transform=ax.transAxes)


def _draw_lines(
    ax: Axes,
    grid: FloatArray,
    series: list[Labeled],
    props: Mapping[str, Any],
    report: WidgetReport,
    *,
    period: int,
    right: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Lines on the widget's time range; series labelled in ``right`` (rows with
    ``"yAxis": "right"``) on a second y axis with the body's ``yAxis.right`` bounds."""
    stamps = grid
    right_ax: Axes | None = None
    handles: list[Any] = []
    for index, item in enumerate(series):
        mask = ~np.isnan(item.values)
        if not mask.any():
            continue
        target = ax
        if item.label in right:
            if right_ax is None:
                right_ax = ax.twinx()
            target = right_ax
        color = PALETTE[index % len(PALETTE)]
        handles += target.plot(
            stamps[mask],
            item.values[mask],
            label=item.label,
            color=color,
            linewidth=2,
            marker="o" if mask.sum() < 12 else None,
            markersize=4,
        )
        if mask.sum() == 1:
            # A lone point (one datapoint in a long period) spans its period, as a bar would.
            (at,) = stamps[mask]
            (value,) = item.values[mask]
            target.hlines(value, at, at + period, colors=color, linewidth=2)
        report.series_drawn += 1
        report.points_drawn += int(mask.sum())
    axes_bounds = props.get("yAxis", {})
    sides: list[tuple[Axes, str]] = [(ax, "left")]
    if right_ax is not None:
        sides.append((right_ax, "right"))
    for target, side in sides:
        bounds = axes_bounds.get(side, {})
        top = bounds.get("max")
        if top is None and target.has_data():
            # Headroom, so a flat line (one datapoint over a long period) is not on the frame.
            low, high = target.get_ylim()
            top = high + 0.08 * (high - min(low, float(bounds.get("min", low))))
        target.set_ylim(bottom=bounds.get("min"), top=top)
        target.tick_params(labelsize=7)
    # The widget's whole time range, even for a single point (matplotlib would otherwise
    # centre the axis on it, spanning days).
    ax.set_xlim(float(grid[0]), float(grid[-1]) + period)
    ax.grid(alpha=0.3)
    from matplotlib import ticker

    # Whole seconds of UTC clock time; date locators label sub-second ticks twice.
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(
        ticker.FuncFormatter(lambda x, _: time.strftime("%H:%M:%S", time.gmtime(x)))
    )
    if report.series_drawn:
        ax.legend(handles=handles, fontsize=7, loc="best", frameon=False)
    else:
        ax.text(
            0.5, 0.5, "no data", ha="center", va="center", color="#888888", transform=ax.transAxes
        )


def _draw_numbers(
    ax: Axes, values: Mapping[str, float], props: Mapping[str, Any], view: str
) -> None:
    ax.set_axis_off()
    if not values:
        ax.text(
            0.5, 0.5, "no data", ha="center", va="center", color="#888888", transform=ax.transAxes
        )
        return
    count = len(values)
    for index, (label, value) in enumerate(values.items()):
        cx = (index + 0.5) / count
        ax.text(
            cx,
            0.62,
            format_number(value),
            ha="center",
            va="center",
            fontsize=20,
            color=PALETTE[index % len(PALETTE)],
            transform=ax.transAxes,
        )
        ax.text(cx, 0.25, label, ha="center", va="center", fontsize=8, transform=ax.transAxes)
        if view == "gauge":
            bounds = props.get("yAxis", {}).get("left", {})
            low, high = float(bounds.get("min", 0)), float(bounds.get("max", 100))
            share = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
            width = 0.8 / count
            ax.add_patch(_bar(ax, cx - width / 2, 0.05, width, height=0.08, color="#dddddd"))
            ax.add_patch(
                _bar(ax, cx - width / 2, 0.05, width * share, height=0.08, color=PALETTE[index % 7])
            )


def _bar(ax: Axes, x: float, y: float, width: float, *, height: float, color: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), width, height, color=color, transform=ax.transAxes)


def format_number(value: float) -> str:
    """A dashboard-style number: 1.23M, 45.6k, 0.0123."""
    magnitude = abs(value)
    for limit, unit, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if magnitude >= limit:
            return f"{value / unit:.3g}{suffix}"
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"
