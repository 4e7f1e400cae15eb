"""boto3 clients for the job table and S3, built only when the caller passed none.

Short timeouts and few retries: the job registry runs on the flusher thread next to metric
delivery, and a hung DynamoDB endpoint must not hold that thread for botocore's default
minute. Endpoints come from boto3's own ``AWS_ENDPOINT_URL*`` variables (moto, LocalStack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metricskit.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

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
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError("the job table needs boto3: pip install boto3") from exc
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    try:
        return (session or boto3.session.Session()).client("dynamodb", config=config)
    except NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region for the job table: set AWS_REGION (or AWS_DEFAULT_REGION), "
            "or pass a client"
        ) from exc


def s3_client(session: boto3.session.Session | None = None) -> S3Client:
    """An S3 client from boto3's default chain (retries in botocore's standard mode)."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError("s3:// URIs need boto3: pip install 'metricskit[s3]'") from exc
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    try:
        return (session or boto3.session.Session()).client("s3", config=config)
    except NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region for S3: set AWS_REGION (or AWS_DEFAULT_REGION), or pass s3=client"
        ) from exc
