"""`metricskit --help` is plain text: the module docstring's reST markup is not shown."""

from __future__ import annotations

from metricskit.cli import build_parser


def test_help_shows_no_rest_markup() -> None:
    text = build_parser().format_help()
    assert "``" not in text
    assert "The metricskit command: small operational helpers" in text


def test_version_flag_and_module_entry_point_print_the_version() -> None:
    """`metricskit --version` (what users type first) and `python -m metricskit` both work."""
    import subprocess
    import sys

    from metricskit import __version__

    for argv in (["--version"], ["version"]):
        found = subprocess.run(
            [sys.executable, "-m", "metricskit", *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (found.returncode, found.stdout.strip()) == (0, __version__), found.stderr
