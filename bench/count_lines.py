"""metricskit.count_lines vs ``wc -l`` on a generated local CSV (default 1 GiB).

The file is written to a temporary directory, read once to warm the page cache (both tools
then read from memory, which is what a second pass would do), timed best-of-N for each, and
deleted afterwards. Target: count_lines at most 1.5x the time of ``wc -l``.

    python bench/count_lines.py [--size-mb 1024] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from metricskit import count_lines
from metricskit.lines import count_newlines_in


def write_csv(path: str, size_bytes: int) -> None:
    block = b"".join(
        b"%d,2026-11-23T19:%02d:%02d,sensor-%d,%s\n"
        % (i, i % 60, i * 7 % 60, i % 97, b"x" * (i % 90))
        for i in range(100_000)
    )
    with open(path, "wb") as out:
        written = 0
        while written < size_bytes:
            piece = block[: size_bytes - written]
            # Whole lines only, so wc -l (which counts newlines) and count_lines agree.
            piece = piece[: piece.rfind(b"\n") + 1] or block[: block.index(b"\n") + 1]
            out.write(piece)
            written += len(piece)


def best_of(repeat: int, run: object) -> tuple[float, int]:
    assert callable(run)
    best, result = float("inf"), -1
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool (best is kept)")
    args = parser.parse_args(argv)
    wc = shutil.which("wc")
    if wc is None:
        print("wc not found", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="metricskit-bench-")
    path = os.path.join(workdir, "rows.csv")
    try:
        write_csv(path, args.size_mb * 1024 * 1024)
        with open(path, "rb") as warm:
            count_newlines_in(warm)

        def run_wc() -> int:
            out = subprocess.run([wc, "-l", path], check=True, capture_output=True, text=True)
            return int(out.stdout.split()[0])

        wc_s, wc_lines = best_of(args.repeat, run_wc)
        ours_s, our_lines = best_of(args.repeat, lambda: count_lines(path, use_cache=False))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mib = args.size_mb
    print(f"{'tool':<22} {'lines':>12} {'seconds':>9} {'MiB/s':>9}")
    print(f"{'wc -l':<22} {wc_lines:>12} {wc_s:>9.3f} {mib / wc_s:>9.0f}")
    print(f"{'metricskit.count_lines':<22} {our_lines:>12} {ours_s:>9.3f} {mib / ours_s:>9.0f}")
    ratio = ours_s / wc_s
    print(f"RATIO count_lines_vs_wc = {ratio:.2f}  (target <= 1.5)")
    if our_lines != wc_lines:
        print("MISMATCH: the line counts differ", file=sys.stderr)
        return 1
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
