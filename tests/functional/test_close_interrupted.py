"""close() and flush() when a signal handler interrupts them (docs/OPERATIONS.md, "Signals
while closing"): Ctrl-C during close(), an application handler that closes the job while the
main thread is closing it, and an interrupt between starting a flush and launching it.

The workers run in a subprocess so real signals reach a real main thread. Their sinks wait
on events, not on sleeps, so the order of events is fixed however loaded the machine is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metricskit
from metricskit.handoff import Handoff
from metricskit.sinks.memory import MemorySink

REPO = Path(__file__).resolve().parents[2]

GATED_SINK = """
import os, signal, sys, threading, time
import metricskit
from metricskit.sinks.base import BaseSink, ExportResult

exporting, release = threading.Event(), threading.Event()

class GatedSink(BaseSink):
    # Blocks the final delivery until the test's script lets it go.
    def export(self, batch):
        exporting.set()
        release.wait(60)
        time.sleep(0.2)  # still delivering when the script carries on
        done = sum(m.value or 0 for m in batch.metrics if m.key.name == "RecordsProcessed")
        print("exported", int(done), flush=True)
        return ExportResult.ok()

    def shutdown(self):
        print("sink shut down", flush=True)

def signal_when_exporting(signum):
    main = threading.main_thread().ident
    def send():
        exporting.wait(60)
        # Once main waits in close(): a signal that lands just before the wait blocks in C
        # is handled only when the wait ends (a CPython race a second Ctrl-C would cover).
        while sys._current_frames()[main].f_code.co_name != "wait":
            time.sleep(0.01)
        time.sleep(0.1)
        # To the main thread itself, as a terminal's Ctrl-C is: a process-directed signal
        # taken by another thread would only be handled once main's wait ended.
        signal.pthread_kill(main, signum)
    threading.Thread(target=send, daemon=True).start()
"""

CTRL_C_DURING_CLOSE = GATED_SINK + textwrap.dedent(
    """
    job = metricskit.Job("ki", sink=GatedSink(), handle_sigterm=False, shutdown_timeout=30)
    job.processed(42)
    signal_when_exporting(signal.SIGINT)
    try:
        job.close()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    release.set()
    if sys.argv[1] == "close-again":
        print("second close", job.close(), flush=True)
    print("exiting", flush=True)  # "exit": atexit's close finishes the interrupted one
    """
)


def run_worker(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "worker.py"
    script.write_text(source)
    return subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("how", ["close-again", "exit"])
def test_ctrl_c_during_close_still_delivers_and_shuts_the_sink_down(
    tmp_path: Path, how: str
) -> None:
    proc = run_worker(tmp_path, CTRL_C_DURING_CLOSE, how)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert "interrupted" in lines  # the caller still gets its KeyboardInterrupt
    assert "exported 42" in lines, proc.stdout + proc.stderr
    assert "sink shut down" in lines, proc.stdout + proc.stderr
    if how == "close-again":
        # The second close() waited for the interrupted one's delivery, then reported it.
        assert lines.index("exported 42") < lines.index("second close True")


APP_HANDLER_CLOSES_DURING_CLOSE = GATED_SINK + textwrap.dedent(
    """
    job = metricskit.Job("sig", sink=GatedSink(), handle_sigterm=False, shutdown_timeout=5)
    job.processed(7)

    def handler(signum, frame):
        print("handler close", job.close("interrupted"), flush=True)
        release.set()

    signal.signal(signal.SIGUSR1, handler)
    signal_when_exporting(signal.SIGUSR1)
    print("main close", job.close(), flush=True)
    """
)


def test_a_handler_closing_the_job_while_main_closes_it_returns_at_once(
    tmp_path: Path,
) -> None:
    proc = run_worker(tmp_path, APP_HANDLER_CLOSES_DURING_CLOSE)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    # The handler runs on the closing thread: it cannot wait for that close (it would wait
    # for itself until the timeout), so it answers "not finished" at once and the close
    # under way goes on and succeeds, without a false "did not finish" warning.
    assert "handler close False" in lines, proc.stdout + proc.stderr
    assert lines.index("handler close False") < lines.index("exported 7")
    assert "main close True" in lines, proc.stdout + proc.stderr
    assert "did not finish" not in proc.stderr


def test_an_interrupt_before_a_flush_launched_does_not_wedge_later_flushes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySink()
    job = metricskit.Job("wedge", sink=sink, handle_sigterm=False, shutdown_timeout=5)
    job.processed(5)
    launch = Handoff.launch

    def interrupted(self: Handoff, *args: object) -> None:
        raise KeyboardInterrupt  # as a signal handler raising before the thread started

    monkeypatch.setattr(Handoff, "launch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        job.flush(timeout=5)
    monkeypatch.setattr(Handoff, "launch", launch)
    job.processed(1)
    assert job.flush(timeout=5) is True
    assert sink.sum("RecordsProcessed", JobId="wedge") == 6
    assert job.close() is True
    assert "did not finish" not in caplog.text
