"""Fault promises: outages, throttling, SIGTERM, fork and memory (docs/OPERATIONS.md)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

import metricskit
from metricskit import catalog, config
from metricskit.batch import MetricBatch
from metricskit.sinks.base import ExportResult
from metricskit.sinks.cloudwatch import CloudWatchSink
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock, use_fake_aws
from tests.helpers import read_statistic, read_sum, wait_until

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_listening(server: Any) -> None:
    """Stop a ThreadedMotoServer and close its socket: stop() alone leaves it accepting
    connections that nobody answers, so every request would wait out its read timeout."""
    server.stop()
    server._server.server_close()


def test_outage_counts_are_delivered_exactly_after_cloudwatch_comes_back(
    monkeypatch: pytest.MonkeyPatch, namespace: str
) -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    use_fake_aws(monkeypatch, f"http://127.0.0.1:{port}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # A read timeout long enough that a slow answer on a loaded machine is not taken for a
    # failure (and re-sent, counting twice); the outage itself refuses connections at once.
    sink = CloudWatchSink(max_attempts=1, connect_timeout=0.5, read_timeout=10)
    monkeypatch.setattr(config, "MIN_FLUSH_INTERVAL", 0.1)  # the testing path below 1 s
    job = metricskit.Job("outage", namespace=namespace, sink=sink, flush_interval=0.1)
    try:
        job.processed(100)
        assert wait_until(lambda: sink.requests_sent >= 1)
        stop_listening(server)  # CloudWatch goes away for several flush intervals
        for _ in range(20):
            job.processed(10)
            job.observe("Latency", 4.0)
            time.sleep(0.05)
        assert wait_until(lambda: job._delivery.failed_exports >= 3)
        assert sink.failed_requests >= 3
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()  # the same port: moto's in-process state survived the restart
        job.processed(5)
        job.close()
        client = boto3.client("cloudwatch")
        assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "outage") == 305
        assert job._delivery.queued == 0
    finally:
        job.close()
        server.stop()


class EmptyBody:
    """The raw body of a synthetic HTTP answer (botocore reads it through ``stream``)."""

    def stream(self, **_: object) -> Any:
        yield b""


def test_5xx_answers_are_retried_with_backoff_and_counts_stay_exact(
    aws: str, namespace: str
) -> None:
    from botocore.config import Config

    # Stated, not inherited from the environment: 4 attempts per call, jittered backoff.
    client = boto3.client(
        "cloudwatch", config=Config(retries={"mode": "standard", "max_attempts": 4})
    )
    answers = {"left": 6}

    def service_unavailable(request: Any, **_: object) -> AWSResponse | None:
        if answers["left"] <= 0:
            return None
        answers["left"] -= 1
        return AWSResponse(request.url, 503, HTTPHeaders(), EmptyBody())

    client.meta.events.register("before-send.cloudwatch.PutMetricData", service_unavailable)
    sink = CloudWatchSink(client=client)
    # Two calls' backoff can sleep ~10 s on their own: leave close() room for them.
    with metricskit.Job("unavailable", namespace=namespace, sink=sink, shutdown_timeout=60) as job:
        job.processed(77)
        job.failed(3)
    assert answers["left"] == 0
    assert sink.retries >= 4  # botocore retried inside calls (with jittered backoff)
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "unavailable") == 77
    assert read_sum(client, namespace, catalog.ERROR_COUNT, "unavailable") == 3


SIGTERM_WORKER = textwrap.dedent(
    """
    import atexit, signal, sys, time
    import metricskit

    def report_status():  # registered before metricskit's exit hook, so it runs after it
        with open(sys.argv[2], "a") as out:
            out.write(f" {job.final_status}")

    def app_handler(signum, frame):  # the application's own handler: must still run
        with open(sys.argv[2], "w") as out:
            out.write(f"{job.status().done:.0f}")
        sys.exit(0)

    atexit.register(report_status)
    signal.signal(signal.SIGTERM, app_handler)
    job = metricskit.Job("sigterm-job", namespace=sys.argv[1], flush_interval=3600)
    # A bounded distribution: moto stores one object per observation, so millions of them
    # make its PutMetricData outlast the sink's read timeout, and botocore's resend doubles
    # the counts. The test is about SIGTERM, not moto's speed.
    for _ in range(1000):
        job.observe("Latency", 2.0)
    print("ready", flush=True)
    while True:
        job.processed()
    """
)


def test_sigterm_flushes_pending_counts_and_chains_the_application_handler(
    aws: str, namespace: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(SIGTERM_WORKER)
    report = tmp_path / "report.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "METRICSKIT_SHUTDOWN_TIMEOUT": "8"}
    proc = subprocess.Popen(
        [sys.executable, str(script), namespace, str(report)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # let it record for a while; no timing is asserted
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    done_text, status = report.read_text().split()
    done = float(done_text)
    assert done > 0
    assert status == "interrupted"
    client = boto3.client("cloudwatch")
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "sigterm-job") == done
    assert read_statistic(client, namespace, "Latency", "sigterm-job", "SampleCount") == 1000


SIGTERM_IN_FOLD_WORKER = textwrap.dedent(
    """
    import atexit, os, signal, sys
    import metricskit
    from metricskit import aggregation

    folds = 0
    original_fold = aggregation._fold_positive_numpy

    def fold_interrupted_by_sigterm(np, values, into):
        # SIGTERM lands while the worker's own thread folds a full buffer, holding the
        # distribution's lock: the final flush must not wait for that lock forever.
        global folds
        folds += 1
        if folds == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_fold(np, values, into)

    aggregation._fold_positive_numpy = fold_interrupted_by_sigterm

    def report_status():  # registered before metricskit's exit hook, so it runs after it
        with open(sys.argv[2], "a") as out:
            out.write(f" {job.final_status}")

    def app_handler(signum, frame):
        with open(sys.argv[2], "w") as out:
            out.write(f"{job.status().done:.0f} {folds}")
        sys.exit(0)

    atexit.register(report_status)
    signal.signal(signal.SIGTERM, app_handler)
    job = metricskit.Job("fold-job", namespace=sys.argv[1], flush_interval=3600)
    while True:
        job.processed()
        job.observe("Latency", 2.0)
    """
)


def test_sigterm_while_the_worker_thread_holds_a_metricskit_lock_still_flushes(
    aws: str, namespace: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(SIGTERM_IN_FOLD_WORKER)
    report = tmp_path / "report.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "METRICSKIT_SHUTDOWN_TIMEOUT": "8"}
    proc = subprocess.run(
        [sys.executable, str(script), namespace, str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "did not finish" not in proc.stderr
    done_text, folds, status = report.read_text().split()
    assert status == "interrupted"
    assert int(folds) >= 3
    assert float(done_text) >= 3 * 4096
    client = boto3.client("cloudwatch")
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "fold-job") == float(done_text)


GRACEFUL_SIGTERM_WORKER = textwrap.dedent(
    """
    import os, signal, sys, time
    import metricskit

    namespace, at_signal, go_on, final = sys.argv[1:]
    stopping = False

    def app_handler(signum, frame):  # a graceful stop: finish the batch, then leave
        global stopping
        stopping = True

    signal.signal(signal.SIGTERM, app_handler)
    job = metricskit.Job("graceful", namespace=namespace, flush_interval=3600)
    print("ready", flush=True)
    with job:
        while not stopping:
            job.processed()
        with open(at_signal, "w") as out:
            out.write(f"{job.status().done:.0f}")
        while not os.path.exists(go_on):
            time.sleep(0.05)
        for _ in range(500):  # the rest of the batch, recorded after the signal
            job.processed()
            job.stage("commit").retried()  # its own metric: moto's JobId reads include stages
    with open(final, "w") as out:
        out.write(f"{job.status().done:.0f} {job.final_status}")
    """
)


def test_sigterm_with_a_graceful_application_handler_delivers_at_once_and_keeps_recording(
    aws: str, namespace: str, tmp_path: Path
) -> None:
    """The application's handler only asks the loop to stop: the job delivers what it has at
    the signal, stays open while the application finishes (stage() included, no exception),
    and closes as interrupted when the application leaves its with block."""
    script = tmp_path / "worker.py"
    script.write_text(GRACEFUL_SIGTERM_WORKER)
    at_signal, go_on, final = tmp_path / "at_signal", tmp_path / "go_on", tmp_path / "final"
    proc = subprocess.Popen(
        [sys.executable, str(script), namespace, str(at_signal), str(go_on), str(final)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "METRICSKIT_SHUTDOWN_TIMEOUT": "8"},
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # let it record for a while; no timing is asserted
    proc.send_signal(signal.SIGTERM)
    assert wait_until(at_signal.exists)
    done_at_signal = float(at_signal.read_text())
    assert done_at_signal > 0
    client = boto3.client("cloudwatch")
    # Delivered by the signal itself, while the application is still stopping: all but the
    # processed() call the signal may have interrupted (it counts once it returns).
    delivered = read_sum(client, namespace, catalog.RECORDS_PROCESSED, "graceful")
    assert done_at_signal - 1 <= delivered <= done_at_signal
    go_on.touch()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    done_text, status = final.read_text().split()
    assert float(done_text) == done_at_signal + 500
    assert status == "interrupted"
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "graceful") == float(done_text)
    now = dt.datetime.now(dt.UTC)
    stage = client.get_metric_statistics(
        Namespace=namespace,
        MetricName=catalog.RETRY_COUNT,
        Dimensions=[{"Name": "JobId", "Value": "graceful"}, {"Name": "Stage", "Value": "commit"}],
        StartTime=now - dt.timedelta(hours=2),
        EndTime=now + dt.timedelta(hours=1),
        Period=3600,
        Statistics=["Sum"],
    )
    assert sum(p["Sum"] for p in stage["Datapoints"]) == 500


def test_an_application_handler_that_raises_to_stop_leaves_the_job_interrupted(
    tmp_path: Path,
) -> None:
    """A handler that raises its own exception to leave the loop is a stop, not a failure
    ("failed" would fail the whole job at once for every worker)."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal
            import metricskit

            class GracefulStop(Exception):
                pass

            def app_handler(signum, frame):
                raise GracefulStop

            signal.signal(signal.SIGTERM, app_handler)
            try:
                with metricskit.Job("raising", sink="memory", flush_interval=3600) as job:
                    job.processed(5)
                    os.kill(os.getpid(), signal.SIGTERM)
                    job.processed(1)
            except GracefulStop:
                print(job.final_status, job.status().done)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["interrupted", "5.0"]


def test_sigterm_without_an_application_handler_still_terminates(
    aws: str, namespace: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        "import sys, time, metricskit\n"
        "job = metricskit.Job('plain', namespace=sys.argv[1], flush_interval=3600)\n"
        "job.processed(11)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), namespace],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    client = boto3.client("cloudwatch")
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "plain") == 11


SIGTERM_DURING_CLOSE_WORKER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import metricskit
    from metricskit.sinks.base import BaseSink, ExportResult

    class SlowSink(BaseSink):  # a slow PutMetricData
        def export(self, batch):
            time.sleep(1.5)
            done = sum(m.value for m in batch if m.name == "RecordsProcessed")
            with open(sys.argv[1], "a") as out:
                out.write(f"{done:.0f}\\n")
            return ExportResult.ok()

    job = metricskit.Job("closing", sink=SlowSink(), flush_interval=3600, shutdown_timeout=10)
    job.processed(42)
    threading.Thread(target=job.close).start()
    time.sleep(0.3)  # that close() is now delivering
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    """
)


def test_sigterm_while_another_thread_closes_waits_for_that_close(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(SIGTERM_DURING_CLOSE_WORKER)
    exported = tmp_path / "exported.txt"
    proc = subprocess.run(
        [sys.executable, str(script), str(exported)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert exported.read_text().split() == ["42"]  # delivered before the process ended


def test_a_job_never_closed_is_flushed_at_exit(aws: str, namespace: str, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        "import sys, metricskit\n"
        "job = metricskit.Job('unclosed', namespace=sys.argv[1], flush_interval=3600)\n"
        "job.processed(9)\n"
    )
    subprocess.run(
        [sys.executable, str(script), namespace],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=60,
    )
    client = boto3.client("cloudwatch")
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "unclosed") == 9


# -- a hung endpoint -------------------------------------------------------------------

LIVENESS_BOUND = 30.0
"""Seconds after which a call that has not returned counts as blocked: a liveness bound far
above every shutdown timeout below, never a timing assertion."""

T = TypeVar("T")


def returns(what: str, call: Callable[[], T]) -> T:
    """``call()``'s result, run on a daemon thread; the test fails if it has not returned
    within the liveness bound (a call stuck for good must not hang the test run too)."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(LIVENESS_BOUND)
    assert not thread.is_alive(), f"{what} was still blocked after {LIVENESS_BOUND:.0f} s"
    assert result, f"{what} raised (see the thread's traceback above)"
    return result[0]


class HungSink(MemorySink):
    """An endpoint that never answers: ``export`` hangs until the test sets ``release``, and
    then keeps the batch like a MemorySink."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, batch: MetricBatch) -> ExportResult:
        self.entered.set()
        self.release.wait()
        return super().export(batch)


@pytest.mark.parametrize("flusher_busy", [False, True], ids=["close-exports", "flusher-exports"])
def test_close_gives_up_on_a_hung_sink_within_the_shutdown_timeout(
    monkeypatch: pytest.MonkeyPatch, flusher_busy: bool
) -> None:
    """close() returns False instead of waiting on an export that never answers, whether its
    own final flush hangs or the periodic flusher's did first (ECS kills 30 s after SIGTERM)."""
    monkeypatch.setattr(config, "MIN_FLUSH_INTERVAL", 0.05)  # the testing path below 1 s
    sink = HungSink()
    job = metricskit.Job(
        "hung",
        sink=sink,
        flush_interval=0.05 if flusher_busy else 3600,
        shutdown_timeout=1,
        handle_sigterm=False,
    )
    try:
        job.processed(3)
        if flusher_busy:
            assert sink.entered.wait(LIVENESS_BOUND)
        assert returns("close()", job.close) is False
        assert sink.entered.is_set()
        assert job.closed
        assert job.final_status == "completed"
        assert returns("a second close()", job.close) is False
    finally:
        sink.release.set()


HUNG_SINK_WORKER = textwrap.dedent(
    """
    import signal, sys, threading, time
    import metricskit
    from metricskit.sinks.base import BaseSink, ExportResult

    class HungSink(BaseSink):  # an endpoint that never answers
        def export(self, batch):
            threading.Event().wait()
            return ExportResult.ok()

    how = sys.argv[1]
    if how == "sigterm-handler":  # the application's own handler leaves at once
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    job = metricskit.Job("hung", sink=HungSink(), flush_interval=3600, shutdown_timeout=1)
    job.processed(3)
    if how == "exit":
        sys.exit(0)  # never closed: the exit hook closes it
    print("ready", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize(
    ("how", "returncode"),
    [("exit", 0), ("sigterm-default", -signal.SIGTERM), ("sigterm-handler", 0)],
)
def test_exit_and_sigterm_give_up_on_a_hung_sink_within_the_shutdown_timeout(
    tmp_path: Path, how: str, returncode: int
) -> None:
    """The process still ends (as it would have without metricskit) when the endpoint never
    answers: the exit hook and the SIGTERM handler wait at most the shutdown timeout."""
    script = tmp_path / "worker.py"
    script.write_text(HUNG_SINK_WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        if how != "exit":
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=LIVENESS_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker was still running {LIVENESS_BOUND:.0f} s after {how}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == returncode, stderr
    assert "did not finish within" in stderr  # it gave up, and said so


def test_flush_calls_during_a_hung_export_share_one_helper_thread() -> None:
    """A worker that flushes after every checkpoint during an outage: each flush() used to
    start a helper thread that queued for the export lock, one more per call, for as long as
    the endpoint hung. A call now waits for the delivery under way (and returns False at its
    timeout); once the endpoint answers, nothing recorded meanwhile is lost."""
    sink = HungSink()
    job = metricskit.Job(
        "piling", sink=sink, flush_interval=3600, shutdown_timeout=1, handle_sigterm=False
    )

    def helpers() -> int:
        return sum(t.name == "metricskit-flush-piling" for t in threading.enumerate())

    try:
        for _ in range(20):
            job.processed(5)
            job.checkpointed()
            assert returns("flush()", lambda: job.flush(timeout=0.05)) is False
        assert sink.entered.is_set()
        assert helpers() == 1
    finally:
        sink.release.set()
    assert returns("flush() after the endpoint answered", lambda: job.flush(timeout=30))
    assert job.close()
    assert sink.sum(catalog.RECORDS_PROCESSED) == 100
    assert sink.sum(catalog.CHECKPOINT_COUNT) == 20
    assert wait_until(lambda: helpers() == 0)


NO_THREADS_AT_EXIT_WORKER = textwrap.dedent(
    """
    import atexit, os, sys, threading
    import metricskit
    from metricskit.sinks.base import BaseSink, ExportResult

    class HungSink(BaseSink):  # an endpoint that never answers
        def export(self, batch):
            line = f"export on {threading.current_thread().name}\\n"
            os.write(2, line.encode())  # one write: lines from several threads never mix
            threading.Event().wait()
            return ExportResult.ok()

    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    how = sys.argv[1]
    jobs = [
        # 3 s: time for every flusher to reach its export on a loaded machine
        metricskit.Job(f"hung{i}", sink=HungSink(), flush_interval=3600, shutdown_timeout=3)
        for i in range(3)
    ]
    for job in jobs:
        job.processed(3)
        if how == "closed-by-the-application-at-exit":
            atexit.register(job.close)
    # Registered last, so it runs first: what Python 3.12.0 to 3.12.2 do in exit handlers.
    atexit.register(lambda: setattr(threading.Thread, "start", refuse))
    """
)


@pytest.mark.parametrize(
    ("how", "gave_up"),
    [
        ("never-closed", "3 job(s) still flushing at the exit deadline"),
        ("closed-by-the-application-at-exit", "did not finish within 3.0 s"),
    ],
)
def test_exit_where_no_thread_can_start_still_gives_up_on_a_hung_sink(
    tmp_path: Path, how: str, gave_up: str
) -> None:
    """Python 3.12.0 to 3.12.2 start no thread inside exit handlers, and closing in place
    waited on the hung export for ever, one job after the other. The jobs' last deliveries
    run on their own flusher threads instead (all three at once), and the process exits
    while every export is still hung."""
    script = tmp_path / "worker.py"
    script.write_text(NO_THREADS_AT_EXIT_WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), how],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=LIVENESS_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"the worker was still running {LIVENESS_BOUND:.0f} s after its end:\n{stderr}")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert gave_up in stderr
    exports = sorted(line for line in stderr.splitlines() if line.startswith("export on"))
    assert exports == [f"export on metricskit-flusher-hung{i}" for i in range(3)]


def test_recording_never_waits_for_a_hung_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the flusher is stuck in an export, every recording call and status() returns
    (instrumentation never blocks the worker on the network); once the export answers,
    the totals are exact."""
    monkeypatch.setattr(config, "MIN_FLUSH_INTERVAL", 0.05)  # the testing path below 1 s
    sink = HungSink()
    job = metricskit.Job(
        "unblocked", sink=sink, flush_interval=0.05, shutdown_timeout=30, handle_sigterm=False
    )
    stage = job.stage("load")
    try:
        job.processed(10)
        job.failed(2)
        assert sink.entered.wait(LIVENESS_BOUND)  # the flusher is inside export from now on

        def record() -> metricskit.JobStatus:
            job.processed(5)  # the locked add path
            job.processed()  # the lock-free tick path
            job.failed(3)
            job.failed()
            job.retried(2)
            job.retried()
            job.checkpointed(4)
            job.checkpointed()
            for i in range(5000):  # more than one buffer: a fold runs meanwhile
                job.observe("Latency", 1.0 + i % 7)
            with job.timer("Block"):
                pass
            job.gauge("Loss", 0.25)
            stage.processed(4)
            stage.failed()
            job.stage("later").processed(2)
            return job.status()

        status = returns("recording while an export hangs", record)
        assert status.done == 16
        assert status.errors == 6
    finally:
        sink.release.set()
    assert job.close()

    def own(name: str) -> float:  # the job's own series, without its stages'
        return sum(m.total for m in sink.metrics(name) if m.key.dimension(catalog.STAGE) is None)

    assert own(catalog.RECORDS_PROCESSED) == 16
    assert own(catalog.ERROR_COUNT) == 6
    assert own(catalog.RETRY_COUNT) == 3
    assert own(catalog.CHECKPOINT_COUNT) == 5
    assert sink.count("Latency") == 5000
    assert sink.count("Block") == 1
    assert sink.last("Loss") == 0.25
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="load") == 4
    assert sink.sum(catalog.ERROR_COUNT, Stage="load") == 1
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="later") == 2


# -- fork ------------------------------------------------------------------------------

_INHERITED: metricskit.Job | None = None


def _record_in_child(task: tuple[str, int]) -> int:
    namespace, n = task
    assert _INHERITED is not None
    for _ in range(n):
        with _INHERITED.timer("ForkedBlock"):  # a timer type the parent defined
            _INHERITED.processed()  # a job created before the fork
    _INHERITED.failed()
    with metricskit.Job(
        f"child-{os.getpid()}", namespace=namespace, sink="cloudwatch", shutdown_timeout=60
    ) as own:
        own.processed(n)  # a job created after the fork
    return os.getpid()


def test_forked_pool_workers_give_exact_totals(aws: str, namespace: str) -> None:
    global _INHERITED  # noqa: PLW0603 - fork children see module globals
    # No periodic flush happens during the test (an hour's interval): the children's counts
    # can only arrive through the exit hook of each pool worker. Generous shutdown timeouts:
    # on a loaded 2-core machine a final flush to the in-process moto server can take seconds.
    parent = metricskit.Job(
        "forked", namespace=namespace, sink="cloudwatch", flush_interval=3600, shutdown_timeout=60
    )
    _INHERITED = parent
    # Unflushed at fork time: each must be counted once, by the parent, not again by every
    # pool worker that inherited it.
    parent.processed(1000)
    parent.failed(7)
    parent.retried(3)
    parent.checkpointed(2)
    parent.gauge("ForkedLoss", 0.5)
    with parent.timer("ForkedBlock"):  # buffered at fork time: observed once, by the parent
        pass
    try:
        context = multiprocessing.get_context("fork")
        pool = context.Pool(4)
        pids = pool.map(_record_in_child, [(namespace, 5000)] * 8, chunksize=1)
        pool.close()
        pool.join()
        parent.processed(1)
    finally:
        parent.close()
        _INHERITED = None
    client = boto3.client("cloudwatch")
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "forked") == 1000 + 40_000 + 1
    timed = read_statistic(client, namespace, "ForkedBlock", "forked", "SampleCount")
    assert timed == 1 + 40_000
    assert read_sum(client, namespace, catalog.ERROR_COUNT, "forked") == 7 + 8  # 1 per task
    assert read_sum(client, namespace, catalog.RETRY_COUNT, "forked") == 3
    assert read_sum(client, namespace, catalog.CHECKPOINT_COUNT, "forked") == 2
    assert read_statistic(client, namespace, "ForkedLoss", "forked", "SampleCount") == 1
    children = {f"child-{pid}" for pid in pids}
    total_own = sum(
        read_sum(client, namespace, catalog.RECORDS_PROCESSED, name) for name in children
    )
    assert total_own == 40_000


# -- memory ----------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_stays_bounded_through_10m_observations_and_a_long_outage(
    clock: FakeClock,
) -> None:
    sink = MemorySink()
    sink.fail_exports = True
    job = metricskit.Job("memory", sink=sink, clock=clock, flush_interval=3600)
    values = [1.0 + i for i in range(1000)]  # 1000 distinct values
    observe = job.observe
    before = rss_bytes()
    per_minute = 10_000_000 // 30
    for _minute in range(30):  # a 30-minute outage on the injected clock
        for i in range(per_minute):
            observe("Latency", values[i % 1000])
        job.processed(per_minute)
        clock.advance(60)
        job.flush()
    growth = rss_bytes() - before
    print(f"\nRSS growth after 10M observations and a 30-min outage: {growth / 1e6:.1f} MB")
    queued = job._delivery.queued
    assert queued == 30
    assert growth < 64 * 1024 * 1024  # raw values would take 80 MB as floats alone
    for _minute in range(200):  # the outage goes on for hours: old periods merge
        job.observe("Latency", 3.0)
        clock.advance(60)
        job.flush()
    assert job._delivery.queued <= 60
    sink.fail_exports = False
    assert job.flush()
    assert sink.count("Latency") == per_minute * 30 + 200
    assert sink.sum(catalog.RECORDS_PROCESSED) == per_minute * 30
    job.close()
