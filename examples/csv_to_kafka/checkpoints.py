"""Checkpoints in the job table: the index of the last row a shard committed.

Layout (``metricskit.job_table``): item ``checkpoint#<job_id>#<shard>`` with ``position`` =
the 0-based index of the last data row up to which every row's fate is settled (delivered to
Kafka or counted as an error; never at or past a row Kafka did not deliver),
``updated_at`` = epoch seconds. The worker writes it only after ``producer.flush()`` returned
with nothing pending, so a restarted worker that resumes after ``position`` loses no row;
rows after the last checkpoint may be produced twice (at-least-once). When the shard completes
the worker sets ``expires_at`` on it (``METRICSKIT_FINISHED_JOB_RETENTION_DAYS``), so the
table's TTL deletes it with the job; a later save (a rerun) writes the item anew, without it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from metricskit import aws_clients, config, job_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger("examples.csv_to_kafka")


class Checkpoints(Protocol):
    def load(self) -> int | None:
        """The last committed row index, or None to start from the first row."""

    def save(self, position: int) -> bool:
        """Commit ``position``; False when it could not be stored (the worker carries on)."""

    def expire(self, finished_at: float) -> bool:
        """The shard completed at ``finished_at``: let the table's TTL delete its checkpoint
        after the retention. False when that could not be stored (it is then kept)."""


class NoCheckpoints:
    """No job table: every run starts from the first row."""

    def load(self) -> int | None:
        return None

    def save(self, position: int) -> bool:
        return True

    def expire(self, finished_at: float) -> bool:
        return True


class DynamoCheckpoints:
    """Checkpoints of one shard of one job in the DynamoDB job table.

    >>> store = DynamoCheckpoints("metricskit-jobs", "load-42", "0/2")   # doctest: +SKIP
    >>> store.save(9_999); store.load()                                    # doctest: +SKIP
    9999
    """

    def __init__(
        self,
        table: str,
        job_id: str,
        shard: str,
        *,
        client: DynamoDBClient | None = None,
        retention_days: float | None = None,
    ) -> None:
        # None: METRICSKIT_FINISHED_JOB_RETENTION_DAYS, like the job registry; 0: keep forever.
        self._retention_days = (
            config.env_retention_days() if retention_days is None else retention_days
        )
        if client is None:
            # metricskit's client: bounded timeouts, and AWS_REGION when nothing else sets one.
            client = aws_clients.dynamodb_client(max_attempts=5)
        self._client = client
        self._table = table
        self._key = {job_table.HASH_KEY: {"S": job_table.checkpoint_key(job_id, shard)}}

    def load(self) -> int | None:
        # A failure here propagates: starting over silently would re-send the whole shard.
        item = self._client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True)
        found = item.get("Item", {}).get(job_table.POSITION)
        return None if found is None else int(found["N"])

    def save(self, position: int) -> bool:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **self._key,
                    job_table.ITEM_TYPE: {"S": job_table.TYPE_CHECKPOINT},
                    job_table.POSITION: {"N": str(position)},
                    job_table.UPDATED_AT: {"N": str(int(time.time()))},
                },
            )
        except Exception as exc:  # the next checkpoint covers this one; keep producing
            logger.warning("checkpoint %d not stored (%s); will try at the next one", position, exc)
            return False
        return True

    def expire(self, finished_at: float) -> bool:
        expires_at = job_table.expires_at(finished_at, self._retention_days)
        if expires_at is None:
            return True
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET #exp = :exp",
                # Never create a checkpoint item that holds nothing but an expiry.
                ConditionExpression=f"attribute_exists({job_table.HASH_KEY})",
                ExpressionAttributeNames={"#exp": job_table.EXPIRES_AT},
                ExpressionAttributeValues={":exp": {"N": str(expires_at)}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return True  # no checkpoint was ever stored: nothing to expire
        except Exception as exc:  # the job is done; the checkpoint merely stays
            logger.warning("checkpoint expiry not stored (%s); it is kept", exc)
            return False
        return True
