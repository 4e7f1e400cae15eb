"""The ``metricskit`` command: small operational helpers around the library.

metricskit catalog                     # the metric catalog as a table (or --json)
metricskit count-lines URI [--table T] # lines of a local file or s3:// object, cached
metricskit count-csv-records URI       # CSV records (a quoted field may span lines), cached
metricskit jobs [--table T]            # the job registry: progress, status, stale jobs
metricskit version

Exit status: 0 on success, 1 when the work itself failed (a file that cannot be read, an AWS
error), 2 for a usage or configuration error (a bad argument, no job table, no AWS region).
An error prints one line on stderr, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Final

from metricskit import catalog, config
from metricskit._version import __version__
from metricskit.errors import MetricsKitError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
"""The command ran and failed: an unreadable file, an AWS or network error."""
EXIT_USAGE: Final = 2
"""A usage or configuration error (argparse uses 2 for its own usage errors too)."""


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


def _table(args: argparse.Namespace) -> str | None:
    table: str | None = args.table or config.env_job_table()
    return table


def _cmd_count_lines(args: argparse.Namespace) -> int:
    from metricskit.lines import count_lines

    print(count_lines(args.uri, table=_table(args), use_cache=not args.no_cache))
    return 0


def _cmd_count_csv_records(args: argparse.Namespace) -> int:
    from metricskit.lines import count_csv_records

    records = count_csv_records(
        args.uri, header=not args.no_header, table=_table(args), use_cache=not args.no_cache
    )
    print(records)
    return 0


def shown(text: str) -> str:
    r"""``text`` as it may go to a terminal: unchanged when every character is printable,
    else with backslash escapes (``\x1b``, ``\r``, ``\u202e``, and ``\\`` for a backslash).

    Job ids and stage names come from the job table, which anyone with write access to it
    can fill: an escape sequence there could clear the screen or forge rows.

    >>> print(shown("train-1"), shown("evil\x1b[2J"))
    train-1 evil\x1b[2J
    """
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _cmd_jobs(args: argparse.Namespace) -> int:
    from metricskit.registry import JobRegistry, is_stale

    table = _table(args)
    if table is None:
        print(f"no job table: pass --table or set {config.ENV_JOB_TABLE}", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    records = sorted(JobRegistry(table).jobs(), key=lambda r: r.started_at)
    print(
        f"{'job':30} {'status':12} {'done':>12} {'total':>12} {'%':>6} {'workers':>7} {'active':>6}"
    )
    for record in records:
        total = "" if record.total is None else f"{record.total:,.0f}"
        # Done passes total when a resume re-does rows; the job is then 100 % done, not more.
        percent = "" if not record.total else f"{min(100.0, 100 * record.done / record.total):.1f}"
        status = record.status + (" (stale)" if is_stale(record, now, args.stale_after) else "")
        print(
            f"{shown(record.job_id):30} {status:12} {record.done:12,.0f} {total:>12} {percent:>6} "
            f"{record.workers:>7} {record.active_workers:>6}"
        )
        for stage, done in sorted(record.stages_done.items()):
            print(f"  stage {shown(stage):22} {'':12} {done:12,.0f}")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(__version__)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    description, _, epilog = __doc__.partition("\n\n")
    description = description.replace("``", "")  # reST literals, for the terminal
    parser = argparse.ArgumentParser(
        prog="metricskit",
        description=description,
        epilog=epilog.strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("catalog", help="print the metric catalog")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(func=_cmd_catalog)
    lines = commands.add_parser("count-lines", help="count the lines of a file or S3 object")
    lines.add_argument("uri", help="a local path or s3://bucket/key (gzip/bz2/xz included)")
    lines.add_argument("--table", help=f"job table for the cache (default ${config.ENV_JOB_TABLE})")
    lines.add_argument("--no-cache", action="store_true", help="count again, ignoring the cache")
    lines.set_defaults(func=_cmd_count_lines)
    records = commands.add_parser(
        "count-csv-records",
        help="count the CSV records of a file or S3 object (quoted fields may span lines)",
    )
    records.add_argument("uri", help="a local path or s3://bucket/key (gzip/bz2/xz included)")
    records.add_argument("--no-header", action="store_true", help="the first record is data too")
    records.add_argument(
        "--table", help=f"job table for the cache (default ${config.ENV_JOB_TABLE})"
    )
    records.add_argument("--no-cache", action="store_true", help="count again, ignoring the cache")
    records.set_defaults(func=_cmd_count_csv_records)
    jobs = commands.add_parser("jobs", help="list the jobs of the job registry")
    jobs.add_argument("--table", help=f"job table (default ${config.ENV_JOB_TABLE})")
    jobs.add_argument(
        "--stale-after",
        type=_positive_seconds,
        default=600.0,
        help="seconds without a heartbeat before a running job is marked stale (600)",
    )
    jobs.set_defaults(func=_cmd_jobs)
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw!r}")
    return value


def _aws_errors() -> tuple[type[Exception], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return ()
    return (BotoCoreError, ClientError)


def _fail(exc: BaseException, code: int) -> int:
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"metricskit: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metricskit`` console script; returns the exit status.

    >>> main(["version"])                    # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)  # a usage error exits 2 here, with argparse's usage
    failures: tuple[type[Exception], ...] = (OSError, *_aws_errors())
    try:
        code: int = args.func(args)
    except failures as exc:  # first: an UnreadableInputError is a MetricsKitError too
        return _fail(exc, EXIT_FAILED)
    except MetricsKitError as exc:
        return _fail(exc, EXIT_USAGE)
    return code


if __name__ == "__main__":
    sys.exit(main())
