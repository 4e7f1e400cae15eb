"""Shared fixtures: a moto server on loopback, selected only through AWS_ENDPOINT_URL."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from examples.local_aws import FAKE_CREDENTIALS
from metricskit import process_hooks

UNREACHABLE_ENDPOINT = "http://127.0.0.1:9"
"""Nothing listens on the discard port: every AWS call fails to connect."""


def use_fake_aws(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Fake credentials and a region for boto3, and ``endpoint`` for every service."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


@pytest.fixture(autouse=True)
def _clean_metricskit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees METRICSKIT_*, AWS endpoint or retry settings from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(
            ("METRICSKIT_", "AWS_ENDPOINT_URL", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS")
        ):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """The example CLIs' main() installs SIGTERM/SIGINT handlers for its own process; called
    in-process here it must not leave them to later tests, or to children forked later (a
    child ignoring SIGTERM would hang Pool.terminate()).

    metricskit's own SIGTERM hook is put back with them: its "installed" flag and the handler
    it chains to go back to what they were, so the next test's first Job installs the hook
    again rather than finding the flag set and the handler gone (every test after the first
    would then run without it)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    hook = (process_hooks._sigterm_installed, process_hooks._previous_sigterm)
    yield
    for sig, handler in saved.items():
        if handler is not None:  # None: installed outside Python, nothing to put back
            signal.signal(sig, handler)
    process_hooks._sigterm_installed, process_hooks._previous_sigterm = hook


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 with a free port; yields its endpoint URL.

    Its DynamoDB item writes are atomic, as in DynamoDB (see make_item_writes_atomic).
    """
    from moto.server import ThreadedMotoServer

    from examples.local_aws import make_item_writes_atomic

    make_item_writes_atomic()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the moto server for this test (through boto3's own variables)."""
    use_fake_aws(monkeypatch, moto_server)
    return moto_server


@pytest.fixture
def namespace() -> str:
    """A namespace no other test writes to (moto keeps data for the whole session)."""
    return f"Test/{uuid.uuid4().hex[:12]}"


class FakeClock:
    """A monotonic clock tests move by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
