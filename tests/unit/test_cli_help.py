"""`metricskit --help` is plain text: the module docstring's reST markup is not shown."""

from __future__ import annotations

from metricskit.cli import build_parser


def test_help_shows_no_rest_markup() -> None:
    text = build_parser().format_help()
    assert "``" not in text
    assert "The metricskit command: small operational helpers" in text
