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
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from metricskit.handoff import Handoff
from metricskit.lock_holders import outermost_lock_holder

logger = logging.getLogger("metricskit")


class ManagedJob(Protocol):
    shutdown_timeout: float

    def _close_at_exit(self) -> None: ...

    def _close_interrupted(self) -> None: ...

    def _flush_for_stop(self) -> None: ...

    def _after_fork_in_child(self) -> None: ...

    def _run_soon(self, task: Callable[[], None]) -> bool: ...


_live: dict[int, weakref.ref[ManagedJob]] = {}
"""The jobs to look after, by id, held weakly. These hooks keep no job alive: an open job
with a flusher is kept by its flusher thread until it closes (so a job the program dropped
still delivers at exit), and one with nothing to deliver (sink "off", no job table) is
collected as usual.

Not a WeakSet: its iterator is a Python generator, so a job created or closed on another
thread meanwhile can raise "Set changed size during iteration", in the SIGTERM handler too.
Copying a dict's values is one C-level step, and needs no lock the interrupted main thread
might hold.
"""
_install_lock = threading.Lock()
_installed = False
_sigterm_installed = False
_previous_sigterm: Any = None


def track(job: ManagedJob) -> None:
    """Remember ``job`` so process exit and fork can look after it."""
    _install_once()
    key = id(job)
    _live[key] = weakref.ref(job, lambda ref: _forget(key, ref))


def _forget(key: int, ref: weakref.ref[ManagedJob]) -> None:
    if _live.get(key) is ref:  # not a later job that reuses the id
        _live.pop(key, None)


def untrack(job: ManagedJob) -> None:
    ref = _live.get(id(job))
    if ref is not None and ref() is job:
        _live.pop(id(job), None)


def live_jobs() -> list[ManagedJob]:
    return [job for ref in list(_live.values()) if (job := ref()) is not None]


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
    _in_parallel("exit", live_jobs(), lambda job: job._close_at_exit())


def _in_parallel(
    occasion: str, jobs: list[ManagedJob], action: Callable[[ManagedJob], None]
) -> None:
    """Run ``action`` on each job, each on its own thread, and wait for all of them at most
    the longest shutdown timeout (+1 s), so stopping N jobs takes one timeout, not N.

    Plain daemon threads rather than an executor: at interpreter exit (atexit) an executor
    refuses new work, and a thread stuck on a hung endpoint must not hold the exit up. Where
    Python starts no new thread (3.12.0 to 3.12.2 inside exit handlers), each job's action
    runs on that job's own flusher thread, which is still running (see
    :mod:`metricskit.handoff`): the wait stays bounded and the jobs still close in parallel.
    """
    if not jobs:
        return
    deadline = time.monotonic() + max(job.shutdown_timeout for job in jobs) + 1.0
    runs = [
        Handoff.start(_logged(action, job), name=f"metricskit-{occasion}", fallback=job._run_soon)
        for job in jobs
    ]
    for run in runs:
        run.wait(deadline - time.monotonic())
    pending = sum(not run.finished for run in runs)
    if pending:
        logger.warning("metricskit: %d job(s) still flushing at the %s deadline", pending, occasion)


def _logged(action: Callable[[ManagedJob], None], job: ManagedJob) -> Callable[[], None]:
    def run() -> None:
        try:
            action(job)
        except Exception:  # a job's close never raises; this is a last resort
            logger.exception("metricskit: closing a job failed")

    return run


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

    def stop(job: ManagedJob) -> None:
        if process_goes_on:
            job._flush_for_stop()
        else:
            job._close_interrupted()

    _in_parallel("SIGTERM", live_jobs(), stop)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler not installed from Python
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    global _install_lock  # noqa: PLW0603 - the parent may have held it at fork time
    _install_lock = threading.Lock()
    for job in live_jobs():
        # One job's failure (its injected clock raising, say) must not leave the jobs after it
        # holding the parent's unflushed counts, which the child would then publish again.
        try:
            job._after_fork_in_child()
        except Exception:
            logger.exception("metricskit: a job could not be reset after fork")


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
