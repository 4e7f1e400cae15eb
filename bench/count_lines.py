"""metricskit.count_lines and count_csv_records vs ``wc -l`` on generated local CSVs.

Two files of the same size (default 1 GiB each): a plain one (no quotes: count_csv_records
takes its quote-free fast path) and a quoted one (every record has quoted fields with commas
and escaped quotes, every tenth a field spanning two lines). Each is written to a temporary
directory, read once to warm the page cache (every tool then reads from memory, which is
what a second pass would do), timed best-of-N per tool, and deleted afterwards. On the quoted
file ``wc -l`` counts lines, not records: it is the time to read and scan the same bytes.
Target: count_lines at most 1.5x the time of ``wc -l`` with numpy; the count_csv_records
ratios are reported without a target. ``--no-numpy`` times the fallbacks without numpy.

    python bench/count_lines.py [--size-mb 1024] [--repeat 5] [--no-numpy]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from metricskit import count_csv_records, count_lines
from metricskit.lines import count_newlines_in


def plain_records() -> list[bytes]:
    return [
        b"%d,2026-11-23T19:%02d:%02d,sensor-%d,%s\n"
        % (i, i % 60, i * 7 % 60, i % 97, b"x" * (i % 90))
        for i in range(100_000)
    ]


def quoted_records() -> list[bytes]:
    return [
        b'%d,"2026-11-23T19:%02d:%02d","sensor, %d","says ""%s""%s"\n'
        % (i, i % 60, i * 7 % 60, i % 97, b"x" * (i % 90), b"\nsecond line" * (i % 10 == 0))
        for i in range(100_000)
    ]


def write_records(path: str, records: list[bytes], size_bytes: int) -> int:
    """Whole records (never a cut inside a quoted field) up to ``size_bytes``; how many."""
    block = b"".join(records)
    written = count = 0
    with open(path, "wb") as out:
        while written + len(block) <= size_bytes:
            out.write(block)
            written += len(block)
            count += len(records)
        for record in records:
            if written + len(record) > size_bytes:
                break
            out.write(record)
            written += len(record)
            count += 1
    return count


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    best, result = float("inf"), -1
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each file in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool (best is kept)")
    parser.add_argument(
        "--no-numpy", action="store_true", help="hide numpy: time the pure-Python fallback"
    )
    args = parser.parse_args(argv)
    if args.no_numpy:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # import numpy now fails
    wc = shutil.which("wc")
    if wc is None:
        print("wc not found", file=sys.stderr)
        return 2

    def run_wc(path: str) -> Callable[[], int]:
        def run() -> int:
            out = subprocess.run([wc, "-l", path], check=True, capture_output=True, text=True)
            return int(out.stdout.split()[0])

        return run

    workdir = tempfile.mkdtemp(prefix="metricskit-bench-")
    plain = os.path.join(workdir, "plain.csv")
    quoted = os.path.join(workdir, "quoted.csv")
    size = args.size_mb * 1024 * 1024
    try:
        timings: list[tuple[str, str, int, float]] = []
        expected = {}
        for path, records in ((plain, plain_records()), (quoted, quoted_records())):
            expected[path] = write_records(path, records, size)
            with open(path, "rb") as warm:
                count_newlines_in(warm)
        for label, path, run in (
            ("wc -l", plain, run_wc(plain)),
            ("count_lines", plain, lambda: count_lines(plain, use_cache=False)),
            (
                "count_csv_records",
                plain,
                lambda: count_csv_records(plain, header=False, use_cache=False),
            ),
            ("wc -l", quoted, run_wc(quoted)),
            (
                "count_csv_records",
                quoted,
                lambda: count_csv_records(quoted, header=False, use_cache=False),
            ),
        ):
            seconds, counted = best_of(args.repeat, run)
            timings.append((label, os.path.basename(path), counted, seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    mib = args.size_mb
    print(f"numpy: {'hidden' if args.no_numpy else 'used if installed'}")
    print(f"{'tool':<18} {'file':<11} {'count':>12} {'seconds':>9} {'MiB/s':>9}")
    for label, name, counted, seconds in timings:
        print(f"{label:<18} {name:<11} {counted:>12} {seconds:>9.3f} {mib / seconds:>9.0f}")
    (_, _, wc_plain, wc_plain_s), (_, _, lines, lines_s), (_, _, plain_csv, plain_csv_s) = timings[
        :3
    ]
    (_, _, _, wc_quoted_s), (_, _, quoted_csv, quoted_csv_s) = timings[3:]
    ratio = lines_s / wc_plain_s
    print(f"RATIO count_lines_vs_wc = {ratio:.2f}  (target <= 1.5 with numpy)")
    print(f"RATIO count_csv_records_vs_wc = {plain_csv_s / wc_plain_s:.2f}  (plain file)")
    print(f"RATIO count_csv_records_quoted_vs_wc = {quoted_csv_s / wc_quoted_s:.2f}  (quoted file)")
    mismatches = [
        what
        for what, got, want in (
            ("count_lines (plain) vs wc -l", lines, wc_plain),
            ("count_csv_records (plain) vs records written", plain_csv, expected[plain]),
            ("count_csv_records (quoted) vs records written", quoted_csv, expected[quoted]),
        )
        if got != want
    ]
    for what in mismatches:
        print(f"MISMATCH: {what}", file=sys.stderr)
    return 1 if mismatches or (ratio > 1.5 and not args.no_numpy) else 0


if __name__ == "__main__":
    sys.exit(main())
