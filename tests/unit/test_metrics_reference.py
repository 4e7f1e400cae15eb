"""docs/METRICS_REFERENCE.md and the catalog cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from metricskit import catalog

DOC = Path(__file__).resolve().parents[2] / "docs" / "METRICS_REFERENCE.md"


def documented_rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"[A-Z][A-Za-z]+", cells[0]):
            rows[cells[0]] = cells
    return rows


def test_every_catalog_metric_is_documented_with_its_unit_and_statistic() -> None:
    rows = documented_rows()
    for entry in (*catalog.standard_metrics(), *catalog.self_metrics()):
        assert entry.name in rows, f"{entry.name} missing from METRICS_REFERENCE.md"
        cells = rows[entry.name]
        assert cells[1].startswith(entry.unit), (entry.name, cells[1], entry.unit)
        if entry.emitter == "cost_tracker" or entry in catalog.standard_metrics():
            assert entry.statistic in cells, (entry.name, cells)


def test_no_documented_metric_is_missing_from_the_catalog() -> None:
    known = {e.name for e in (*catalog.standard_metrics(), *catalog.self_metrics())}
    assert set(documented_rows()) - known == set()


def test_cost_per_million_is_described_with_the_cost_the_tracker_divides() -> None:
    """The catalog once said "actual cost when known, else estimated"; the tracker (see
    cost_tracker.handler.cost_basis) divides the estimate while the job is current, even when
    Cost Explorer has a (lagging) actual cost, and the actual once the job is settling."""
    from cost_tracker.handler import cost_basis

    assert cost_basis(estimate=2.0, actual=0.5, settling=False) == 2.0
    assert cost_basis(estimate=2.0, actual=2.4, settling=True) == 2.4
    description = catalog.entry(catalog.COST_PER_MILLION_RECORDS).description
    assert "estimated cost while the job is current" in description
    assert "actual cost from Cost Explorer once it is settling" in description
    assert "when known" not in description
    row = documented_rows()[catalog.COST_PER_MILLION_RECORDS]
    assert "the estimate while the job runs or ended less than a day ago" in row[-1]
