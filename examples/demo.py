"""``make demo``: the CSV-to-Kafka job on a local AWS endpoint, with no account and no network.

1. starts a moto server on 127.0.0.1 and points this process and its children at it;
2. provisions the job table and a bucket (:func:`provision`);
3. generates a CSV (``--rows``, with a few malformed rows) and uploads it;
4. runs two CSV-to-Kafka workers on shards 0/2 and 1/2 of one job, with a progress bar;
5. runs the cost tracker handler once, as its schedule would (when it is installed);
6. prints a summary read back from the local CloudWatch and draws the dashboard as a PNG.

Every process it starts is stopped on the way out, Ctrl-C included.

>>> python -m examples.demo --rows 20000 --pace 5      # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

from examples.csv_to_kafka.worker import LATENCY_METRIC
from examples.dashboard_render import RenderReport, render_dashboard
from examples.demo_dashboard import demo_dashboard_body
from examples.local_aws import LocalAws, MotoStoreSource, statistic
from metricskit import catalog, config, job_table

NAMESPACE: Final = "CSVToKafka"
TABLE: Final = "metricskit-jobs"
BUCKET: Final = "metricskit-demo"
SHARDS: Final = 2
COMPUTE_PROFILE: Final = "fargate:1vcpu:2gb"
HOURLY_RATE: Final = 0.04937
"""USD per worker-hour of Fargate 1 vCPU + 2 GB in us-east-1 (0.04048 + 2 x 0.004445)."""
FLUSH_INTERVAL: Final = 1.0
DASHBOARD_PERIOD: Final = 2
STOP_GRACE_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Provisioned:
    """What the demo's workers and the cost tracker need from the infrastructure."""

    table: str
    bucket: str
    dashboard: str | None = None
    """The deployed dashboard's name, when Terraform created one."""


def provision(endpoint: str) -> Provisioned:
    """Create the demo's infrastructure on ``endpoint`` (boto3 honours AWS_ENDPOINT_URL).

    For now the job table (layout: :mod:`metricskit.job_table`) and the bucket directly
    with boto3; applying ``terraform/examples/complete`` against the endpoint belongs here.
    """
    import boto3

    boto3.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": job_table.HASH_KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": job_table.HASH_KEY, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    return Provisioned(table=TABLE, bucket=BUCKET)


def write_csv(path: Path, rows: int, *, malformed_every: int, seed: int = 7) -> int:
    """Write ``rows`` data rows (every ``malformed_every``-th one malformed); returns how many
    are malformed."""
    rng = random.Random(seed)
    malformed = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("order_id,created_at,customer,amount,currency\n")
        for row in range(rows):
            if malformed_every and row % malformed_every == malformed_every - 1:
                out.write(f"{row},broken row\n")
                malformed += 1
                continue
            amount = rng.randrange(100, 100_000) / 100
            out.write(f"{row},{1_700_000_000 + row},customer-{rng.randrange(5000)},{amount},EUR\n")
    return malformed


@dataclass
class WorkerRun:
    """One worker subprocess and what it reported."""

    shard: str
    process: subprocess.Popen[str]
    log_path: Path
    progress: dict[str, int] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    reader: threading.Thread | None = None

    def read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "progress" in message:
                self.progress = message["progress"]
            elif "result" in message:
                self.result = message["result"]

    @property
    def handled(self) -> int:
        if self.result is not None:
            return int(self.result["delivered"]) + int(self.result["failed"])
        return int(self.progress.get("handled", 0))


@contextlib.contextmanager
def workers_running(
    commands: Sequence[tuple[str, list[str]]], log_dir: Path
) -> Iterator[list[WorkerRun]]:
    """Start the worker subprocesses; stop whatever still runs on the way out."""
    runs: list[WorkerRun] = []
    logs: list[IO[str]] = []
    try:
        for shard, command in commands:
            log_path = log_dir / f"worker-{shard.replace('/', 'of')}.log"
            log_file = log_path.open("w", encoding="utf-8")
            logs.append(log_file)
            # A new session: Ctrl-C reaches the demo only, which stops the workers itself
            # (SIGTERM first, so they write a checkpoint and flush their metrics).
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log_file, text=True, start_new_session=True
            )
            run = WorkerRun(shard, process, log_path)
            run.reader = threading.Thread(target=run.read_stdout, daemon=True)
            run.reader.start()
            runs.append(run)
        yield runs
    finally:
        for run in runs:
            if run.process.poll() is None:
                run.process.send_signal(signal.SIGTERM)
        for run in runs:
            try:
                run.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
            if run.reader is not None:
                run.reader.join(timeout=5)
            if run.process.stdout is not None:
                run.process.stdout.close()
        for log in logs:
            log.close()


def watch(runs: list[WorkerRun], total: int, *, bar: bool) -> None:
    """Show a progress bar until every worker has exited."""
    from tqdm import tqdm

    with tqdm(
        total=total,
        unit="rows",
        unit_scale=True,
        disable=not bar,
        desc="csv->kafka",
        file=sys.stderr,
    ) as progress:
        while True:
            done = sum(run.handled for run in runs)
            progress.update(done - progress.n)
            if all(run.process.poll() is not None for run in runs):
                for run in runs:
                    if run.reader is not None:
                        run.reader.join(timeout=5)
                progress.update(sum(run.handled for run in runs) - progress.n)
                return
            time.sleep(0.2)


def register_job(table: str, job_id: str, total: int) -> None:
    """The job item the cost tracker reads (a job registry would write it; see job_table)."""
    import boto3

    now = int(time.time())
    boto3.client("dynamodb").update_item(
        TableName=table,
        Key={job_table.HASH_KEY: {"S": job_id}},
        UpdateExpression="SET #t = :t, #ns = :ns, #st = :st, #total = :total, #start = :now, "
        "#profile = :profile, #rate = :rate",
        ExpressionAttributeNames={
            "#t": job_table.ITEM_TYPE,
            "#ns": job_table.NAMESPACE,
            "#st": job_table.STATUS,
            "#total": job_table.TOTAL,
            "#start": job_table.STARTED_AT,
            "#profile": job_table.COMPUTE_PROFILE,
            "#rate": job_table.HOURLY_RATE,
        },
        ExpressionAttributeValues={
            ":t": {"S": job_table.TYPE_JOB},
            ":ns": {"S": NAMESPACE},
            ":st": {"S": job_table.STATUS_RUNNING},
            ":total": {"N": str(total)},
            ":now": {"N": str(now)},
            ":profile": {"S": COMPUTE_PROFILE},
            ":rate": {"N": str(HOURLY_RATE)},
        },
    )


def finish_job(table: str, job_id: str, runs: list[WorkerRun], ok: bool) -> float:
    """Mark the job finished; add done/worker_seconds unless a job registry already did.
    Returns the job's worker-seconds."""
    import boto3

    client = boto3.client("dynamodb")
    key = {job_table.HASH_KEY: {"S": job_id}}
    item = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})
    seconds = sum(float((r.result or {}).get("seconds", 0.0)) for r in runs)
    names = {"#st": job_table.STATUS, "#fin": job_table.FINISHED_AT}
    values: dict[str, Any] = {
        ":st": {"S": job_table.STATUS_COMPLETED if ok else job_table.STATUS_FAILED},
        ":fin": {"N": str(int(time.time()))},
    }
    expression = "SET #st = :st, #fin = :fin"
    if job_table.WORKER_SECONDS in item:
        seconds = float(item[job_table.WORKER_SECONDS]["N"])
    else:
        names.update(
            {
                "#ws": job_table.WORKER_SECONDS,
                "#done": job_table.DONE,
                "#err": job_table.ERRORS,
                "#workers": job_table.WORKERS,
            }
        )
        values.update(
            {
                ":ws": {"N": f"{seconds:.3f}"},
                ":done": {"N": str(sum(int((r.result or {}).get("delivered", 0)) for r in runs))},
                ":err": {"N": str(sum(int((r.result or {}).get("failed", 0)) for r in runs))},
                ":workers": {"N": str(len(runs))},
            }
        )
        expression += " ADD #ws :ws, #done :done, #err :err, #workers :workers"
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
    return seconds


def run_cost_tracker(provisioned: Provisioned) -> str:
    """Run the cost tracker's handler in-process, as its schedule would. Returns what happened."""
    try:
        handler = importlib.import_module("cost_tracker.handler")
    except ImportError:
        return "skipped: cost_tracker.handler is not installed on this branch yet"
    os.environ.setdefault(config.ENV_JOB_TABLE, provisioned.table)
    os.environ.setdefault(config.ENV_NAMESPACE, NAMESPACE)
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    try:
        answer = handler.handler(event, None)
    except Exception as exc:  # the demo goes on to its summary either way
        return f"failed: {exc!r}"
    return f"ran: {answer!r}"


@dataclass
class Summary:
    """The demo's closing table: read back from the local CloudWatch."""

    records: float
    workers_reported: int
    throughput: float
    p99_latency_ms: float | None
    avg_latency_ms: float | None
    errors: float
    retries: float
    checkpoints: float
    estimated_cost: float | None
    cost_source: str
    cost_per_million: float | None
    worker_seconds: float


def summarize(
    source: MotoStoreSource,
    job_id: str,
    *,
    runs: list[WorkerRun],
    worker_seconds: float,
    start: dt.datetime,
    end: dt.datetime,
) -> Summary:
    dims = ((catalog.JOB_ID, job_id),)

    def total(name: str, stat: str) -> float | None:
        values = source.raw_values(NAMESPACE, name, dims, start=start, end=end)
        return statistic(values, stat) if values.size else None

    records = total(catalog.RECORDS_PROCESSED, "Sum") or 0.0
    latencies = source.raw_values(NAMESPACE, LATENCY_METRIC, dims, start=start, end=end)
    busiest = max((float((r.result or {}).get("seconds", 0.0)) for r in runs), default=0.0)
    estimated = total(catalog.ESTIMATED_COST, "Maximum")
    cost_source = "cost tracker (CloudWatch EstimatedCost)"
    if estimated is None:
        estimated = worker_seconds / 3600 * HOURLY_RATE
        cost_source = f"local estimate: {worker_seconds:.1f} worker-s x ${HOURLY_RATE}/h"
    per_million = total(catalog.COST_PER_MILLION_RECORDS, "Maximum")
    if per_million is None and records:
        per_million = estimated / records * 1e6
    return Summary(
        records=records,
        workers_reported=sum(int((r.result or {}).get("delivered", 0)) for r in runs),
        throughput=records / busiest if busiest else 0.0,
        p99_latency_ms=statistic(latencies, "p99") if latencies.size else None,
        avg_latency_ms=statistic(latencies, "Average") if latencies.size else None,
        errors=total(catalog.ERROR_COUNT, "Sum") or 0.0,
        retries=total(catalog.RETRY_COUNT, "Sum") or 0.0,
        checkpoints=total(catalog.CHECKPOINT_COUNT, "Sum") or 0.0,
        estimated_cost=estimated,
        cost_source=cost_source,
        cost_per_million=per_million,
        worker_seconds=worker_seconds,
    )


def print_summary(summary: Summary, *, pace: float) -> None:
    def money(value: float | None) -> str:
        return "n/a" if value is None else f"${value:.6f}"

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} ms"

    paced = f"  (paced over ~{pace:g} s; --pace 0 runs flat out)" if pace else ""
    rows = [
        ("records", f"{summary.records:,.0f}  (workers reported {summary.workers_reported:,})"),
        ("throughput", f"{summary.throughput:,.0f} records/s" + paced),
        ("Kafka latency p99", ms(summary.p99_latency_ms)),
        ("Kafka latency avg", ms(summary.avg_latency_ms)),
        ("errors", f"{summary.errors:,.0f}"),
        ("retries / checkpoints", f"{summary.retries:,.0f} / {summary.checkpoints:,.0f}"),
        ("estimated cost", f"{money(summary.estimated_cost)}  ({summary.cost_source})"),
        ("cost per million records", money(summary.cost_per_million)),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    print("Summary (read back from the local CloudWatch)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def dashboard_body(provisioned: Provisioned, job_id: str) -> tuple[dict[str, Any], str]:
    """The deployed dashboard's body when there is one, else the demo's own."""
    import boto3

    if provisioned.dashboard:
        answer = boto3.client("cloudwatch").get_dashboard(DashboardName=provisioned.dashboard)
        body: dict[str, Any] = json.loads(answer["DashboardBody"])
        return body, f"deployed dashboard {provisioned.dashboard!r}"
    body = demo_dashboard_body(
        NAMESPACE, job_id, latency_metric=LATENCY_METRIC, period=DASHBOARD_PERIOD
    )
    return body, "the demo's own dashboard body (no deployed dashboard)"


def worker_command(
    provisioned: Provisioned,
    key: str,
    *,
    job_id: str,
    shard: str,
    rows: int,
    max_rate: float | None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "examples.csv_to_kafka",
        f"s3://{provisioned.bucket}/{key}",
        "--job-id",
        job_id,
        "--shard",
        shard,
        "--namespace",
        NAMESPACE,
        "--table",
        provisioned.table,
        "--total-rows",
        str(rows),
        "--topic",
        "orders",
        "--sink",
        "cloudwatch",
        "--flush-interval",
        str(FLUSH_INTERVAL),
        "--high-resolution",
        "--checkpoint-every",
        str(max(1000, rows // 20)),
        "--progress-lines",
        "--progress-every",
        "0.2",
    ]
    if max_rate:
        command += ["--max-rate", f"{max_rate:.1f}"]
    return command


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=200_000, help="CSV data rows (default 200000)")
    p.add_argument(
        "--pace",
        type=float,
        default=20.0,
        help="spread the load over about this many seconds so the charts have a "
        "shape (0 = as fast as possible; default 20)",
    )
    p.add_argument(
        "--malformed-every",
        type=int,
        default=5_000,
        help="every Nth row is malformed (0 = none; default 5000)",
    )
    p.add_argument("--out", default="out/demo", help="folder for the CSV, logs, PNG, summary")
    p.add_argument("--no-bar", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.rows < 1 or args.pace < 0 or args.malformed_every < 0:
        p.error("--rows must be >= 1, --pace and --malformed-every >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    job_id = f"demo-{int(time.time())}"
    started = time.monotonic()
    # SIGTERM (a CI timeout, `kill`) cleans up like Ctrl-C; by default it would skip finally.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with LocalAws() as aws:
            return _run(args, out, job_id, aws, started)
    except KeyboardInterrupt:
        print("\ninterrupted: workers and the local endpoint were stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, out: Path, job_id: str, aws: LocalAws, started: float) -> int:
    import boto3

    print(f"local AWS endpoint: {aws.endpoint} (moto; no account, no network)")
    provisioned = provision(aws.endpoint)
    csv_path = out / "orders.csv"
    malformed = write_csv(csv_path, args.rows, malformed_every=args.malformed_every)
    key = "input/orders.csv"
    boto3.client("s3").upload_file(str(csv_path), provisioned.bucket, key)
    print(f"uploaded s3://{provisioned.bucket}/{key}: {args.rows:,} rows ({malformed} malformed)")
    register_job(provisioned.table, job_id, args.rows)
    window_start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    max_rate = args.rows / SHARDS / args.pace if args.pace else None
    commands = [
        (
            f"{i}/{SHARDS}",
            worker_command(
                provisioned,
                key,
                job_id=job_id,
                shard=f"{i}/{SHARDS}",
                rows=args.rows,
                max_rate=max_rate,
            ),
        )
        for i in range(SHARDS)
    ]
    print(f"job {job_id}: {SHARDS} workers (shards {', '.join(s for s, _ in commands)})")
    with workers_running(commands, out) as runs:
        print("worker pids: " + " ".join(str(r.process.pid) for r in runs), flush=True)
        watch(runs, args.rows, bar=not args.no_bar)
    failed = [r for r in runs if r.process.returncode != 0 or r.result is None]
    for run in failed:
        print(
            f"worker {run.shard} exited with {run.process.returncode}; log: {run.log_path}",
            file=sys.stderr,
        )
    worker_seconds = finish_job(provisioned.table, job_id, runs, ok=not failed)
    print(f"cost tracker: {run_cost_tracker(provisioned)}")
    window_end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    source = MotoStoreSource()
    summary = summarize(
        source, job_id, runs=runs, worker_seconds=worker_seconds, start=window_start, end=window_end
    )
    print_summary(summary, pace=args.pace)
    body, origin = dashboard_body(provisioned, job_id)
    report = render_dashboard(
        body,
        source,
        out / "dashboard.png",
        start=window_start,
        end=window_end,
        title=f"{NAMESPACE} / {job_id} (local)",
    )
    _write_report(
        out / "summary.json",
        job_id=job_id,
        rows=args.rows,
        malformed=malformed,
        summary=summary,
        report=report,
        origin=origin,
    )
    print(f"\ndashboard ({origin}): {report.path.resolve()}")
    print(f"finished in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


def _write_report(
    path: Path,
    *,
    job_id: str,
    rows: int,
    malformed: int,
    summary: Summary,
    report: RenderReport,
    origin: str,
) -> None:
    payload = {
        "job_id": job_id,
        "rows": rows,
        "malformed": malformed,
        "summary": asdict(summary),
        "dashboard": {
            "path": str(report.path),
            "origin": origin,
            "width_px": report.width_px,
            "height_px": report.height_px,
            "widgets": [asdict(w) for w in report.widgets],
        },
    }
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
