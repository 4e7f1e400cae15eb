"""Row-modulo sharding: row ``r`` (0-based, header excluded) belongs to shard ``r % N``.

Why modulo rather than byte ranges: every shard reads the same stream, so a row's owner
depends only on its index, never on where a byte range happens to split a quoted field.
N shards together therefore cover every row exactly once, and a checkpoint (the index of
the last row a shard committed) means the same thing however the file is laid out. The
price is that each shard reads (but does not parse into messages) the other shards' rows;
reading is cheap next to producing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from examples.errors import ExampleInputError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``0/1`` is the whole file).

    >>> Shard.parse("1/2").owns(3)
    True
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``i/N`` (0 <= i < N)."""
        match = _SHARD.match(text)
        if match is None:
            raise ExampleInputError(f"--shard {text!r}: expected i/N, e.g. 0/2 (i from 0 to N-1)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 0 <= index < count:
            raise ExampleInputError(
                f"--shard {text!r}: N must be >= 1 and the shard index must be in 0..N-1"
            )
        return cls(index, count)

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, row: int) -> bool:
        return row % self.count == self.index

    def rows_below(self, end: int) -> int:
        """How many of the rows 0..end-1 this shard owns.

        >>> Shard(1, 3).rows_below(7)   # rows 1 and 4
        2
        """
        if end <= self.index:
            return 0
        return (end - self.index + self.count - 1) // self.count
