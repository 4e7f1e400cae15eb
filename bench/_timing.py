"""Shared timing helpers for the benchmarks (not a test: prints, never asserts)."""

from __future__ import annotations

import timeit
from collections.abc import Callable


def ns_per_call(func: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` nanoseconds per call of ``func`` over ``number`` calls."""
    timer = timeit.Timer(func)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def print_table(title: str, rows: list[tuple[str, float]], unit: str = "ns/call") -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print(f"  {'':{width}}  {unit:>10}")
    for name, value in rows:
        print(f"  {name:{width}}  {value:10.1f}")
