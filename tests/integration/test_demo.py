"""``make demo`` end to end with a small file, twice: once applying the Terraform module
(skipped with the reason when terraform or its provider mirror is missing, except under CI=true,
where it fails instead) and once with ``--no-terraform``. The summary matches what was produced,
the workers' job registry counted every row, the cost tracker's metrics are read back, the PNG
has drawn series, and no process outlives the demo (Ctrl-C included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 2000
MALFORMED_EVERY = 250


POLLUTED_SHELL = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "METRICSKIT_DIMENSIONS": '{"Team": "not-the-demo"}',
    "METRICSKIT_WORKER_ID": "someone-elses-worker",
    "METRICSKIT_SINK": "off",
    "AWS_PROFILE": "no-such-profile",
    "AWS_DEFAULT_PROFILE": "no-such-profile",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "TF_VAR_namespace": "NotTheDemo",
}
"""A user's shell that exports real infrastructure (nothing listens on port 9: a request that
goes there fails). The demo must run as if none of it were set."""


def start_demo(out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METRICSKIT_"))}
    env.update(POLLUTED_SHELL)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.demo",
            "--rows",
            str(ROWS),
            "--malformed-every",
            str(MALFORMED_EVERY),
            "--out",
            str(out),
            "--no-bar",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        start_new_session=True,  # its own process group, so a timeout can stop all of it
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its exit status.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def worker_pids(stdout: str) -> list[int]:
    line = next(line for line in stdout.splitlines() if line.startswith("worker pids:"))
    return [int(p) for p in line.split(":", 1)[1].split()]


def terraform_or_skip() -> None:
    """Skip (fail under CI=true) unless terraform and the provider mirror are both there.

    The mirror is required whatever ``cli_config()`` says: it takes any existing
    ``TF_CLI_CONFIG_FILE``, and the Makefile always exports terraform/tests/terraformrc, which
    reads the mirror (as tests/integration/test_terraform.py's check does)."""
    from examples import local_terraform

    config_file, why_not = local_terraform.cli_config()
    if config_file is not None and not local_terraform.MIRROR.is_dir():
        config_file, why_not = None, f"the provider mirror {local_terraform.MIRROR} is missing"
    if config_file is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why_not}; CI=true, so the demo's Terraform path must run")
    pytest.skip(str(why_not))


@pytest.mark.parametrize("ci", [None, "true"])
def test_terraform_or_skip_requires_the_provider_mirror(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str | None
) -> None:
    """With the Makefile's TF_CLI_CONFIG_FILE but no mirror, the demo's Terraform path is
    skipped (failed under CI=true) rather than run into a provider it cannot install."""
    from examples import local_terraform

    monkeypatch.setattr(local_terraform, "MIRROR", tmp_path / "no-tf-plugins")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(local_terraform.TERRAFORMRC))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception):
            terraform_or_skip()
    else:
        monkeypatch.setenv("CI", ci)
        with pytest.raises(pytest.fail.Exception, match="CI=true"):
            terraform_or_skip()


@pytest.fixture(scope="module", params=["terraform", "no-terraform"])
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, Any], Path]:
    extra = ["--pace", "4"]
    if request.param == "terraform":
        terraform_or_skip()
    else:
        extra.append("--no-terraform")
    out = tmp_path_factory.mktemp(f"demo-{request.param}")
    process = start_demo(out, *extra)
    try:
        # Above the demo's own bounds (terraform init 120 s + apply 240 s, then the run).
        # Below pytest-timeout's 600 s (pyproject.toml), so this cleanup runs before it fires.
        stdout, stderr = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the demo, terraform and workers alike
        process.communicate()
        raise
    assert process.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provisioned"]["how"] == (
        "terraform" if request.param == "terraform" else "boto3"
    )
    return stdout, summary, out


@pytest.mark.slow
def test_the_summary_matches_what_the_workers_produced(
    demo: tuple[str, dict[str, Any], Path],
) -> None:
    stdout, report, _ = demo
    summary = report["summary"]
    malformed = ROWS // MALFORMED_EVERY
    assert report["malformed"] == malformed
    assert summary["records"] == ROWS - malformed
    assert summary["workers_reported"] == ROWS - malformed
    assert summary["errors"] == malformed
    assert summary["p99_latency_ms"] > 0
    assert summary["p99_latency_ms"] >= summary["avg_latency_ms"]
    assert summary["throughput"] > 0
    assert summary["checkpoints"] >= 2  # at least the final one of each shard
    assert f"{ROWS - malformed:,}" in stdout
    assert f"count_csv_records: {ROWS:,} rows" in stdout
    assert "dashboard" in stdout


@pytest.mark.slow
def test_the_workers_job_registry_counted_every_row(
    demo: tuple[str, dict[str, Any], Path],
) -> None:
    _, report, _ = demo
    summary = report["summary"]
    malformed = ROWS // MALFORMED_EVERY
    assert summary["registry_done"] == ROWS - malformed == summary["records"]
    assert summary["registry_total"] == ROWS  # count_csv_records (header excluded), job-wide
    assert summary["registry_status"] == "completed"
    assert summary["workers_registered"] == 2
    assert summary["worker_seconds"] > 0


@pytest.mark.slow
def test_the_cost_tracker_metrics_are_read_back(demo: tuple[str, dict[str, Any], Path]) -> None:
    _, report, _ = demo
    summary = report["summary"]
    queued = report["cost_explorer_queued"]
    assert report["cost_tracker"]["published_jobs"] == 1
    assert report["cost_tracker"]["ce_status"] == "ok"
    # EstimatedCost = worker-seconds x the fargate:1vcpu:2gb price, from the job item.
    from cost_tracker.pricing import PriceTable

    rate = PriceTable.load({}).hourly_rate("fargate:1vcpu:2gb")
    assert summary["estimated_cost"] == pytest.approx(summary["worker_seconds"] / 3600 * rate)
    assert summary["actual_cost"] == pytest.approx(queued["job"])
    # The job has just ended (current): CostPerMillionRecords divides the estimate, not the
    # lagging actual.
    assert summary["cost_per_million"] == pytest.approx(
        summary["estimated_cost"] / summary["registry_done"] * 1e6
    )


@pytest.mark.slow
def test_the_dashboard_png_has_drawn_series(demo: tuple[str, dict[str, Any], Path]) -> None:
    from matplotlib import image

    stdout, report, _ = demo
    dashboard = report["dashboard"]
    png = Path(dashboard["path"])
    assert png.exists()
    assert str(png.resolve()) in stdout
    pixels = image.imread(png)[:, :, :3]
    assert pixels.shape[:2] == (dashboard["height_px"], dashboard["width_px"])
    widgets = {w["title"]: w for w in dashboard["widgets"]}
    drawn = [w for w in widgets.values() if w["view"] == "timeSeries" and w["series_drawn"]]
    for widget in drawn:
        left, top, right, bottom = widget["box_px"]
        area = pixels[top:bottom, left:right]
        coloured = (area.max(axis=2) - area.min(axis=2)) > 0.25  # not white, grey or black
        assert coloured.sum() > 50, widget["title"]
    # Job-wide progress: malformed rows are errors, not done, so a finished job stays below 100.
    summary = report["summary"]
    progress = 100.0 * summary["registry_done"] / summary["registry_total"]
    assert widgets["Progress (%)"]["values"]["progress"] == pytest.approx(progress)
    if report["provisioned"]["how"] == "terraform":
        _check_deployed_dashboard(report, widgets, {w["title"] for w in drawn})
        return
    assert {"Throughput (records/s, all workers)", "KafkaLatency (ms)", "Records done"} <= {
        w["title"] for w in drawn
    }
    records_done = widgets["Records done"]["values"]["records done (job)"]
    assert records_done == report["summary"]["records"]
    assert widgets["Errors"]["values"]["errors"] == report["summary"]["errors"]


def _check_deployed_dashboard(
    report: dict[str, Any], widgets: dict[str, Any], drawn: set[str]
) -> None:
    """The Terraform module's dashboard, its JobId variable set to the demo's job."""
    summary = report["summary"]
    assert report["dashboard"]["origin"].startswith("deployed dashboard")
    assert {
        "Throughput (records/s, all workers)",
        "Latency (Milliseconds): average and p99",
        "Progress per stage (%)",
        "Job cost over time (USD)",
        "Cost per million records (USD)",
    } <= drawn
    assert widgets["Records done / total"]["values"] == {
        "done": summary["registry_done"],
        "total": summary["registry_total"],
    }
    assert widgets["Errors and retries (sum over 5 min)"]["values"]["errors"] == summary["errors"]
    assert widgets["Progress per stage (%)"]["values"] == {"read": 100.0, "produce": 100.0}
    cost = widgets["Job cost over time (USD)"]["values"]
    assert cost["estimated"] == pytest.approx(summary["estimated_cost"])
    assert cost["actual (Cost Explorer)"] == pytest.approx(summary["actual_cost"])
    monthly = widgets["Month-to-date cost by CostCategory (USD)"]["values"]
    assert monthly["Orchestrator"] == pytest.approx(summary["actual_cost"])
    assert monthly["Training"] > 0


@pytest.mark.slow
def test_the_demo_leaves_no_process_behind(demo: tuple[str, dict[str, Any], Path]) -> None:
    stdout, _, _ = demo
    assert not [pid for pid in worker_pids(stdout) if alive(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_demo_stops_its_workers(tmp_path: Path, stop: signal.Signals) -> None:
    process = start_demo(tmp_path, "--pace", "120", "--no-terraform")
    assert process.stdout is not None
    pids: list[int] = []
    for line in process.stdout:
        if line.startswith("worker pids:"):
            pids = worker_pids(line)
            break
    assert pids, process.stderr.read() if process.stderr else ""
    time.sleep(1.0)
    process.send_signal(stop)
    try:
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert not [pid for pid in pids if alive(pid)]


# --- The demo's environment is its own (no demo run needed) ---------------------------------


def test_local_aws_hides_the_callers_aws_kafka_and_metricskit_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An AWS_PROFILE missing here, service-specific endpoints, a proxy, a Kafka broker and
    metricskit dimensions exported in the shell: boto3 inside LocalAws still reaches the local
    endpoint (no ProfileNotFound, no request to the real S3), the children's environment has
    none of them, and the caller's environment is back afterwards."""
    import uuid

    import boto3

    from examples.local_aws import LocalAws

    for name, value in POLLUTED_SHELL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    before = dict(os.environ)
    bucket = f"isolated-{uuid.uuid4().hex[:8]}"
    with LocalAws() as aws:
        boto3.client("s3").create_bucket(Bucket=bucket)
        assert bucket in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
        boto3.client("dynamodb").list_tables()
        children = aws.environ()
        for environ in (children, dict(os.environ)):
            leaked = [n for n in POLLUTED_SHELL if n in environ and not n.startswith("TF_")]
            assert leaked == []
            assert "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS" not in environ
            assert environ["AWS_ENDPOINT_URL"] == aws.endpoint
            assert environ["AWS_CONFIG_FILE"] == os.devnull
    assert dict(os.environ) == before


def test_the_workers_environment_is_built_not_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workers_running gives its children exactly the environment it is handed: a variable
    of this process that is not in it does not reach them."""
    from examples.demo import workers_running

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    show_env = "import json, os; print(json.dumps({'result': dict(os.environ)}))"
    given = {"PATH": os.environ.get("PATH", ""), "ONLY_THIS": "1"}
    with workers_running([("0/1", [sys.executable, "-c", show_env])], tmp_path, given) as runs:
        runs[0].process.wait(timeout=30)
    assert runs[0].result is not None
    seen = {k: v for k, v in runs[0].result.items() if k in given or k.startswith("KAFKA_")}
    assert seen == given


def test_the_demos_workers_use_the_mock_kafka_and_terraform_gets_no_tf_vars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from examples.demo import Provisioned, worker_command
    from examples.local_terraform import terraform_env

    command = worker_command(
        Provisioned("t", "b"), "k.csv", job_id="j", shard="0/1", rows=10, max_rate=None
    )
    assert "--mock-kafka" in command
    assert "--bootstrap-servers" not in command
    for name, value in POLLUTED_SHELL.items():
        monkeypatch.setenv(name, value)
    env = terraform_env("http://127.0.0.1:5000", "terraformrc")
    assert [n for n in POLLUTED_SHELL if n in env] == []
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"


# --- Provisioning fallbacks and the dashboard variable (no demo run needed) ---------------------


@pytest.fixture
def fresh_names(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A table and bucket name no other test on the shared moto server uses."""
    import uuid

    from examples import demo

    unique = uuid.uuid4().hex[:8]
    monkeypatch.setattr(demo, "TABLE", f"jobs-{unique}")
    monkeypatch.setattr(demo, "BUCKET", f"bucket-{unique}")
    return demo.TABLE, demo.BUCKET


def test_provision_falls_back_to_boto3_when_terraform_is_missing(
    aws: str,
    fresh_names: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    import boto3

    from examples.demo import provision

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    provisioned = provision(aws, job_id="j-1")
    out = capsys.readouterr().out
    assert "terraform: terraform is not on PATH; creating the job table with boto3 instead" in out
    assert "provisioned in " in out
    table, bucket = fresh_names
    assert (provisioned.table, provisioned.bucket, provisioned.dashboard) == (table, bucket, None)
    assert provisioned.how == "boto3"
    assert boto3.client("dynamodb").describe_table(TableName=table)["Table"]["TableName"] == table
    boto3.client("s3").head_bucket(Bucket=bucket)


def test_provision_falls_back_to_boto3_when_the_apply_fails(
    aws: str,
    fresh_names: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from examples import local_terraform
    from examples.demo import provision

    def failing_apply(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise local_terraform.TerraformError("`terraform apply` failed: Error: boom")

    monkeypatch.setattr(local_terraform, "cli_config", lambda: ("terraformrc", None))
    monkeypatch.setattr(local_terraform, "apply_complete_example", failing_apply)
    provisioned = provision(aws, job_id="j-1")
    assert "`terraform apply` failed: Error: boom; creating the job table with boto3" in (
        capsys.readouterr().out
    )
    assert provisioned.how == "boto3"
    assert provisioned.table == fresh_names[0]


def test_no_terraform_skips_it(
    aws: str, fresh_names: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.demo import provision

    assert provision(aws, job_id="j-1", use_terraform=False).how == "boto3"
    assert "skipped (--no-terraform)" in capsys.readouterr().out


def test_the_job_id_variable_rewrites_every_metric_row_but_not_search() -> None:
    from examples.demo import set_property_variables

    search = {"expression": "SEARCH('{NS,JobId} MetricName=\"M\"', 'Sum', 60)", "id": "s"}
    body = {
        "variables": [
            {"type": "property", "property": "JobId", "id": "JobId", "defaultValue": "old"}
        ],
        "widgets": [
            {
                "properties": {
                    "metrics": [
                        ["NS", "M", "JobId", "old", {"stat": "Sum"}],
                        ["NS", "M", "Stage", "read", "JobId", "old"],
                        ["NS", "M", "CostCategory", "Training"],
                        [search],
                    ]
                }
            }
        ],
    }
    rows = set_property_variables(body, {"JobId": "new"})["widgets"][0]["properties"]["metrics"]
    assert rows == [
        ["NS", "M", "JobId", "new", {"stat": "Sum"}],
        ["NS", "M", "Stage", "read", "JobId", "new"],
        ["NS", "M", "CostCategory", "Training"],
        [search],
    ]
    assert body["widgets"][0]["properties"]["metrics"][0][3] == "old"  # a copy was changed
    default = set_property_variables(body, {})["widgets"][0]["properties"]["metrics"]
    assert default[0][3] == "old"


def test_terraform_vars_are_passed_as_hcl_values() -> None:
    from examples.local_terraform import var_arguments

    assert var_arguments({"namespace": "CSVToKafka", "alarm_job_ids": ["j-1"], "n": 5}) == [
        "-var",
        "namespace=CSVToKafka",
        "-var",
        'alarm_job_ids=["j-1"]',
        "-var",
        "n=5",
    ]


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow
@pytest.mark.terraform
def test_an_interrupted_terraform_apply_leaves_no_terraform_behind(tmp_path: Path) -> None:
    """SIGTERM while the AWS provider plugin runs: terraform and its plugins are stopped."""
    terraform_or_skip()
    process = start_demo(tmp_path, "--pace", "120")

    def running(part: str) -> list[int]:
        found = []
        for pid in _descendants(process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if part in command:
                found.append(pid)
        return found

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if running("terraform-provider-aws"):
                break
            time.sleep(0.2)
        assert running("terraform-provider-aws"), "the provider plugin never started"
        started = running("terraform")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert started
    assert not [pid for pid in started if alive(pid)]
