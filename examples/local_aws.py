"""A local AWS endpoint for the demo: a moto server on loopback, selected through boto3's own
``AWS_ENDPOINT_URL``, and a reader of what it stored.

While it runs, the caller's own AWS, Kafka, metricskit and proxy settings are hidden (see
:data:`ISOLATED_PREFIXES`): an exported ``AWS_PROFILE``, ``AWS_ENDPOINT_URL_S3``,
``KAFKA_BOOTSTRAP_SERVERS`` or ``METRICSKIT_DIMENSIONS`` must not send the demo's fake rows to
real infrastructure, nor make its summary read nothing. :meth:`LocalAws.environ` is the
environment for the processes it starts.

>>> with LocalAws() as aws:                         # doctest: +SKIP
...     boto3.client("s3").create_bucket(Bucket="demo")
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import numpy as np

from examples.dashboard_render import Datapoints, MetricQuery

FAKE_CREDENTIALS: Final[Mapping[str, str]] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # moto mishandles gzip-compressed request bodies of 10 KB or more.
    "AWS_DISABLE_REQUEST_COMPRESSION": "true",
}

ISOLATED_PREFIXES: Final = ("AWS_", "METRICSKIT_", "KAFKA_")
"""Variables hidden while a :class:`LocalAws` runs, and never given to its children:

* ``AWS_*``: every boto3/Terraform setting, including ``AWS_PROFILE``/``AWS_DEFAULT_PROFILE``
  (a profile missing here raises ProfileNotFound), ``AWS_ENDPOINT_URL_<SERVICE>`` (wins over
  ``AWS_ENDPOINT_URL``: the service would go to a real endpoint),
  ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` (ignores the local endpoint altogether), role and
  container-credential variables; :data:`FAKE_CREDENTIALS` and the endpoint are set instead;
* ``KAFKA_*``: ``KAFKA_BOOTSTRAP_SERVERS`` selects a real broker in the CSV-to-Kafka worker;
* ``METRICSKIT_*``: ``METRICSKIT_DIMENSIONS``/``METRICSKIT_WORKER_ID`` add dimensions the
  demo's read-back does not ask for, ``METRICSKIT_SINK`` sends metrics elsewhere.
"""
PROXY_VARIABLES: Final = frozenset(("http_proxy", "https_proxy", "all_proxy"))
"""Hidden too, whatever their case (compared lowercased, as urllib reads them): botocore would
send the loopback endpoint's requests through a proxy (Python bypasses proxies for 127.0.0.1
only when ``NO_PROXY`` says so). ``NO_PROXY`` itself stays: it only ever bypasses a proxy."""
SHARED_FILES: Final[Mapping[str, str]] = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
"""No ``~/.aws/config`` or credentials file either: its default profile may name a
``credential_process``, SSO, another region or endpoint."""


def isolated(name: str) -> bool:
    """Whether the variable ``name`` is hidden from the demo (:data:`ISOLATED_PREFIXES`).

    >>> [isolated(n) for n in ("AWS_PROFILE", "KAFKA_BOOTSTRAP_SERVERS", "https_proxy", "HOME")]
    [True, True, True, False]

    Proxy names in any case: Python's ``urllib.request.getproxies`` (which botocore uses)
    lowercases every name that ends in ``_proxy``, so ``Http_Proxy`` is a proxy too.

    >>> isolated("Http_Proxy"), isolated("HTTPS_Proxy"), isolated("no_proxy")
    (True, True, False)
    """
    return name.startswith(ISOLATED_PREFIXES) or name.lower() in PROXY_VARIABLES


def local_environ(base: Mapping[str, str], endpoint: str) -> dict[str, str]:
    """``base`` without what :func:`isolated` names, plus fake credentials, no shared AWS
    files and ``endpoint`` for every AWS service.

    >>> env = local_environ({"PATH": "/bin", "AWS_PROFILE": "prod"}, "http://127.0.0.1:5000")
    >>> "AWS_PROFILE" in env, env["AWS_ENDPOINT_URL"], env["PATH"]
    (False, 'http://127.0.0.1:5000', '/bin')
    """
    env = {name: value for name, value in base.items() if not isolated(name)}
    env.update(FAKE_CREDENTIALS)
    env.update(SHARED_FILES)
    env["AWS_ENDPOINT_URL"] = endpoint
    return env


_item_lock = threading.Lock()
"""Held by every patched moto item request."""
_patch_lock = threading.Lock()
_item_writes_atomic = False


def make_item_writes_atomic() -> None:
    """Serialize moto's DynamoDB item reads and writes, as DynamoDB makes each UpdateItem atomic.

    A moto server answers requests on many threads and its UpdateItem is a plain
    read-modify-write, so two worker processes ADDing at the same moment can lose one update
    there (never in DynamoDB): two workers registering together were once counted as one.
    Applies to every moto server in this process; calling it again does nothing.
    """
    global _item_writes_atomic  # noqa: PLW0603 - one patch per process
    from moto.dynamodb.responses import DynamoHandler

    with _patch_lock:
        if _item_writes_atomic:
            return
        for name in ("update_item", "put_item", "get_item"):
            original = getattr(DynamoHandler, name)

            def locked(self: Any, _original: Any = original) -> Any:
                with _item_lock:
                    return _original(self)

            setattr(DynamoHandler, name, locked)
        _item_writes_atomic = True


class LocalAws:
    """Start a moto server on 127.0.0.1 (a free port) and point this process and its
    children at it, hiding the caller's own AWS/Kafka/metricskit/proxy settings
    (:func:`isolated`); ``close()`` stops it and restores the environment."""

    def __init__(self) -> None:
        self.endpoint = ""
        self._server: Any = None
        self._saved: dict[str, str | None] = {}

    def start(self) -> LocalAws:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; the demo's terminal is for the progress bar.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        make_item_writes_atomic()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self._server = server
        try:
            host, port = server.get_host_and_port()
            self.endpoint = f"http://{host}:{port}"
            wanted = local_environ(os.environ, self.endpoint)
            for name in [*os.environ, *wanted]:
                if name in self._saved or os.environ.get(name) == wanted.get(name):
                    continue
                self._saved[name] = os.environ.get(name)
                if name in wanted:
                    os.environ[name] = wanted[name]
                else:
                    del os.environ[name]
        except BaseException:
            # Ctrl-C or a failure half-way: no server thread left running, no environment
            # left half rewritten (the caller's `with` never reaches __exit__).
            self.close()
            raise
        return self

    def environ(self) -> dict[str, str]:
        """The environment for a process this demo starts: this one's, isolated
        (:func:`local_environ`), pointed at the local endpoint."""
        if not self.endpoint:
            raise RuntimeError("LocalAws is not started")
        return local_environ(os.environ, self.endpoint)

    def close(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        self.endpoint = ""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_SeriesId = tuple[str, str, tuple[tuple[str, str], ...]]


class MotoStoreSource:
    """Datapoints read from the in-process moto server's CloudWatch store.

    Why not GetMetricData: moto computes no percentiles (the p99 of ``KafkaLatency`` is the
    point of publishing Values/Counts), and it scans every stored value once per period per
    query, which takes minutes for a dashboard over 200k latency values. moto keeps each
    published value (a Values/Counts pair becomes ``count`` stored values), so the
    statistics here are exact. Against real CloudWatch use ``CloudWatchSource``.
    """

    def __init__(self, region: str = "us-east-1", account: str | None = None) -> None:
        from moto.cloudwatch.models import cloudwatch_backends
        from moto.core.models import DEFAULT_ACCOUNT_ID

        self._backend = cloudwatch_backends[account or DEFAULT_ACCOUNT_ID][region]
        self._index: dict[_SeriesId, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read the store again (call after more data was published)."""
        stamps: dict[_SeriesId, list[float]] = defaultdict(list)
        values: dict[_SeriesId, list[float]] = defaultdict(list)
        for datum in list(self._backend.metric_data):
            value = getattr(datum, "value", None)
            if value is None:  # StatisticValues datums: metricskit never sends them
                continue
            dims = tuple(sorted((str(d.name), str(d.value)) for d in datum.dimensions))
            key = (datum.namespace, datum.name, dims)
            stamp = datum.timestamp
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
            stamps[key].append(stamp.timestamp())
            values[key].append(float(value))
        self._index = {key: (np.asarray(stamps[key]), np.asarray(values[key])) for key in stamps}

    def list_metrics(
        self, namespace: str, name: str | None
    ) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
        return [
            (metric, dims)
            for ns, metric, dims in self._index
            if ns == namespace and (name is None or metric == name)
        ]

    def raw_values(
        self,
        namespace: str,
        name: str,
        dimensions: Sequence[tuple[str, str]],
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> np.ndarray[Any, Any]:
        """Every value stored for one series (between ``start`` and ``end``): exact statistics."""
        found = self._index.get((namespace, name, tuple(sorted(dimensions))))
        if found is None:
            return np.asarray([])
        stamps, values = found
        lo = -np.inf if start is None else start.timestamp()
        hi = np.inf if end is None else end.timestamp()
        return values[(stamps >= lo) & (stamps < hi)]

    def fetch(self, query: MetricQuery, start: dt.datetime, end: dt.datetime) -> Datapoints:
        found = self._index.get((query.namespace, query.name, tuple(sorted(query.dimensions))))
        if found is None:
            return [], []
        stamps, values = found
        lo, hi = start.timestamp(), end.timestamp()
        inside = (stamps >= lo) & (stamps < hi)
        stamps, values = stamps[inside], values[inside]
        # Periods start at ``start`` (callers align it), as GetMetricData's do.
        period = query.period
        first = lo
        slots = ((stamps - first) // period).astype(int)
        out_t: list[float] = []
        out_v: list[float] = []
        for slot in np.unique(slots):
            out_t.append(float(first + slot * period))
            out_v.append(statistic(values[slots == slot], query.stat))
        return out_t, out_v


def statistic(values: np.ndarray[Any, Any], stat: str) -> float:
    """One CloudWatch statistic of raw values: Sum, Average, Minimum, Maximum,
    SampleCount or pNN (nearest rank, as CloudWatch computes percentiles on raw values).

    >>> statistic(np.arange(1.0, 101.0), "p99")
    99.0
    """
    if stat == "Sum":
        return float(values.sum())
    if stat == "Average":
        return float(values.mean())
    if stat == "Minimum":
        return float(values.min())
    if stat == "Maximum":
        return float(values.max())
    if stat == "SampleCount":
        return float(values.size)
    if stat.startswith("p"):
        rank = float(stat[1:]) / 100.0
        ordered = np.sort(values)
        index = max(0, int(np.ceil(rank * ordered.size)) - 1)
        return float(ordered[index])
    raise ValueError(
        f"statistic {stat!r}: expected Sum, Average, Minimum, Maximum, SampleCount or pNN"
    )
