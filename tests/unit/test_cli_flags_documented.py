"""Every command-line option a user can give is in the guide that documents its program."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from examples.codec_training.cli import parser as codec_parser
from examples.csv_to_kafka.cli import parser as csv_parser
from metricskit.cli import build_parser as metricskit_parser

ROOT = Path(__file__).resolve().parents[2]


def options(parser: argparse.ArgumentParser) -> set[str]:
    """The long options of ``parser`` and of its subcommands (``-h/--help`` aside)."""
    found: set[str] = set()
    for action in parser._actions:  # argparse keeps no public list of its options
        found.update(s for s in action.option_strings if s.startswith("--") and s != "--help")
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= options(sub)
    return found


@pytest.mark.parametrize(
    ("make_parser", "guide"),
    [
        (csv_parser, "examples/README.md"),
        (codec_parser, "examples/README.md"),
        (metricskit_parser, "README.md"),
    ],
    ids=["csv_to_kafka", "codec_training", "metricskit"],
)
def test_every_long_option_is_documented(
    make_parser: Callable[[], argparse.ArgumentParser], guide: str
) -> None:
    text = (ROOT / guide).read_text()
    missing = sorted(
        o for o in options(make_parser()) if not re.search(rf"(?<![\w-]){o}(?![\w-])", text)
    )
    assert not missing, f"{guide} does not mention {missing}"
