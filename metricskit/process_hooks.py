"""Process-wide hooks installed once, at the first Job (never at import).

* ``atexit``: close jobs the program never closed, so their last counts are delivered.
* ``os.register_at_fork``: in a forked child, every live job drops the parent's unflushed
  state (the parent reports it), gets fresh locks (one may have been held at fork time) and a
  fresh flusher thread (threads do not survive fork). In ``multiprocessing`` children, which
  leave through ``os._exit`` and skip ``atexit``, a ``multiprocessing.util.Finalize`` closes
  them instead.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Protocol


class ManagedJob(Protocol):
    def _close_at_exit(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[ManagedJob] = weakref.WeakSet()
_install_lock = threading.Lock()
_installed = False


def track(job: ManagedJob) -> None:
    """Remember ``job`` so process exit and fork can look after it."""
    _install_once()
    _live.add(job)


def untrack(job: ManagedJob) -> None:
    _live.discard(job)


def live_jobs() -> list[ManagedJob]:
    return list(_live)


def _install_once() -> None:
    global _installed  # noqa: PLW0603 - one process-wide installation flag
    with _install_lock:
        if _installed:
            return
        atexit.register(_close_all)
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _installed = True


def _close_all() -> None:
    for job in live_jobs():
        job._close_at_exit()


def _after_fork_in_child() -> None:
    global _install_lock  # noqa: PLW0603 - the parent may have held it at fork time
    _install_lock = threading.Lock()
    jobs = live_jobs()
    for job in jobs:
        job._after_fork_in_child()
    if jobs:
        _finalize_in_multiprocessing_child()


def _finalize_in_multiprocessing_child() -> None:
    import multiprocessing.util

    # Runs from multiprocessing's _exit_function in pool workers and Process children.
    multiprocessing.util.Finalize(None, _close_all, exitpriority=100)
