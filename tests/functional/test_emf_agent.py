"""The EMF sink against a stand-in CloudWatch agent on loopback, over TCP and UDP.

The agent here is a socket server thread that keeps every line it receives; every line is
checked against the EMF specification (tests/emf_spec.py).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import metricskit
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey, distribution
from metricskit.sinks import EMFSink
from metricskit.sinks.emf import UDP_MAX_DATAGRAM_BYTES
from tests.emf_spec import metric_values, validate_output


class FakeAgent:
    """Listens like the CloudWatch agent's EMF listener and records each received line."""

    def __init__(self, kind: str, port: int = 0) -> None:
        self.kind = kind
        self.port = port
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._sock: socket.socket | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.kind}://127.0.0.1:{self.port}"

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(line + "\n" for line in self._lines)

    def start(self) -> FakeAgent:
        kind = socket.SOCK_STREAM if self.kind == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        sock.settimeout(0.05)
        self._sock = sock
        self._stop.clear()
        if self.kind == "tcp":
            sock.listen()
            self._spawn(self._accept_loop)
        else:
            self._spawn(self._datagram_loop)
        return self

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.05)
            self._conns.append(conn)
            self._spawn(lambda c=conn: self._read_loop(c))  # type: ignore[misc]

    def _read_loop(self, conn: socket.socket) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            pending += data
            *complete, pending = pending.split(b"\n")
            self._keep(complete)

    def _datagram_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(UDP_MAX_DATAGRAM_BYTES + 1)
            except TimeoutError:
                continue
            except OSError:
                return
            assert data.endswith(b"\n")
            assert data.count(b"\n") == 1
            self._keep([data[:-1]])

    def _keep(self, lines: list[bytes]) -> None:
        with self._lock:
            self._lines.extend(line.decode("utf-8") for line in lines if line)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """Wait until the received text satisfies ``predicate`` (data crosses threads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.text):
                return self.text
            time.sleep(0.01)
        return self.text

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        for conn in self._conns:
            # shutdown() sends the FIN now; close() alone waits for the reader thread's
            # poll() to return, and the sink could still see the connection open.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._conns.clear()
        self._threads.clear()


@pytest.fixture(params=["tcp", "udp"])
def agent(request: pytest.FixtureRequest) -> Iterator[FakeAgent]:
    server = FakeAgent(request.param).start()
    yield server
    server.stop()


def records_processed(text: str, **dims: str) -> float:
    return sum(metric_values(validate_output(text), "RecordsProcessed", **dims))


def test_agent_receives_valid_documents_with_log_group(agent: FakeAgent) -> None:
    sink = EMFSink(agent_endpoint=agent.endpoint, log_group="/jobs/emf", log_stream="worker-1")
    key = SeriesKey("Latency", "Milliseconds", (("JobId", "a"),))
    counts = {float(v): 3.0 for v in range(1, 201)}  # 600 observations: 6 documents
    processed = Metric(
        SeriesKey("RecordsProcessed", "Count", (("JobId", "a"),)), MetricKind.COUNTER, value=11
    )
    batch = MetricBatch("Test/EMF", 1_700_000_000.0, (processed, distribution(key, counts)))
    assert sink.export(batch).success
    text = agent.wait_for(lambda t: t.count("\n") >= 6)
    docs = validate_output(text, UDP_MAX_DATAGRAM_BYTES)
    assert len(docs) == 6
    assert all(d["_aws"]["LogGroupName"] == "/jobs/emf" for d in docs)  # type: ignore[index]
    assert all(d["_aws"]["LogStreamName"] == "worker-1" for d in docs)  # type: ignore[index]
    assert sorted(metric_values(docs, "Latency")) == sorted(v for v in counts for _ in range(3))
    assert metric_values(docs, "RecordsProcessed") == [11]
    sink.shutdown()


def test_sink_name_emf_uses_the_agent_from_the_environment(
    agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICSKIT_EMF_AGENT_ENDPOINT", agent.endpoint)
    monkeypatch.setenv("METRICSKIT_EMF_LOG_GROUP", "/from/env")
    with metricskit.Job("env-job", namespace="Test/EMF", sink="emf") as job:
        job.processed(123)
    text = agent.wait_for(lambda t: "RecordsProcessed" in t)
    assert records_processed(text, JobId="env-job") == 123
    assert all(d["_aws"]["LogGroupName"] == "/from/env" for d in validate_output(text))  # type: ignore[index]


def test_agent_not_running_fails_the_export_with_the_whole_batch() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = EMFSink(agent_endpoint=f"tcp://127.0.0.1:{port}", socket_timeout=1.0)
    metric = Metric(SeriesKey("RecordsProcessed", "Count", ()), MetricKind.COUNTER, value=5)
    batch = MetricBatch("Test/EMF", 1_700_000_000.0, (metric,))
    result = sink.export(batch)  # must not raise
    assert not result.success
    assert result.retryable
    assert result.remainder is not None
    assert result.remainder.metrics == (metric,)
    assert sink.failed_writes == 1


def test_tcp_agent_down_then_up_delivers_every_count_exactly_once() -> None:
    agent = FakeAgent("tcp").start()
    sink = EMFSink(agent_endpoint=agent.endpoint, socket_timeout=1.0)
    job = metricskit.Job("outage", namespace="Test/EMF", sink=sink, flush_interval=3600)
    try:
        job.processed(100)
        assert job.flush()
        agent.wait_for(lambda t: records_processed(t, JobId="outage") == 100)

        agent.stop()  # the agent goes away; the sink still holds the old connection
        job.processed(20)
        assert not job.flush()  # kept, not lost and not raised
        job.processed(3)
        assert not job.flush()
        assert sink.failed_writes >= 2

        agent.start()  # back on the same port
        job.processed(7)
        assert job.flush()
        text = agent.wait_for(lambda t: records_processed(t, JobId="outage") >= 130)
        assert records_processed(text, JobId="outage") == 130  # 100 + 20 + 3 + 7, each once
    finally:
        job.close()
        agent.stop()


def _ipv6_loopback(kind: socket.SocketKind) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6, kind)
        sock.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback (::1): {exc}")
    sock.settimeout(5.0)
    return sock


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_an_agent_on_an_ipv6_address_receives_the_documents(scheme: str) -> None:
    """udp://[::1]:port used to open an IPv4 socket and fail every export, forever."""
    kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
    with _ipv6_loopback(kind) as listener:
        port = listener.getsockname()[1]
        if scheme == "tcp":
            listener.listen()
        sink = EMFSink(agent_endpoint=f"{scheme}://[::1]:{port}", socket_timeout=1.0)
        assert repr(sink) == f"EMFSink({scheme}://[::1]:{port})"
        metric = Metric(
            SeriesKey("RecordsProcessed", "Count", (("JobId", "v6"),)), MetricKind.COUNTER, value=7
        )
        batch = MetricBatch("Test/EMF", 1_700_000_000.0, (metric,))
        assert sink.export(batch).success
        assert sink.export(batch).success  # the socket is kept and still sends
        if scheme == "tcp":
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5.0)
                text = b""
                while text.count(b"\n") < 2:
                    text += conn.recv(65536)
        else:
            text = listener.recv(65536) + listener.recv(65536)
        sink.shutdown()
    assert records_processed(text.decode("utf-8"), JobId="v6") == 14
    assert sink.failed_writes == 0


def test_an_agent_that_never_reads_holds_a_bounded_amount_before_writes_fail() -> None:
    """TCP has no acknowledgement: what the kernel buffers for an agent that accepts the
    connection (the listen backlog does) but never reads counts as written. With Linux's
    autotuned send buffer that was 5.4 MB (1126 documents) before the first timeout; the
    sink's capped SO_SNDBUF bounds it (413 KB measured)."""
    from metricskit.sinks.emf import TCP_SEND_BUFFER_BYTES

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(1)  # never accept(), never recv()
        port = hung.getsockname()[1]
        sink = EMFSink(agent_endpoint=f"tcp://127.0.0.1:{port}", socket_timeout=0.2)
        dims = (("JobId", "x" * 900),)
        metrics = tuple(
            Metric(SeriesKey(f"M{j}", "Count", dims), MetricKind.COUNTER, 1.0) for j in range(100)
        )
        for _ in range(5000):
            if not sink.export(MetricBatch("Test/EMF", time.time(), metrics)).success:
                break
        else:
            pytest.fail("5000 exports into an agent that never reads all succeeded")
        sink.shutdown()
    assert TCP_SEND_BUFFER_BYTES == 65_536
    assert 0 < sink.bytes_written < 1_000_000, sink.bytes_written
