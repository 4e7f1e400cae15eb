"""How many open jobs use each sink object, so a shared sink is shut down by the last one.

One sink object may serve several jobs (``sink=shared`` twice, or
:func:`metricskit.testing.capture`). ``Job`` calls :func:`acquire` once it is built and
:func:`release` when it closes; only the release that drops the count to zero shuts the
sink down, so a job still running never loses its sink to another job's close.

>>> sink = MemorySink()                       # doctest: +SKIP
>>> acquire(sink); acquire(sink)              # doctest: +SKIP
>>> release(sink), release(sink)              # doctest: +SKIP
(False, True)

The counts are per process: a forked child starts with its parent's counts for the copies
of the jobs and sinks it inherits, and its own closes shut down only its own copies.
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger("metricskit")

# id(sink) -> (sink, open jobs). The sink is held so its id cannot be reused while counted;
# an entry goes when its count reaches zero, so nothing outlives the jobs that use it.
_users: dict[int, tuple[object, int]] = {}
_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    # A thread of the parent may have held the lock at fork; it does not exist in the child.
    global _lock  # noqa: PLW0603 - the lock itself must be replaced, not its holders
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


def acquire(sink: object) -> None:
    """Count one more open job using ``sink``."""
    with _lock:
        _, count = _users.get(id(sink), (sink, 0))
        _users[id(sink)] = (sink, count + 1)


def release(sink: object) -> bool:
    """Count one job using ``sink`` closed; True when it was the last (shut the sink down)."""
    with _lock:
        entry = _users.get(id(sink))
        if entry is None:  # never counted: no other job can be using it
            return True
        left = entry[1] - 1
        if left > 0:
            _users[id(sink)] = (sink, left)
            return False
        del _users[id(sink)]
        return True


def users(sink: object) -> int:
    """How many open jobs use ``sink`` in this process."""
    with _lock:
        entry = _users.get(id(sink))
        return 0 if entry is None else entry[1]


def shutdown_if_unused(sink: object) -> None:
    """Release one use of ``sink`` and call its ``shutdown()`` (if it has one) after the last.

    Never raises: a failing shutdown is logged.
    """
    if not release(sink):
        return
    shutdown = getattr(sink, "shutdown", None)
    if not callable(shutdown):  # shutdown() is optional for a sink object
        return
    try:
        shutdown()
    except Exception:
        logger.exception("metricskit: sink shutdown failed")
