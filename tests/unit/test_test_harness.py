"""The shared fixtures themselves: every test starts from a clean process-wide state."""

from __future__ import annotations

import signal

import pytest

import metricskit
from metricskit import process_hooks


@pytest.mark.parametrize("turn", ["first", "second"])
def test_every_test_gets_metricskit_sigterm_hook_from_its_first_job(turn: str) -> None:
    """conftest puts SIGTERM back to what it was after each test; metricskit's "installed"
    flag must go back with it, or every test after the first runs without the hook."""
    assert signal.getsignal(signal.SIGTERM) is not process_hooks._on_sigterm
    job = metricskit.Job(f"harness-{turn}", sink="memory", flush_interval=3600)
    try:
        assert signal.getsignal(signal.SIGTERM) is process_hooks._on_sigterm
    finally:
        job.close()
