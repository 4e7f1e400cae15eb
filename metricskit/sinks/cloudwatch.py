"""The CloudWatch sink: PutMetricData requests packed to the service limits.

One batch becomes as few requests as the limits allow: at most 1000 datums and 1 MB each
(the body as botocore encodes it under the client's wire protocol: query, JSON or CBOR; see
``estimate_datum_bytes``), a distribution split into datums of at most 150 Values/Counts.
Throttling and 5xx answers are retried by botocore's ``standard`` retry mode (exponential
backoff with full jitter); what still fails is returned to the caller as the undelivered
remainder, request by request, so a request that was answered is never sent again. (One
whose answer was lost to a read timeout after CloudWatch applied it is, and PutMetricData
takes no idempotency token: see docs/OPERATIONS.md, where the guarantees end.) A request
answered 413 (too large; the size estimate should prevent it) is sent again at once in
halves, and a single datum still too large is dropped and counted like a request refused as
invalid: neither can sit at the head of the delivery queue, failing forever and holding back
every later period. Values CloudWatch refuses are left out first, because one of them fails
the whole request.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from metricskit import limits
from metricskit.aws_clients import build_client
from metricskit.batch import Metric, MetricBatch, MetricKind, publishable
from metricskit.errors import ConfigurationError
from metricskit.sinks.base import BaseSink, ExportResult

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_cloudwatch.client import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

logger = logging.getLogger("metricskit")

DEFAULT_MAX_ATTEMPTS = 4
"""Attempts per request inside botocore (1 call + 3 retries with backoff and jitter)."""
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 10.0

# Errors that mean the request itself is wrong: retrying cannot help.
_NON_RETRYABLE_CODES = frozenset(
    {"InvalidParameterValue", "InvalidParameterCombination", "MissingParameter", "ValidationError"}
)
# A body over the limit: the same request always fails again, a smaller one may not.
_TOO_LARGE_CODES = frozenset({"RequestEntityTooLarge", "RequestEntityTooLargeException", "413"})


class CloudWatchSink(BaseSink):
    """Publishes batches with PutMetricData.

    >>> sink = CloudWatchSink(client=boto3.client("cloudwatch"))      # doctest: +SKIP
    >>> metricskit.Job("nightly-load", sink=sink)                      # doctest: +SKIP

    Pass ``client`` (or a boto3 ``session``) to control credentials and endpoint; otherwise
    a client is built from boto3's default chain, which honours ``AWS_ENDPOINT_URL`` and
    ``AWS_ENDPOINT_URL_CLOUDWATCH`` so moto or LocalStack need no code change.
    """

    def __init__(
        self,
        *,
        client: CloudWatchClient | None = None,
        session: boto3.session.Session | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(
                f"max_attempts must be an int >= 1 (attempts per request), got {max_attempts!r}"
            )
        for name, seconds in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 < seconds < math.inf
            ):
                raise ConfigurationError(
                    f"{name} must be a finite number of seconds > 0, got {seconds!r}"
                )
        if client is not None and not callable(getattr(client, "put_metric_data", None)):
            raise ConfigurationError(
                f"client must be a boto3 CloudWatch client (boto3.client('cloudwatch')), "
                f"got {client!r}"
            )
        if session is not None and not callable(getattr(session, "client", None)):
            raise ConfigurationError(f"session must be a boto3.session.Session, got {session!r}")
        self._session = session
        self._owns_client = client is None
        self._client_settings = (max_attempts, connect_timeout, read_timeout)
        self._client = client if client is not None else self._build_client()
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.bytes_sent = 0
        self.retries = 0
        self.failed_requests = 0
        self.rejected_datums = 0
        self.dropped_values = 0
        """Values CloudWatch would refuse (NaN, inf, beyond +/-1.174271e108), left out of
        requests."""

    def _build_client(self) -> CloudWatchClient:
        try:
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError("the cloudwatch sink needs boto3: pip install boto3") from exc
        max_attempts, connect_timeout, read_timeout = self._client_settings
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        client: CloudWatchClient = build_client(
            "cloudwatch", self._session, config, "the cloudwatch sink", "pass client="
        )
        return client

    def after_fork(self) -> None:
        # The lock may have been held by a parent thread that does not exist here.
        self._lock = threading.Lock()
        # A client's connection pool must not be shared with the parent process. A client
        # the application passed in is its own: it is kept (see docs/OPERATIONS.md, fork).
        if self._owns_client:
            self._client = self._build_client()

    @property
    def client(self) -> CloudWatchClient:
        return self._client

    def export(self, batch: MetricBatch) -> ExportResult:
        protocol = wire_protocol(self._client)
        batch = self._publishable(batch)
        pending = deque(pack_requests(batch, protocol))
        rejected = 0
        retries = 0
        while pending:
            request = pending.popleft()
            data = [to_datum(m, batch.timestamp, batch.storage_resolution) for m in request]
            try:
                response = self._client.put_metric_data(Namespace=batch.namespace, MetricData=data)
            except Exception as exc:  # never let an AWS or network fault escape
                retries += self._count_failure(exc)
                if _is_too_large(exc) and len(request) > 1:
                    # Our size estimate missed (it should not): resend the request in halves
                    # now rather than keep it at the head of the delivery queue, where it
                    # would fail again and hold back every later period.
                    half = len(request) // 2
                    pending.extendleft((request[half:], request[:half]))
                    logger.warning(
                        "metricskit: CloudWatch found a PutMetricData request of %d datums "
                        "too large (%s); sending it in two halves",
                        len(request),
                        exc,
                    )
                    continue
                if _is_non_retryable(exc) or _is_too_large(exc):
                    logger.error(
                        "metricskit: CloudWatch rejected %d datums of %s and they are dropped: %s",
                        len(data),
                        batch.namespace,
                        exc,
                    )
                    rejected += len(data)
                    with self._lock:
                        self.rejected_datums += len(data)
                    continue
                logger.warning(
                    "metricskit: PutMetricData failed (%s); %d request(s) kept for retry",
                    exc,
                    1 + len(pending),
                )
                rest = tuple(m for later in (request, *pending) for m in later)
                return ExportResult.failed(
                    batch.with_metrics(rest), rejected=rejected, retries=retries, error=exc
                )
            # Delivered: nothing below may raise, or the batch would be kept and sent again.
            # (botocore's Stubber, for one, answers without ResponseMetadata.)
            attempts = _retry_attempts(response)
            retries += attempts
            sent_bytes = sum(estimate_datum_bytes(d, protocol) for d in data)
            with self._lock:
                self.requests_sent += 1
                self.bytes_sent += sent_bytes
                self.retries += attempts
        return ExportResult.ok(rejected=rejected, retries=retries)

    def _publishable(self, batch: MetricBatch) -> MetricBatch:
        """The batch without values CloudWatch refuses: one would fail its whole request."""
        kept: list[Metric] = []
        dropped = 0
        for metric in batch:
            clean, bad = publishable(metric)
            dropped += bad
            if clean is not None:
                kept.append(clean)
        if dropped:
            with self._lock:
                self.dropped_values += dropped
            logger.warning(
                "metricskit: %d value(s) of %s are NaN, infinite or beyond +/-1.174271e108 "
                "(or a count outside that range); left out",
                dropped,
                batch.namespace,
            )
        return batch.with_metrics(tuple(kept))

    def _count_failure(self, exc: Exception) -> int:
        """Count a failed request; return the retries botocore made before giving up."""
        attempts = _retry_attempts(_error_response(exc))
        with self._lock:
            self.failed_requests += 1
            self.retries += attempts
        return attempts


def wire_protocol(client: Any) -> str:
    """The protocol ``client`` really speaks: botocore >= 1.40 lists several for CloudWatch
    (``service_model.protocol`` is the first of them, CBOR) and resolves the one it uses
    (``resolved_protocol``, JSON with botocore 1.44)."""
    model = client.meta.service_model
    resolved = getattr(model, "resolved_protocol", None)
    return str(resolved or model.protocol)


def _error_response(exc: Exception) -> Mapping[str, Any]:
    """The service's answer a botocore error carries ({} for a network fault)."""
    response = getattr(exc, "response", None)
    return response if isinstance(response, Mapping) else {}


def _metadata(response: Mapping[str, Any]) -> Mapping[str, Any]:
    # Not every answer has it (botocore's Stubber gives none): read, never index.
    return response.get("ResponseMetadata") or {}


def _retry_attempts(response: Mapping[str, Any]) -> int:
    """The retries botocore made for one request, from its answer (0 when it says none)."""
    return int(_metadata(response).get("RetryAttempts", 0) or 0)


def _is_non_retryable(exc: Exception) -> bool:
    return _error_response(exc).get("Error", {}).get("Code") in _NON_RETRYABLE_CODES


def _is_too_large(exc: Exception) -> bool:
    """An HTTP 413 (RequestEntityTooLarge): this request can never succeed as it is."""
    response = _error_response(exc)
    status = _metadata(response).get("HTTPStatusCode")
    return status == 413 or response.get("Error", {}).get("Code") in _TOO_LARGE_CODES


def split_metric(metric: Metric) -> Iterator[Metric]:
    """One metric as datums: a distribution in pieces of at most 150 values."""
    if metric.kind is not MetricKind.DISTRIBUTION:
        yield metric
        return
    step = limits.PUT_METRIC_DATA_MAX_VALUES_PER_DATUM
    for start in range(0, len(metric.values), step):
        yield Metric(
            metric.key,
            metric.kind,
            values=metric.values[start : start + step],
            counts=metric.counts[start : start + step],
        )


def pack_requests(batch: MetricBatch, protocol: str = "json") -> list[list[Metric]]:
    """Group a batch's datums into PutMetricData requests within the count and size limits."""
    requests: list[list[Metric]] = []
    current: list[Metric] = []
    size = 0
    budget = limits.PUT_METRIC_DATA_MAX_BYTES - _REQUEST_OVERHEAD_BYTES
    for metric in batch:
        for piece in split_metric(metric):
            datum = to_datum(piece, batch.timestamp, batch.storage_resolution)
            piece_size = estimate_datum_bytes(datum, protocol)
            if current and (
                len(current) >= limits.PUT_METRIC_DATA_MAX_DATUMS or size + piece_size > budget
            ):
                requests.append(current)
                current, size = [], 0
            current.append(piece)
            size += piece_size
    if current:
        requests.append(current)
    return requests


_REQUEST_OVERHEAD_BYTES = 4096  # action, version, namespace and headers, generously


def to_datum(metric: Metric, timestamp: float, storage_resolution: int) -> MetricDatumTypeDef:
    """The PutMetricData datum for one metric (or one piece of a distribution)."""
    datum: dict[str, Any] = {
        "MetricName": metric.key.name,
        "Dimensions": [{"Name": n, "Value": v} for n, v in metric.key.dimensions],
        "Timestamp": dt.datetime.fromtimestamp(timestamp, tz=dt.UTC),
        "Unit": metric.key.unit,
        "StorageResolution": storage_resolution,
    }
    if metric.kind is MetricKind.DISTRIBUTION:
        datum["Values"] = list(metric.values)
        datum["Counts"] = list(metric.counts)
    else:
        datum["Value"] = metric.value
    return datum  # type: ignore[return-value]


def estimate_datum_bytes(datum: MetricDatumTypeDef | dict[str, Any], protocol: str) -> int:
    """An upper estimate of a datum's encoded size under the client's wire protocol
    (:func:`wire_protocol`), as botocore encodes it.

    * ``query`` spells out ``MetricData.member.N.Values.member.M=`` for every value (~3x
      JSON), and its form body percent-encodes every character but letters, digits and
      ``-_.~``: a dimension value such as ``s3://bucket/a b=c`` costs 3 bytes for each
      ``/ : = &``. (A space becomes ``+``, 1 byte; counted as 3, the estimate stays above.)
    * ``smithy-rpc-v2-cbor`` (botocore's default for CloudWatch since 2025) writes every
      float as an 8-byte double plus a type byte: ``1.0`` is 9 bytes, three times its JSON.
    * ``json`` is ``json.dumps`` with its default ``", "`` and ``": "`` separators.

    >>> estimate_datum_bytes({"MetricName": "a/b", "Values": [1.0, 2.0]}, "query")
    126
    >>> estimate_datum_bytes({"MetricName": "a/b", "Values": [1.0, 2.0]}, "smithy-rpc-v2-cbor")
    42
    """
    if protocol == "query":
        return sum(
            len(_quote(k)) + len(_quote(v)) + 2
            for k, v in _query_pairs("MetricData.member.1000", datum)
        )
    if protocol == "smithy-rpc-v2-cbor":
        return _cbor_bytes(datum)
    return len(json.dumps(datum, default=str))


def _quote(text: str) -> str:
    # What botocore's urlencode of the form body does, but with a space as %20 (3 bytes)
    # where it writes "+": an upper bound either way.
    return quote(text, safe="-_.~")


def _cbor_bytes(value: object) -> int:
    """Bytes of ``value`` in CBOR as botocore writes it, or more (numbers count 9)."""
    if isinstance(value, dict):
        items = value.items()
        return _cbor_head(len(value)) + sum(_cbor_bytes(k) + _cbor_bytes(v) for k, v in items)
    if isinstance(value, str):
        size = len(value.encode("utf-8"))
        return _cbor_head(size) + size
    if isinstance(value, Sequence):
        return _cbor_head(len(value)) + sum(_cbor_bytes(item) for item in value)
    if isinstance(value, dt.datetime):
        return 1 + 9  # tag 1 (epoch seconds), then the number
    return 9  # an int or a double: a type byte and at most 8 bytes


def _cbor_head(length: int) -> int:
    """Bytes of the type-and-length head of a CBOR string, array or map."""
    if length < 24:
        return 1
    if length < 2**8:
        return 2
    return 3 if length < 2**16 else 5


def _query_pairs(prefix: str, value: object) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _query_pairs(f"{prefix}.{key}", item)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index, item in enumerate(value, start=1):
            yield from _query_pairs(f"{prefix}.member.{index}", item)
    else:
        yield prefix, str(value)
