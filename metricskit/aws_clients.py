"""boto3 clients for the job table, S3 and CloudWatch, built only when the caller passed none.

Short timeouts and few retries: the job registry runs on the flusher thread next to metric
delivery, and a hung DynamoDB endpoint must not hold that thread for botocore's default
minute. Endpoints come from boto3's own ``AWS_ENDPOINT_URL*`` variables (moto, LocalStack).

Regions come from boto3's chain (``AWS_DEFAULT_REGION``, then the profile's ``region``).
botocore does not read ``AWS_REGION``, which Lambda and many container setups set instead,
so where boto3 finds no region the client is built in ``AWS_REGION``'s.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from metricskit.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

ENV_AWS_REGION: Final = "AWS_REGION"
"""Read when boto3 resolves no region (botocore itself reads only ``AWS_DEFAULT_REGION``)."""
NO_REGION_HINT: Final = (
    "set AWS_DEFAULT_REGION or AWS_REGION (AWS_DEFAULT_REGION wins when both are set)"
)


def fallback_region(session: boto3.session.Session) -> str | None:
    """``AWS_REGION`` when ``session`` resolves no region of its own, else None (boto3's)."""
    if session.region_name:
        return None
    return os.environ.get(ENV_AWS_REGION, "").strip() or None


def build_client(
    service: str, session: boto3.session.Session | None, config: Config, what: str, how: str
) -> Any:
    """A ``service`` client from ``session`` (default: boto3's chain) in its region.

    ``what`` and ``how`` finish the error raised when no region is found: "no AWS region
    for {what}: set ..., or {how}".
    """
    import boto3
    from botocore.exceptions import NoRegionError

    session = session or boto3.session.Session()
    try:
        # boto3's stubs type client() per service name; this helper serves several.
        make: Any = session.client
        return make(service, region_name=fallback_region(session), config=config)
    except NoRegionError as exc:
        raise ConfigurationError(f"no AWS region for {what}: {NO_REGION_HINT}, or {how}") from exc


DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 2
"""One call and one retry inside botocore; the registry keeps what failed for the next flush."""


def dynamodb_client(
    session: boto3.session.Session | None = None,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> DynamoDBClient:
    """A DynamoDB client with bounded timeouts (for the job table)."""
    try:
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError("the job table needs boto3: pip install boto3") from exc
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    client: DynamoDBClient = build_client(
        "dynamodb", session, config, "the job table", "pass a client"
    )
    return client


def s3_client(session: boto3.session.Session | None = None) -> S3Client:
    """An S3 client from boto3's default chain (retries in botocore's standard mode)."""
    try:
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "s3:// URIs need boto3: install the s3 extra (pip install '.[s3]' in a checkout)"
        ) from exc
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    client: S3Client = build_client("s3", session, config, "S3", "pass s3=client")
    return client
