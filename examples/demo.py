"""``make demo``: the CSV-to-Kafka job on a local AWS endpoint, with no account and no network.

1. starts a moto server on 127.0.0.1 and points this process and its children at it, hiding
   the caller's AWS_*, KAFKA_*, METRICSKIT_* and proxy variables (``LocalAws``), so nothing
   exported in the shell sends the demo's rows or metrics to real infrastructure;
2. applies the Terraform module (``terraform/examples/complete``) against it when terraform and
   its provider mirror are there, else creates the job table with boto3 (:func:`provision`);
3. generates a CSV (``--rows``, with a few malformed rows), uploads it, counts its rows once
   (``metricskit.count_csv_records``, cached in the job table);
4. runs two CSV-to-Kafka workers on shards 0/2 and 1/2 of one job, with a progress bar, on
   librdkafka's mock cluster (``--mock-kafka``) and an environment built from that clean copy;
   they join the job registry (METRICSKIT_JOB_TABLE), so progress and the job item are
   job-wide;
5. queues a local Cost Explorer answer and runs the cost tracker handler once, in-process, as
   its schedule would, publishing to the local CloudWatch;
6. prints a summary read back from the local CloudWatch and the job table, and draws the
   dashboard (the deployed one when Terraform made it) as a PNG.

Every process it starts is stopped on the way out, Ctrl-C included.

>>> python -m examples.demo --rows 20000 --pace 5      # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

import metricskit
from examples.csv_to_kafka.cli import STAGE_PRODUCE, STAGE_READ
from examples.csv_to_kafka.worker import LATENCY_METRIC
from examples.dashboard_render import RenderReport, render_dashboard
from examples.demo_dashboard import demo_dashboard_body
from examples.local_aws import LocalAws, MotoStoreSource, statistic
from metricskit import catalog, config, job_table
from metricskit.job_record import JobRecord

NAMESPACE: Final = "CSVToKafka"
NAME_PREFIX: Final = "metricskit-demo"
TABLE: Final = f"{NAME_PREFIX}-jobs"
"""The job table's name when the demo creates it with boto3 (Terraform names it the same)."""
BUCKET: Final = "metricskit-demo"
SHARDS: Final = 2
COMPUTE_PROFILE: Final = "fargate:1vcpu:2gb"
"""What each worker would run on; the cost tracker prices it (cost_tracker/pricing.json)."""
COST_CATEGORY: Final = "Orchestrator"
FLUSH_INTERVAL: Final = 1.0
DASHBOARD_PERIOD: Final = 5
"""Seconds per dashboard point: the run lasts ~20 s and the metrics are high-resolution."""
FARGATE_MINIMUM_SECONDS: Final = 60.0
"""Fargate bills a task for at least one minute: the queued "actual" cost says so."""
ILLUSTRATIVE_MONTH: Final = {"Training": 812.40, "Inference": 120.00, "Storage": 35.20}
"""Made-up month-to-date costs of other categories in the queued Cost Explorer answer."""
STOP_GRACE_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Provisioned:
    """What the demo's workers and the cost tracker need from the infrastructure."""

    table: str
    bucket: str
    dashboard: str | None = None
    """The deployed dashboard's name, when Terraform created one."""
    how: str = "boto3"
    """``terraform`` or ``boto3``."""
    seconds: float = 0.0
    """How long provisioning took."""


def provision(endpoint: str, *, job_id: str, use_terraform: bool = True) -> Provisioned:
    """Create the demo's infrastructure on ``endpoint`` and say how, and how long it took.

    With terraform and its provider mirror (see :mod:`examples.local_terraform`): the module's
    ``examples/complete`` (job table, dashboard, alarms, cost-tracker Lambda from the real
    zip). Without them, or when the apply fails: the job table alone, with boto3 (the demo
    then draws its own dashboard body). The bucket is created with boto3 either way.
    """
    import boto3

    started = time.monotonic()
    provisioned: Provisioned | None = None
    if use_terraform:
        provisioned, why_not = _provision_with_terraform(endpoint, job_id)
        if provisioned is None:
            print(f"terraform: {why_not}; creating the job table with boto3 instead")
    else:
        print("terraform: skipped (--no-terraform); creating the job table with boto3")
    if provisioned is None:
        provisioned = _provision_with_boto3(endpoint)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=provisioned.bucket)
    provisioned = dataclasses.replace(provisioned, seconds=time.monotonic() - started)
    how = {"terraform": "terraform apply of terraform/examples/complete"}.get(
        provisioned.how, provisioned.how
    )
    print(f"provisioned in {provisioned.seconds:.1f} s ({how})")
    return provisioned


def _provision_with_terraform(endpoint: str, job_id: str) -> tuple[Provisioned | None, str]:
    """The module applied on ``endpoint``; (None, why) when Terraform cannot or did not work."""
    import tempfile

    from cost_tracker.package import build_zip
    from examples import local_terraform

    config_file, why_not = local_terraform.cli_config()
    if config_file is None:
        return None, why_not or "terraform cannot run here"
    with tempfile.TemporaryDirectory(prefix="metricskit-demo-zip-") as scratch:
        zip_path, code_sha256 = build_zip(Path(scratch))
        tf_vars = {
            "aws_endpoint_url": endpoint,
            "cost_tracker_zip_path": str(zip_path),
            "namespace": NAMESPACE,
            "name_prefix": NAME_PREFIX,
            "alarm_job_ids": [job_id],
            "stage_names": [STAGE_READ, STAGE_PRODUCE],
            "dashboard_period_seconds": DASHBOARD_PERIOD,
            # The workers run with --high-resolution; a sub-minute period needs it said here.
            "high_resolution": True,
        }
        try:
            outputs = local_terraform.apply_complete_example(
                endpoint, tf_vars, config_file=config_file
            )
        except local_terraform.TerraformError as exc:
            return None, str(exc)
    deployed = outputs.get("cost_tracker_function_code_sha256")
    same = "matches" if deployed == code_sha256 else f"differs ({deployed})"
    print(
        f"terraform: applied; job table {outputs['job_table_name']}, dashboard "
        f"{outputs['dashboard_name']}, {len(outputs.get('alarm_arns', []))} alarms, cost tracker "
        f"{outputs['cost_tracker_function_name']} (CodeSha256 {same} the local build)"
    )
    provisioned = Provisioned(
        table=str(outputs["job_table_name"]),
        bucket=BUCKET,
        dashboard=str(outputs["dashboard_name"]),
        how="terraform",
    )
    return provisioned, ""


def _provision_with_boto3(endpoint: str) -> Provisioned:
    """The job table only (layout: :mod:`metricskit.job_table`)."""
    import boto3

    job_table.create_table(boto3.client("dynamodb", endpoint_url=endpoint), TABLE)
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
    commands: Sequence[tuple[str, list[str]]], log_dir: Path, env: Mapping[str, str]
) -> Iterator[list[WorkerRun]]:
    """Start the worker subprocesses with exactly the environment ``env`` (not this process's:
    see :meth:`LocalAws.environ`); stop whatever still runs on the way out."""
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
                command,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                start_new_session=True,
                env=dict(env),
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


def read_job(table: str, job_id: str) -> JobRecord | None:
    """The job item the workers' registry wrote (done, errors, worker-seconds, status)."""
    from metricskit.registry import JobRegistry

    return JobRegistry(table).get(job_id)


def queue_cost_explorer_answer(
    endpoint: str, job: JobRecord, runs: list[WorkerRun], now: float
) -> dict[str, float]:
    """Queue the one GetCostAndUsage answer the tracker will get from the local endpoint.

    It is made up locally (moto has no bill): the job's "actual" cost is what Fargate would
    bill for its workers (each task at least one minute, at the profile's price), and the
    month-to-date costs of the other categories are illustrative. Returns what was queued.
    """
    import urllib.request

    from cost_tracker.cost_explorer import CATEGORY_TAG, JOB_TAG, METRIC, query_period
    from cost_tracker.pricing import PriceTable

    rate = PriceTable.load({}).hourly_rate(COMPUTE_PROFILE)
    seconds = [float((run.result or {}).get("seconds", 0.0)) for run in runs]
    actual = sum(max(FARGATE_MINIMUM_SECONDS, s) for s in seconds) / 3600.0 * rate
    costs = {f"{JOB_TAG}${job.job_id}|{CATEGORY_TAG}${COST_CATEGORY}": actual}
    costs.update(
        {f"{JOB_TAG}$|{CATEGORY_TAG}${name}": amount for name, amount in ILLUSTRATIVE_MONTH.items()}
    )
    start, end = query_period(now, [job.started_at])
    answer = {
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": start, "End": end},
                "Total": {},
                "Groups": [
                    {
                        "Keys": keys.split("|"),
                        "Metrics": {METRIC: {"Amount": f"{amount:.10f}", "Unit": "USD"}},
                    }
                    for keys, amount in costs.items()
                ],
                "Estimated": True,
            }
        ],
        "DimensionValueAttributes": [],
    }
    request = urllib.request.Request(
        f"{endpoint}/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": [answer]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        reply.read()
    return {"job": actual, **ILLUSTRATIVE_MONTH}


def run_cost_tracker(provisioned: Provisioned) -> dict[str, Any]:
    """The cost tracker's handler, in-process, as its schedule would run it; metrics go to the
    local CloudWatch (inside Lambda they would go out as EMF on stdout)."""
    from cost_tracker.handler import run as run_tracker
    from metricskit.sinks.cloudwatch import CloudWatchSink

    sink = CloudWatchSink()
    try:
        event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        # The function's environment as the module sets it (MonthlyCost goes to this namespace).
        environ = {**os.environ, config.ENV_NAMESPACE: NAMESPACE}
        return run_tracker(event, table=provisioned.table, sink=sink, environ=environ)
    finally:
        sink.shutdown()


@dataclass
class Summary:
    """The demo's closing table: metrics read back from the local CloudWatch, and the job
    item the workers' registry wrote."""

    records: float
    workers_reported: int
    registry_done: float | None
    registry_total: float | None
    registry_status: str | None
    workers_registered: int
    throughput: float
    p99_latency_ms: float | None
    avg_latency_ms: float | None
    errors: float
    retries: float
    checkpoints: float
    estimated_cost: float | None
    actual_cost: float | None
    cost_per_million: float | None
    worker_seconds: float


def summarize(
    source: MotoStoreSource,
    job_id: str,
    *,
    runs: list[WorkerRun],
    job: JobRecord | None,
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
    return Summary(
        records=records,
        workers_reported=sum(int((r.result or {}).get("delivered", 0)) for r in runs),
        registry_done=None if job is None else job.done,
        registry_total=None if job is None else job.total,
        registry_status=None if job is None else job.status,
        workers_registered=0 if job is None else job.workers,
        throughput=records / busiest if busiest else 0.0,
        p99_latency_ms=statistic(latencies, "p99") if latencies.size else None,
        avg_latency_ms=statistic(latencies, "Average") if latencies.size else None,
        errors=total(catalog.ERROR_COUNT, "Sum") or 0.0,
        retries=total(catalog.RETRY_COUNT, "Sum") or 0.0,
        checkpoints=total(catalog.CHECKPOINT_COUNT, "Sum") or 0.0,
        # Published by the cost tracker (Maximum: it publishes one value per run).
        estimated_cost=total(catalog.ESTIMATED_COST, "Maximum"),
        actual_cost=total(catalog.ACTUAL_COST, "Maximum"),
        cost_per_million=total(catalog.COST_PER_MILLION_RECORDS, "Maximum"),
        worker_seconds=0.0 if job is None else job.worker_seconds or 0.0,
    )


def print_summary(summary: Summary, *, pace: float) -> None:
    def money(value: float | None) -> str:
        return "n/a (the cost tracker published none)" if value is None else f"${value:.6f}"

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} ms"

    paced = f"  (paced over ~{pace:g} s; --pace 0 runs flat out)" if pace else ""
    registry = "n/a"
    if summary.registry_done is not None:
        registry = (
            f"done {summary.registry_done:,.0f} of {summary.registry_total or 0:,.0f}, "
            f"status {summary.registry_status}, {summary.workers_registered} workers, "
            f"{summary.worker_seconds:.1f} worker-s"
        )
    # The tracker divides the estimate while a job is current (the demo's just finished).
    basis = "estimated" if summary.estimated_cost is not None else "actual"
    rows = [
        ("records", f"{summary.records:,.0f}  (workers reported {summary.workers_reported:,})"),
        ("job registry", registry),
        ("throughput", f"{summary.throughput:,.0f} records/s" + paced),
        ("Kafka latency p99", ms(summary.p99_latency_ms)),
        ("Kafka latency avg", ms(summary.avg_latency_ms)),
        ("errors", f"{summary.errors:,.0f}"),
        ("retries / checkpoints", f"{summary.retries:,.0f} / {summary.checkpoints:,.0f}"),
        ("estimated cost", f"{money(summary.estimated_cost)}  ({COMPUTE_PROFILE})"),
        ("actual cost", f"{money(summary.actual_cost)}  (queued local Cost Explorer answer)"),
        ("cost per million records", f"{money(summary.cost_per_million)}  (from the {basis} cost)"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    print("Summary (read back from the local CloudWatch and the job table)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def dashboard_body(provisioned: Provisioned, job_id: str) -> tuple[dict[str, Any], str]:
    """The deployed dashboard's body (its JobId variable set to ``job_id``) when there is one,
    else the demo's own."""
    import boto3

    if provisioned.dashboard:
        answer = boto3.client("cloudwatch").get_dashboard(DashboardName=provisioned.dashboard)
        body: dict[str, Any] = json.loads(answer["DashboardBody"])
        body = set_property_variables(body, {catalog.JOB_ID: job_id})
        return body, f"deployed dashboard {provisioned.dashboard!r}"
    body = demo_dashboard_body(
        NAMESPACE, job_id, latency_metric=LATENCY_METRIC, period=DASHBOARD_PERIOD
    )
    return body, "the demo's own dashboard body (no deployed dashboard)"


def set_property_variables(body: dict[str, Any], chosen: dict[str, str]) -> dict[str, Any]:
    """What the console does when a ``property`` dashboard variable is set: every metric row
    that has the variable's dimension gets the chosen value (a variable not in ``chosen``
    keeps its ``defaultValue``). SEARCH expressions are left alone, as in the console.

    >>> body = {"variables": [{"type": "property", "property": "JobId", "id": "JobId",
    ...                        "defaultValue": "a"}],
    ...         "widgets": [{"properties": {"metrics": [["NS", "M", "JobId", "a", {}]]}}]}
    >>> set_property_variables(body, {"JobId": "b"})["widgets"][0]["properties"]["metrics"]
    [['NS', 'M', 'JobId', 'b', {}]]
    """
    values: dict[str, str] = {}
    for variable in body.get("variables", []):
        if variable.get("type") != "property":
            continue
        dimension = str(variable.get("property"))
        value = chosen.get(str(variable.get("id")), chosen.get(dimension))
        values[dimension] = str(value if value is not None else variable.get("defaultValue"))
    result = copy.deepcopy(body)
    for widget in result.get("widgets", []):
        for row in widget.get("properties", {}).get("metrics", []):
            # [namespace, name, dim1, value1, ..., {options}]: dimension names at even indexes.
            for index in range(2, len(row) - 1, 2):
                if isinstance(row[index], str) and row[index] in values:
                    row[index + 1] = values[row[index]]
    return result


def worker_command(
    provisioned: Provisioned,
    key: str,
    *,
    job_id: str,
    shard: str,
    rows: int,
    max_rate: float | None,
) -> list[str]:
    """One worker of the job. It joins the job registry through METRICSKIT_JOB_TABLE (see
    :func:`workers_running`) and takes the file's row count from the job table's cache. Its
    Kafka is librdkafka's in-process mock cluster (``--mock-kafka``), whatever
    ``KAFKA_BOOTSTRAP_SERVERS`` says."""
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
        "--count-rows",
        "--compute-profile",
        COMPUTE_PROFILE,
        "--topic",
        "orders",
        "--mock-kafka",
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
    p.add_argument(
        "--no-terraform",
        action="store_true",
        help="create the job table with boto3 instead of applying the Terraform module",
    )
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
    provisioned = provision(aws.endpoint, job_id=job_id, use_terraform=not args.no_terraform)
    csv_path = out / "orders.csv"
    malformed = write_csv(csv_path, args.rows, malformed_every=args.malformed_every)
    key = "input/orders.csv"
    uri = f"s3://{provisioned.bucket}/{key}"
    boto3.client("s3").upload_file(str(csv_path), provisioned.bucket, key)
    print(f"uploaded {uri}: {args.rows:,} rows ({malformed} malformed)")
    # Counted once here and cached in the job table by ETag: the workers' --count-rows finds it.
    rows = metricskit.count_csv_records(uri, table=provisioned.table)
    print(f"count_csv_records: {rows:,} rows (after the header), cached in the job table")
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
    # The workers' environment is built, not inherited: the caller's KAFKA_*, METRICSKIT_*,
    # AWS_* and proxy settings stay out (LocalAws.environ), the job table is the demo's.
    worker_env = {**aws.environ(), config.ENV_JOB_TABLE: provisioned.table}
    with workers_running(commands, out, env=worker_env) as runs:
        print("worker pids: " + " ".join(str(r.process.pid) for r in runs), flush=True)
        watch(runs, args.rows, bar=not args.no_bar)
    failed = [r for r in runs if r.process.returncode != 0 or r.result is None]
    for run in failed:
        print(
            f"worker {run.shard} exited with {run.process.returncode}; log: {run.log_path}",
            file=sys.stderr,
        )
    job = read_job(provisioned.table, job_id)
    queued: dict[str, float] = {}
    if job is not None:
        queued = queue_cost_explorer_answer(aws.endpoint, job, runs, time.time())
        print(
            f"Cost Explorer: queued a local answer (moto has no bill): this job "
            f"${queued['job']:.6f} (Fargate bills each task at least a minute); "
            + ", ".join(f"{name} ${queued[name]:,.2f}" for name in ILLUSTRATIVE_MONTH)
            + " month to date (illustrative)"
        )
    tracker = run_cost_tracker(provisioned)
    print(
        f"cost tracker: {tracker['published_jobs']} job(s), {tracker['metrics']} metrics to the "
        f"local CloudWatch, Cost Explorer {tracker['ce_status']}"
        + ("" if tracker["export_ok"] else " (export FAILED)")
    )
    window_end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    source = MotoStoreSource()
    summary = summarize(
        source,
        job_id,
        runs=runs,
        job=read_job(provisioned.table, job_id),
        start=window_start,
        end=window_end,
    )
    print_summary(summary, pace=args.pace)
    body, origin = dashboard_body(provisioned, job_id)
    (out / "dashboard_body.json").write_text(json.dumps(body, indent=2), encoding="utf-8")
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
        extra={
            "provisioned": asdict(provisioned),
            "cost_explorer_queued": queued,
            "cost_tracker": tracker,
            "seconds": round(time.monotonic() - started, 1),
        },
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
    extra: dict[str, Any],
) -> None:
    payload = {
        **extra,
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
