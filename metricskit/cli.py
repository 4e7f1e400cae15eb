"""The ``metricskit`` command: small operational helpers around the library.

metricskit catalog            # the metric catalog as a table (or --json)
metricskit version
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from metricskit import catalog
from metricskit._version import __version__


def _cmd_catalog(args: argparse.Namespace) -> int:
    entries = [*catalog.standard_metrics(), *catalog.self_metrics()]
    if args.json:
        rows = [
            {
                "name": e.name,
                "unit": e.unit,
                "kind": e.kind.value,
                "statistic": e.statistic,
                "emitter": e.emitter,
                "dimensions": list(e.dimensions),
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(e.name) for e in entries)
    print(f"{'metric':{width}}  {'unit':13} {'statistic':9} {'emitter':12} dimensions")
    for e in entries:
        dims = ",".join(e.dimensions)
        print(f"{e.name:{width}}  {e.unit:13} {e.statistic:9} {e.emitter:12} {dims}")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metricskit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("catalog", help="print the metric catalog")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=_cmd_catalog)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metricskit`` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
