"""A small evaluator for the CloudWatch metric math a dashboard uses, over local series.

moto stores datapoints but evaluates no metric math, so the demo's dashboard picture computes
expressions here. Supported (what the metricskit dashboard needs, and a bit more):

* numbers, metric ids (``m1``, ``e1``, any ``[a-z][A-Za-z0-9_]*``), ``+ - * /``, unary minus,
  parentheses, arrays ``[m1, m2]``;
* comparisons ``< <= > >= == !=`` (1 or 0 per point, missing where an operand is) and
  ``IF(condition, a, b)`` (``a`` where the condition is non-zero, ``b`` where it is zero,
  missing where it is missing), as the alarms need;
* ``METRICS()`` / ``METRICS('filter')``, ``SUM``, ``AVG``, ``MIN``, ``MAX`` (across the series
  of an array, point by point), ``PERIOD(x)``, ``FILL(x, value|REPEAT)``, ``ABS``, ``DIFF``,
  ``RATE``, ``RUNNING_SUM``, ``SEARCH('{Namespace,Dim} MetricName="X" words', 'Stat', period)``
  (resolved by the caller, e.g. with ListMetrics).

A series is a float array on the widget's time grid, NaN where CloudWatch has no datapoint.
Anything else raises :class:`UnsupportedExpressionError`, which the renderer shows in place of
the widget instead of failing the whole picture.

>>> import numpy as np
>>> ctx = MathContext({"m1": np.array([2.0, 4.0])}, period=60)
>>> evaluate("m1 / PERIOD(m1)", ctx).series[0].values.tolist()
[0.03333333333333333, 0.06666666666666667]
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
SearchResolver = Callable[[str, str, int], list[tuple[str, FloatArray]]]
"""(search query, statistic, period) -> [(label, series)]."""

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|[<>]|[-+*/(),\[\]]))"
)


class UnsupportedExpressionError(ValueError):
    """An expression uses syntax or a function this local evaluator does not implement."""


@dataclass(frozen=True, slots=True)
class Labeled:
    """One series with the label CloudWatch would give it."""

    label: str
    values: FloatArray


@dataclass(frozen=True, slots=True)
class Value:
    """An evaluated expression: a scalar, or one or more series (an array of series)."""

    scalar: float | None = None
    series: tuple[Labeled, ...] = ()
    is_array: bool = False


@dataclass
class MathContext:
    """The series an expression may name, the grid's period, and how to resolve SEARCH."""

    metrics: Mapping[str, FloatArray]
    period: int
    search: SearchResolver | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    metric_ids: tuple[str, ...] | None = None
    """Ids ``METRICS()`` returns (the non-expression metrics); default all of ``metrics``."""


def evaluate(expression: str, context: MathContext) -> Value:
    """Evaluate ``expression`` over ``context``; see the module docstring for the grammar."""
    parser = _Parser(_tokens(expression), context, expression)
    result = parser.expression()
    if parser.peek() is not None:
        raise UnsupportedExpressionError(f"unexpected {parser.peek()!r} in {expression!r}")
    return result


def _tokens(expression: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise UnsupportedExpressionError(
                f"cannot read {text[position : position + 12]!r} in {expression!r}"
            )
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    """Recursive descent: expression := sum (comparison sum)?; sum := term (+|- term)*;
    term := unary (*|/ unary)*."""

    def __init__(self, tokens: list[tuple[str, str]], context: MathContext, text: str) -> None:
        self._tokens = tokens
        self._at = 0
        self._context = context
        self._text = text

    def peek(self) -> str | None:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self._at >= len(self._tokens):
            raise UnsupportedExpressionError(f"{self._text!r} ends too early")
        token = self._tokens[self._at]
        if expected is not None and token[1] != expected:
            raise UnsupportedExpressionError(f"expected {expected!r} in {self._text!r}")
        self._at += 1
        return token

    def expression(self) -> Value:
        value = self._sum()
        if self.peek() in _COMPARISONS:
            op = self._take()[1]
            value = _binary(op, value, self._sum())
        return value

    def _sum(self) -> Value:
        value = self._term()
        while self.peek() in {"+", "-"}:
            op = self._take()[1]
            value = _binary(op, value, self._term())
        return value

    def _term(self) -> Value:
        value = self._unary()
        while self.peek() in {"*", "/"}:
            op = self._take()[1]
            value = _binary(op, value, self._unary())
        return value

    def _unary(self) -> Value:
        if self.peek() == "-":
            self._take()
            return _binary("*", Value(scalar=-1.0), self._unary())
        return self._atom()

    def _atom(self) -> Value:
        kind, text = self._take()
        if kind == "num":
            return Value(scalar=float(text))
        if kind == "str":
            raise UnsupportedExpressionError(
                f"a string is only allowed as a function argument: {text}"
            )
        if text == "(":
            value = self.expression()
            self._take(")")
            return value
        if text == "[":
            items = [self.expression()]
            while self.peek() == ",":
                self._take()
                items.append(self.expression())
            self._take("]")
            return Value(
                series=tuple(s for item in items for s in _as_series(item, self._context)),
                is_array=True,
            )
        if kind == "name" and self.peek() == "(":
            return self._call(text.upper())
        if kind == "name":
            found = self._context.metrics.get(text)
            if found is None:
                raise UnsupportedExpressionError(f"{text!r} names no metric in {self._text!r}")
            return Value(series=(Labeled(self._context.labels.get(text, text), found),))
        raise UnsupportedExpressionError(f"unexpected {text!r} in {self._text!r}")

    def _arguments(self) -> list[Value | str]:
        self._take("(")
        args: list[Value | str] = []
        while self.peek() != ")":
            kind, text = self._tokens[self._at] if self._at < len(self._tokens) else ("", "")
            if kind == "str":
                self._take()
                args.append(text[1:-1])
            elif kind == "name" and text.upper() in {"REPEAT", "LINEAR"}:
                self._take()
                args.append(text.upper())
            else:
                args.append(self.expression())
            if self.peek() == ",":
                self._take()
        self._take(")")
        return args

    def _call(self, name: str) -> Value:
        args = self._arguments()
        context = self._context
        if name == "METRICS":
            wanted = args[0] if args and isinstance(args[0], str) else ""
            ids = context.metric_ids if context.metric_ids is not None else tuple(context.metrics)
            chosen = [i for i in ids if wanted in i]
            return Value(
                series=tuple(Labeled(context.labels.get(i, i), context.metrics[i]) for i in chosen),
                is_array=True,
            )
        if name == "SEARCH":
            return self._search(args)
        first = _value_arg(name, args, 0)
        if name == "PERIOD":
            return Value(scalar=float(context.period))
        if name in _REDUCERS:
            return _reduce(name, first, context)
        if name in _ELEMENTWISE:
            return _map(first, lambda v: _ELEMENTWISE[name](v, context.period))
        if name == "FILL":
            return _fill(first, args[1] if len(args) > 1 else None)
        if name == "IF":
            return _if(first, _value_arg(name, args, 1), _value_arg(name, args, 2))
        raise UnsupportedExpressionError(f"{name}() is not evaluated locally (in {self._text!r})")

    def _search(self, args: list[Value | str]) -> Value:
        if self._context.search is None:
            raise UnsupportedExpressionError("SEARCH needs a metric lister")
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], str):
            raise UnsupportedExpressionError("SEARCH('query', 'Statistic', period) expected")
        period = self._context.period
        if len(args) > 2 and isinstance(args[2], Value) and args[2].scalar is not None:
            period = int(args[2].scalar)
        found = self._context.search(args[0], args[1], period)
        return Value(series=tuple(Labeled(label, v) for label, v in found), is_array=True)


def _value_arg(name: str, args: list[Value | str], index: int) -> Value:
    if len(args) <= index or not isinstance(args[index], Value):
        raise UnsupportedExpressionError(f"{name}() expects a metric or expression argument")
    found = args[index]
    assert isinstance(found, Value)
    return found


def _as_series(value: Value, context: MathContext) -> tuple[Labeled, ...]:
    if value.scalar is not None:
        raise UnsupportedExpressionError("an array may hold series only, not numbers")
    return value.series


def _binary(op: str, left: Value, right: Value) -> Value:
    def apply(a: FloatArray | float, b: FloatArray | float) -> FloatArray | float:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if op == "+":
                return np.add(a, b)
            if op == "-":
                return np.subtract(a, b)
            if op == "*":
                return np.multiply(a, b)
            if op in _COMPARISONS:
                # 1 or 0, and missing (NaN) where either side is: NaN compares false.
                missing = np.isnan(a) | np.isnan(b)
                return np.where(missing, np.nan, _COMPARISONS[op](a, b).astype(float))
            result = np.divide(a, b)
            # CloudWatch drops points where a division has no finite answer.
            return (
                np.where(np.isfinite(result), result, np.nan)
                if np.ndim(result)
                else (float(result) if np.isfinite(result) else float("nan"))
            )

    if left.scalar is not None and right.scalar is not None:
        return Value(scalar=float(apply(left.scalar, right.scalar)))
    if left.scalar is not None:
        return _map(right, lambda v: np.asarray(apply(left.scalar or 0.0, v), dtype=float))
    if right.scalar is not None:
        return _map(left, lambda v: np.asarray(apply(v, right.scalar or 0.0), dtype=float))
    if len(left.series) == 1 and len(right.series) == 1:
        label = f"{left.series[0].label} {op} {right.series[0].label}"
        values = np.asarray(apply(left.series[0].values, right.series[0].values), dtype=float)
        return Value(series=(Labeled(label, values),))
    if len(right.series) == 1:
        other = right.series[0].values
        return _map(left, lambda v: np.asarray(apply(v, other), dtype=float))
    if len(left.series) == 1:
        other = left.series[0].values
        return _map(right, lambda v: np.asarray(apply(other, v), dtype=float))
    raise UnsupportedExpressionError("arithmetic between two arrays of series is not defined")


_COMPARISONS: Final[dict[str, Callable[[FloatArray | float, FloatArray | float], FloatArray]]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _if(condition: Value, if_true: Value, if_false: Value) -> Value:
    """``IF(condition, a, b)`` point by point over a single condition series."""
    if condition.scalar is not None:
        return if_true if condition.scalar != 0 else if_false
    if len(condition.series) != 1:
        raise UnsupportedExpressionError("IF() takes one condition series, not an array")
    cond = condition.series[0].values

    def pick(branch: Value) -> FloatArray:
        if branch.scalar is not None:
            return np.full_like(cond, branch.scalar)
        if len(branch.series) != 1:
            raise UnsupportedExpressionError("IF() branches must be one series or a number")
        return branch.series[0].values

    chosen = np.where(cond != 0, pick(if_true), pick(if_false))
    values = np.where(np.isnan(cond), np.nan, chosen)
    return Value(series=(Labeled(condition.series[0].label, values),))


def _map(value: Value, fn: Callable[[FloatArray], FloatArray]) -> Value:
    return Value(
        series=tuple(Labeled(s.label, np.asarray(fn(s.values), dtype=float)) for s in value.series),
        is_array=value.is_array,
    )


def _reduce(name: str, value: Value, context: MathContext) -> Value:
    if value.scalar is not None:
        return value
    if not value.series:
        return Value(series=())
    if len(value.series) == 1 and not value.is_array:
        return value
    stacked = np.vstack([s.values for s in value.series])
    present = ~np.isnan(stacked)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reduced = _REDUCERS[name](stacked)
    reduced = np.where(present.any(axis=0), reduced, np.nan)
    return Value(series=(Labeled(name, np.asarray(reduced, dtype=float)),))


_REDUCERS: Final[dict[str, Callable[[FloatArray], FloatArray]]] = {
    "SUM": lambda a: np.nansum(a, axis=0),
    "AVG": lambda a: np.nanmean(a, axis=0),
    "MIN": lambda a: np.nanmin(a, axis=0),
    "MAX": lambda a: np.nanmax(a, axis=0),
}


def _diff(values: FloatArray, period: int) -> FloatArray:
    out = np.full_like(values, np.nan)
    out[1:] = values[1:] - values[:-1]
    return out


def _running_sum(values: FloatArray, period: int) -> FloatArray:
    # Missing points stay missing, as CloudWatch draws them; the sum carries over them.
    return np.where(np.isnan(values), np.nan, np.nancumsum(values))


_ELEMENTWISE: Final[dict[str, Callable[[FloatArray, int], FloatArray]]] = {
    "ABS": lambda v, p: np.abs(v),
    "DIFF": _diff,
    "RATE": lambda v, p: _diff(v, p) / float(p),
    "RUNNING_SUM": _running_sum,
}


def _fill(value: Value, how: Value | str | None) -> Value:
    if how == "REPEAT":

        def repeat(v: FloatArray) -> FloatArray:
            out = v.copy()
            for i in range(1, len(out)):
                if np.isnan(out[i]):
                    out[i] = out[i - 1]
            return out

        return _map(value, repeat)
    if isinstance(how, Value) and how.scalar is not None:
        constant = how.scalar
        return _map(value, lambda v: np.where(np.isnan(v), constant, v))
    raise UnsupportedExpressionError("FILL(x, number) or FILL(x, REPEAT) expected")
