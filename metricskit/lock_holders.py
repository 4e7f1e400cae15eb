"""Functions that hold a lock the final flush needs, marked so a SIGTERM can wait them out.

Python runs a signal handler in the main thread between two bytecodes of whatever that
thread was doing. If it was inside one of these functions, it holds a lock that closing the
job also takes, and it cannot release it until the handler returns: closing right away would
wait on the lock until the shutdown timeout. The SIGTERM handler (``process_hooks``) looks
for these functions among the interrupted frames and, if it finds one, handles the signal
once that call has returned. Marking costs nothing at call time: the set holds code objects.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, Final, TypeVar

LOCK_HOLDING_CODE: Final[set[CodeType]] = set()
MAX_FRAMES_INSPECTED: Final = 64

F = TypeVar("F", bound=Callable[..., Any])


def holds_lock(function: F) -> F:
    """Mark ``function`` as holding, for a moment, a lock that the final flush takes."""
    LOCK_HOLDING_CODE.add(function.__code__)
    return function


def outermost_lock_holder(frame: FrameType | None) -> FrameType | None:
    """The outermost marked function among ``frame`` and its callers, if any."""
    found = None
    for _ in range(MAX_FRAMES_INSPECTED):
        if frame is None:
            break
        if frame.f_code in LOCK_HOLDING_CODE:
            found = frame
        frame = frame.f_back
    return found
