"""Process-wide hooks installed once, at the first Job (never at import).

* ``atexit``: close jobs the program never closed, so their last counts are delivered.
* ``SIGTERM`` (ECS stop, Spot interruption, Batch termination), installed only from the main
  thread and only when the job asks for it. With no handler of the application's (the
  default action), every live job is closed as ``interrupted`` within the shutdown timeout
  and the process then ends as SIGTERM would (a process that ignores SIGTERM gets the same
  close and goes on). When the application had a handler, the process goes on after the
  signal, typically to finish its batch and commit: every live job delivers what is pending
  now, within the shutdown timeout, stays open so what the application records while it
  stops is not lost, and closes as ``interrupted`` when the application leaves its ``with``
  block (whatever it raises) or exits; then the application's handler runs.
* ``os.register_at_fork``: in a forked child, every live job drops the parent's unflushed
  state (the parent reports it), gets fresh locks (one may have been held at fork time) and a
  fresh flusher thread (threads do not survive fork). In ``multiprocessing`` children, which
  leave through ``os._exit`` and skip ``atexit``, a ``multiprocessing.util.Finalize`` closes
  them instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from types import FrameType
from typing import Any, Protocol

from metricskit.lock_holders import outermost_lock_holder

logger = logging.getLogger("metricskit")


class ManagedJob(Protocol):
    shutdown_timeout: float

    def _close_at_exit(self) -> None: ...

    def _close_interrupted(self) -> None: ...

    def _flush_for_stop(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[ManagedJob] = weakref.WeakSet()
_install_lock = threading.Lock()
_installed = False
_sigterm_installed = False
_previous_sigterm: Any = None


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
        _install_multiprocessing_exit_hook()
        _installed = True


def _close_all() -> None:
    for job in live_jobs():
        job._close_at_exit()


def install_sigterm_handler() -> bool:
    """Chain a SIGTERM handler in front of the application's; True when it is in place."""
    global _sigterm_installed, _previous_sigterm  # noqa: PLW0603 - one process-wide handler
    if threading.current_thread() is not threading.main_thread():
        return False  # signal.signal only works from the main thread
    with _install_lock:
        if _sigterm_installed:
            return True
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True
        return True


_holder_returned = False
_waiting_for: FrameType | None = None
"""The lock-holding frame a put-off SIGTERM waits for, while it waits."""


def _defer_sigterm(signum: int, frame: FrameType | None) -> bool:
    """Put SIGTERM off while the main thread holds a metricskit lock; True when put off.

    Python runs signal handlers in the main thread between bytecodes, so the handler can
    find that thread in the middle of, say, folding a distribution under its lock
    (:mod:`metricskit.lock_holders`). Closing then would wait on that lock until the
    shutdown timeout and lose the last period. Instead a trace function is set on the
    outermost such frame (those functions take microseconds): when it returns, the lock is
    free and the signal is sent again, to be handled at the main thread's next check.
    Tracing costs a little only until then; the previous trace function is put back.
    """
    global _holder_returned, _waiting_for  # noqa: PLW0603 - one SIGTERM at a time, main thread
    if _holder_returned:
        # Sent again by on_return below and handled inside it: the holder has left its
        # with-block (the lock is free) and is returning, so close now.
        _holder_returned = False
        return False
    holder = outermost_lock_holder(frame)
    if holder is None:
        return False
    if holder is _waiting_for:
        return True  # a second SIGTERM while the first waits for the same call
    previous = sys.gettrace()

    def on_return(traced: FrameType, event: str, arg: object) -> Any:
        global _holder_returned, _waiting_for  # noqa: PLW0603
        if event == "return" and traced is holder:
            sys.settrace(previous)
            _waiting_for = None
            _holder_returned = True
            os.kill(os.getpid(), signum)  # handled right here, before the holder returns
            return None
        return on_return

    def no_tracing_elsewhere(traced: FrameType, event: str, arg: object) -> Any:
        return None  # frames the worker enters meanwhile stay untraced

    _waiting_for = holder
    holder.f_trace = on_return
    holder.f_trace_lines = False
    sys.settrace(no_tracing_elsewhere)
    return True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _defer_sigterm(signum, frame):
        return
    previous = _previous_sigterm
    # The application's own handler means it stops in its own way (finishes its batch,
    # commits): closing the jobs now would lose what it records meanwhile. A process that
    # ignores SIGTERM is SIGKILLed at the stop timeout instead, which runs no exit hook, so
    # its jobs close (as interrupted) now, while they still can.
    process_goes_on = callable(previous)
    jobs = live_jobs()
    if jobs:
        # Jobs deliver in parallel so the whole stop takes one shutdown timeout, not one per job.
        budget = max(job.shutdown_timeout for job in jobs) + 1.0
        pool = ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="metricskit-sigterm")
        futures = [
            pool.submit(job._flush_for_stop if process_goes_on else job._close_interrupted)
            for job in jobs
        ]
        _, pending = wait(futures, timeout=budget)
        pool.shutdown(wait=False)
        if pending:
            logger.warning("metricskit: %d job(s) still flushing at SIGTERM deadline", len(pending))
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not installed from Python
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    global _install_lock  # noqa: PLW0603 - the parent may have held it at fork time
    _install_lock = threading.Lock()
    for job in live_jobs():
        job._after_fork_in_child()


class _Anchor:
    """Keeps the multiprocessing after-fork registration alive (it is held weakly)."""


_ANCHOR = _Anchor()


def _install_multiprocessing_exit_hook() -> None:
    """Close jobs when a multiprocessing child exits: it leaves through ``os._exit``.

    A child clears the finalizer registry while it bootstraps, *after* os.register_at_fork
    hooks ran, so the finalizer is registered from multiprocessing's own after-fork hook,
    which runs later in the bootstrap. A process that is itself a multiprocessing child
    (spawn, forkserver) registers it at once.
    """
    import multiprocessing
    import multiprocessing.util

    multiprocessing.util.register_after_fork(_ANCHOR, _register_finalizer)
    if multiprocessing.parent_process() is not None:
        _register_finalizer(_ANCHOR)


def _register_finalizer(_: object) -> None:
    import multiprocessing.util

    # Runs from multiprocessing's _exit_function in pool workers and Process children.
    multiprocessing.util.Finalize(None, _close_all, exitpriority=100)
