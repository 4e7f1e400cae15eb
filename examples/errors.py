"""The one exception the example workers raise for bad input or arguments."""

from __future__ import annotations


class ExampleInputError(ValueError):
    """An argument or input file is outside what an example worker accepts.

    The message says what was given and what is allowed, e.g. ``--shard 3/2: the shard
    index must be in 0..N-1``.
    """
