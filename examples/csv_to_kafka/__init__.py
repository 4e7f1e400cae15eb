"""CSV-to-Kafka loader instrumented with metricskit (``python -m examples.csv_to_kafka``).

>>> from examples.csv_to_kafka import Settings, run                   # doctest: +SKIP
>>> with metricskit.Job("load-1", namespace="CSVToKafka") as job:       # doctest: +SKIP
...     run(Settings("s3://bucket/rows.csv", topic="rows"), job)
"""

from examples.csv_to_kafka.checkpoints import DynamoCheckpoints, NoCheckpoints
from examples.csv_to_kafka.sharding import Shard
from examples.csv_to_kafka.worker import RunResult, Settings, count_rows, run

__all__ = [
    "DynamoCheckpoints",
    "NoCheckpoints",
    "RunResult",
    "Settings",
    "Shard",
    "count_rows",
    "run",
]
