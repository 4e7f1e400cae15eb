"""Checks an EMF document against the published specification (tests only).

The JSON Schema in ``tests/schemas/emf.schema.json`` covers the structure; what a schema
cannot express is checked here: every dimension named in a DimensionSet is a root member
with a string value, every metric named in a directive is a root member holding a number or
an array of at most 100 numbers, no NaN or infinity, and the document's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from metricskit import limits

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "emf.schema.json").read_text())
Draft202012Validator.check_schema(SCHEMA)
_VALIDATOR = Draft202012Validator(SCHEMA)
_VALUE_VALIDATOR = Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": "#/$defs/MetricValue"})


def _no_constants(name: str) -> float:
    raise AssertionError(f"EMF document contains {name}, which is not JSON")


def validate_document(line: str, max_bytes: int = limits.EMF_MAX_EVENT_BYTES) -> dict[str, Any]:
    """Parse one line and assert it is a valid EMF document; return it."""
    assert len(line.encode("utf-8")) <= max_bytes, f"document of {len(line)} bytes > {max_bytes}"
    document = json.loads(line, parse_constant=_no_constants)
    assert isinstance(document, dict)
    _VALIDATOR.validate(document)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= limits.EMF_MAX_DIMENSIONS_PER_SET
            for name in dimension_set:
                assert isinstance(document.get(name), str), f"dimension {name!r} not a root string"
        assert len(directive["Metrics"]) <= limits.EMF_MAX_METRICS_PER_DIRECTIVE
        names = [m["Name"] for m in directive["Metrics"]]
        assert len(names) == len(set(names)), f"metric defined twice in a directive: {names}"
        for name in names:
            assert name in document, f"metric {name!r} is not a root member"
            value = document[name]
            _VALUE_VALIDATOR.validate(value)
            numbers = value if isinstance(value, list) else [value]
            assert len(numbers) <= limits.EMF_MAX_VALUES_PER_METRIC
            assert all(math.isfinite(v) for v in numbers)
    return document


def validate_output(text: str, max_bytes: int = limits.EMF_MAX_EVENT_BYTES) -> list[dict[str, Any]]:
    """Every line of ``text`` as a validated EMF document."""
    return [validate_document(line, max_bytes) for line in text.splitlines() if line]


def metric_values(documents: Iterable[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Every observation of metric ``name`` (with these dimension values) across documents."""
    found: list[float] = []
    for document in documents:
        if any(document.get(k) != v for k, v in dimensions.items()):
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if any(m["Name"] == name for m in directive["Metrics"]):
                value = document[name]
                found.extend(value if isinstance(value, list) else [value])
    return found


SeriesId = tuple[str, str, str, tuple[tuple[str, str], ...]]
"""(namespace, metric name, unit, ((dimension, value), ...)): one CloudWatch series."""


def series(documents: Iterable[dict[str, Any]]) -> dict[SeriesId, list[float]]:
    """Every series the documents publish, with its observations, as CloudWatch extracts them.

    Each metric of a directive goes into every one of the directive's dimension sets (the
    specification: "Every DimensionSet used creates a new metric in CloudWatch").
    """
    found: dict[SeriesId, list[float]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = tuple((name, document[name]) for name in dimension_set)
                for definition in directive["Metrics"]:
                    name = definition["Name"]
                    unit = definition.get("Unit", "None")
                    value = document[name]
                    observations = found.setdefault((directive["Namespace"], name, unit, dims), [])
                    observations.extend(value if isinstance(value, list) else [value])
    return found


def definitions(documents: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every MetricDefinition across documents."""
    return [
        m
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for m in directive["Metrics"]
    ]
