"""The Terraform module: formatted, valid, applies against moto, deploys a dashboard and alarms
that only name catalog metrics, plans no changes the second time, and destroys cleanly.

The tests marked ``terraform`` skip (with the reason) when terraform or the provider mirror is
missing, except under CI=true, where they fail instead. The others need neither.
One apply per module: the ``_deployment`` fixture is module scoped and the last test destroys;
``deployed`` applies again for any test that runs after it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from cost_tracker.cost_explorer import CACHE_NAME, UNTAGGED
from metricskit import config
from metricskit import job_table as jt

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"
EXAMPLE = "examples/complete"
MIRROR = Path("/opt/tf-plugins")
TERRAFORMRC = TF_DIR / "tests" / "terraformrc"
GUIDE = REPO / "docs" / "DASHBOARD_GUIDE.md"
SNAPSHOT = Path(__file__).with_name("terraform_snapshot.json")
REGION = "us-east-1"
GRID_COLUMNS = 24

CATALOG: dict[str, Any] = json.loads((REPO / "metricskit" / "catalog.json").read_text("utf-8"))
STANDARD = {m["name"]: m for m in CATALOG["metrics"]}
SELF = {m["name"]: m for m in CATALOG["self_metrics"]}
DISTRIBUTION = CATALOG["distribution_example"]
JOB_DIM = CATALOG["dimensions"]["job"]


# --- Validators of a dashboard body (pure functions, tested on bad bodies below) ---------------


def _entry_parts(entry: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Split a metrics-array row into its positional strings and its options object."""
    if entry and isinstance(entry[-1], dict):
        return entry[:-1], entry[-1]
    return entry, {}


def _metric_entry_problems(where: str, entry: Any) -> list[str]:
    if not isinstance(entry, list) or not entry:
        return [f"{where}: a metrics row must be a non-empty list, got {entry!r}"]
    strings, options = _entry_parts(entry)
    if not strings:  # a math or SEARCH expression row
        if not isinstance(options.get("expression"), str) or not options["expression"]:
            return [f"{where}: an options-only row needs an expression: {entry!r}"]
        return []
    problems = []
    if not all(isinstance(s, str) and s for s in strings):
        problems.append(f"{where}: namespace, name and dimensions must be non-empty strings")
    if "..." in strings or "." in strings:
        problems.append(f"{where}: shorthand rows are not used by this module: {entry!r}")
    if len(strings) < 2 or len(strings) % 2:
        problems.append(f"{where}: expected [namespace, name, (dim, value)*]: {entry!r}")
    if "id" in options and not re.fullmatch(r"[a-z][A-Za-z0-9_]*", str(options["id"])):
        problems.append(f"{where}: bad metric id {options['id']!r}")
    return problems


def _geometry_problems(where: str, widget: dict[str, Any], taken: dict[Any, str]) -> list[str]:
    """Inside the 24-column grid, and no cell already taken by an earlier widget."""
    geometry = [widget.get(k) for k in ("x", "y", "width", "height")]
    if not all(isinstance(v, int) for v in geometry):
        return [f"{where}: x, y, width and height must be integers: {geometry}"]
    x, y, width, height = geometry
    if x < 0 or y < 0 or width < 1 or height < 1 or x + width > GRID_COLUMNS:
        return [f"{where}: outside the 24-column grid: {geometry}"]
    for cell in ((col, row) for col in range(x, x + width) for row in range(y, y + height)):
        if cell in taken:
            return [f"{where}: overlaps {taken[cell]} at {cell}"]
        taken[cell] = where
    return []


def widget_problems(body: dict[str, Any]) -> list[str]:
    """Everything structurally wrong with a dashboard body; empty when it is well formed."""
    widgets = body.get("widgets")
    if not isinstance(widgets, list) or not widgets:
        return ["the body has no widgets"]
    problems: list[str] = []
    taken: dict[tuple[int, int], str] = {}
    for index, widget in enumerate(widgets):
        props = widget.get("properties")
        where = f"widget {index} ({(props or {}).get('title', widget.get('type'))})"
        if widget.get("type") not in {"metric", "text", "alarm", "log", "explorer"}:
            problems.append(f"{where}: unknown type {widget.get('type')!r}")
        if not isinstance(props, dict) or not props:
            problems.append(f"{where}: properties missing")
            continue
        problems += _geometry_problems(where, widget, taken)
        if widget["type"] == "text" and not props.get("markdown"):
            problems.append(f"{where}: a text widget needs markdown")
        if widget["type"] == "alarm":
            alarms = props.get("alarms")
            if not alarms or not all(isinstance(a, str) and a.startswith("arn:") for a in alarms):
                problems.append(f"{where}: an alarm widget needs alarm ARNs: {alarms!r}")
        if widget["type"] == "metric":
            problems += _metric_widget_problems(where, props)
    return problems


def _metric_widget_problems(where: str, props: dict[str, Any]) -> list[str]:
    metrics = props.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        return [f"{where}: a metric widget needs a non-empty metrics array"]
    problems = []
    for row, entry in enumerate(metrics):
        problems += _metric_entry_problems(f"{where} row {row}", entry)
    if problems:
        return problems
    ids = [opts["id"] for _, opts in map(_entry_parts, metrics) if "id" in opts]
    if len(ids) != len(set(ids)):
        problems.append(f"{where}: duplicate metric ids {ids}")
    expressions = " ".join(opts.get("expression", "") for _, opts in map(_entry_parts, metrics))
    for strings, opts in map(_entry_parts, metrics):
        if strings and opts.get("visible") is False and opts.get("id") not in expressions:
            problems.append(f"{where}: hidden metric {opts.get('id')!r} is used by no expression")
    if props.get("view") not in {"timeSeries", "singleValue", "gauge", "bar", "pie"}:
        problems.append(f"{where}: unknown view {props.get('view')!r}")
    if props.get("view") == "gauge":
        left = props.get("yAxis", {}).get("left", {})
        if "min" not in left or "max" not in left:
            problems.append(f"{where}: a gauge needs yAxis.left min and max")
    if not isinstance(props.get("region"), str):
        problems.append(f"{where}: region missing")
    return problems


def named_metrics(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(metric name, statistic) for every metric a body names, SEARCH expressions included."""
    found: list[tuple[str, str | None]] = []
    for widget in body.get("widgets", []):
        props = widget.get("properties", {})
        for entry in props.get("metrics", []):
            strings, opts = _entry_parts(entry)
            if strings:
                found.append((strings[1], opts.get("stat", props.get("stat"))))
            for name in re.findall(r'MetricName="([^"]+)"', opts.get("expression", "")):
                found.append((name, None))
    for variable in body.get("variables", []):
        for name in re.findall(r'MetricName="([^"]+)"', variable.get("search", "")):
            found.append((name, None))
    return found


def catalog_problems(body: dict[str, Any], distributions: list[str]) -> list[str]:
    """Metrics the library does not emit, wrong statistics, and standard metrics left out."""
    problems = []
    named = named_metrics(body)
    for name, stat in named:
        if name in STANDARD or name in SELF:
            expected = (STANDARD.get(name) or SELF[name])["statistic"]
            if stat is not None and stat != expected:
                problems.append(f"{name} shown as {stat}, the catalog says {expected}")
        elif name in distributions:
            if stat is not None and stat not in DISTRIBUTION["statistics"]:
                problems.append(f"distribution {name} shown as {stat}")
        else:
            problems.append(f"{name} is not a metric the catalog defines")
    missing = sorted(set(STANDARD) - {name for name, _ in named})
    if missing:
        problems.append(f"standard metrics missing from the dashboard: {missing}")
    return problems


# --- Checks that need neither terraform nor AWS ------------------------------------------------


def _good_body() -> dict[str, Any]:
    rows = [["NS", name, JOB_DIM, "j", {"stat": m["statistic"]}] for name, m in STANDARD.items()]
    return {
        "widgets": [
            {
                "type": "text",
                "x": 0,
                "y": 0,
                "width": 24,
                "height": 2,
                "properties": {"markdown": "#"},
            },
            {
                "type": "metric",
                "x": 0,
                "y": 2,
                "width": 24,
                "height": 6,
                "properties": {"metrics": rows, "view": "timeSeries", "region": REGION},
            },
        ]
    }


def test_validators_accept_a_good_body_and_reject_each_kind_of_bad_one() -> None:
    good = _good_body()
    assert widget_problems(good) == []
    assert catalog_problems(good, []) == []

    overlap = _good_body()
    overlap["widgets"][1]["y"] = 1
    assert any("overlaps" in p for p in widget_problems(overlap))

    too_wide = _good_body()
    too_wide["widgets"][1]["x"] = 1
    assert any("grid" in p for p in widget_problems(too_wide))

    malformed = _good_body()
    malformed["widgets"][1]["properties"]["metrics"].append(["NS", "RecordsProcessed", JOB_DIM])
    assert any("expected [namespace" in p for p in widget_problems(malformed))

    unknown = _good_body()
    unknown["widgets"][1]["properties"]["metrics"].append(["NS", "Bogus", JOB_DIM, "j"])
    assert catalog_problems(unknown, []) == ["Bogus is not a metric the catalog defines"]

    missing = _good_body()
    missing["widgets"][1]["properties"]["metrics"].pop(0)
    assert any("missing from the dashboard" in p for p in catalog_problems(missing, []))

    wrong_stat = _good_body()
    wrong_stat["widgets"][1]["properties"]["metrics"][0][-1]["stat"] = "Average"
    assert any("the catalog says" in p for p in catalog_problems(wrong_stat, []))


def test_terraform_catalog_copy_is_byte_identical_to_the_library_catalog() -> None:
    copy = (TF_DIR / "metric_catalog.json").read_bytes()
    assert copy == (REPO / "metricskit" / "catalog.json").read_bytes(), "run `make sync-catalog`"


def test_tf_files_name_catalog_metrics_only_through_the_decoded_catalog() -> None:
    """Outside comments and descriptions, a catalog metric name in a .tf file may only appear
    as a lookup key of the decoded catalog (local.metric["..."] / local.job_metric["..."]),
    so a name the catalog drops fails the plan instead of drifting silently."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, (*STANDARD, *SELF))) + r")\b")
    offenders = []
    for path in sorted(TF_DIR.rglob("*.tf")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if re.match(r"\s*(alarm_)?description\s*=", line):
                continue
            code = line.split("#", 1)[0]
            for match in pattern.finditer(code):
                if not code[: match.start()].endswith('metric["'):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {match.group(1)}")
    assert offenders == []


def test_every_checkov_skip_carries_a_reason() -> None:
    skips = [
        line.strip()
        for path in TF_DIR.rglob("*.tf")
        for line in path.read_text("utf-8").splitlines()
        if "checkov:skip" in line
    ]
    assert skips, "the module documents its skipped checks inline"
    bad = [s for s in skips if not re.fullmatch(r"#checkov:skip=CKV2?_AWS_\d+:\S.{10,}", s)]
    assert bad == []


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_terraform_skips_outside_ci_and_fails_in_ci(
    ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(expected, match="terraform is not on PATH"):
        _terraform_or_skip()


def _tf_names(filename: str, block: str) -> list[str]:
    text = (TF_DIR / filename).read_text("utf-8")
    return re.findall(rf'^{block} "([A-Za-z0-9_]+)"', text, flags=re.MULTILINE)


def _guide_table_names(heading: str) -> list[str]:
    text = GUIDE.read_text("utf-8")
    section = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert section, f"docs/DASHBOARD_GUIDE.md has no '## {heading}' section"
    return re.findall(r"^\| `([A-Za-z0-9_]+)` \|", section.group(1), flags=re.MULTILINE)


def test_guide_inputs_table_matches_variables_tf() -> None:
    assert _guide_table_names("Inputs") == _tf_names("variables.tf", "variable")


def test_guide_outputs_table_matches_outputs_tf() -> None:
    assert _guide_table_names("Outputs") == _tf_names("outputs.tf", "output")


# --- Terraform against moto ---------------------------------------------------------------------


def _terraform_or_skip() -> str:
    terraform = shutil.which("terraform")
    reason = None
    if terraform is None:
        reason = "terraform is not on PATH"
    elif not MIRROR.is_dir():
        reason = f"the provider mirror {MIRROR} is missing (terraform/tests/terraformrc uses it)"
    if reason is None:
        assert terraform is not None
        return terraform
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so the Terraform tests must run")
    pytest.skip(reason)


def _cli_config() -> str:
    """The caller's TF_CLI_CONFIG_FILE when it names a file, else the repo's mirror config."""
    configured = os.environ.get("TF_CLI_CONFIG_FILE", "")
    return configured if configured and Path(configured).is_file() else str(TERRAFORMRC)


def _tf_env(endpoint: str | None = None) -> dict[str, str]:
    env = {
        "TF_CLI_CONFIG_FILE": _cli_config(),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",  # no version check over the network
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def build_cost_tracker_zip(dest: Path) -> Path:
    """The real deployment package, built as `python -m cost_tracker.package --out` does."""
    result = subprocess.run(
        [sys.executable, "-m", "cost_tracker.package", "--out", str(dest)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    path = Path(result.stdout.splitlines()[0].strip())
    assert path.is_file(), result.stdout
    return path


@dataclass
class Deployment:
    tf: Any
    tf_vars: dict[str, Any]
    endpoint: str
    zip_path: Path
    outputs: dict[str, Any] = field(default_factory=dict)
    destroyed: bool = False

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of terraform/, so state and .terraform never land in the checkout."""
    _terraform_or_skip()
    root = tmp_path_factory.mktemp("tf") / "terraform"
    shutil.copytree(
        TF_DIR,
        root,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
    )
    return root


@pytest.fixture
def deployed(_deployment: Deployment) -> Deployment:
    """The module's deployment, applied again if a test destroyed it, so no test depends on
    running before ``test_destroy_is_clean``."""
    if _deployment.destroyed:
        _deployment.tf.apply(tf_vars=_deployment.tf_vars)
        _deployment.outputs = _deployment.tf.output()
        _deployment.destroyed = False
    return _deployment


@pytest.fixture(scope="module")
def _deployment(workdir: Path, moto_server: str) -> Iterator[Deployment]:
    import tftest

    unique = uuid.uuid4().hex[:8]
    zip_path = build_cost_tracker_zip(workdir.parent)
    tf_vars = {
        "aws_endpoint_url": moto_server,
        "cost_tracker_zip_path": str(zip_path),
        "namespace": f"TFTest/{unique}",
        "name_prefix": f"mktf-{unique}",
        "alarm_job_ids": [f"job-{unique}"],
    }
    tf = tftest.TerraformTest(EXAMPLE, basedir=str(workdir), env=_tf_env(moto_server))
    tf.setup(upgrade=False)
    deployment = Deployment(tf=tf, tf_vars=tf_vars, endpoint=moto_server, zip_path=zip_path)
    try:
        tf.apply(tf_vars=tf_vars)
        deployment.outputs = tf.output()
        yield deployment
    finally:
        if not deployment.destroyed:
            tf.destroy(tf_vars=tf_vars)


@pytest.mark.terraform
def test_terraform_fmt_check_passes() -> None:
    terraform = _terraform_or_skip()
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        env={**os.environ, **_tf_env()},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.terraform
def test_example_and_module_validate(deployed: Deployment) -> None:
    result = deployed.tf.execute_command("validate", "-no-color")
    assert "The configuration is valid" in result.out


@pytest.mark.terraform
def test_second_plan_shows_no_changes(deployed: Deployment) -> None:
    plan = deployed.tf.plan(output=True, tf_vars=deployed.tf_vars)
    changed = {
        address: change["change"]["actions"]
        for address, change in plan.resource_changes.items()
        if change["change"]["actions"] not in (["no-op"], ["read"])
    }
    assert changed == {}


def _dashboard_body(deployed: Deployment) -> dict[str, Any]:
    cloudwatch = deployed.client("cloudwatch")
    answer = cloudwatch.get_dashboard(DashboardName=deployed.outputs["dashboard_name"])
    body: dict[str, Any] = json.loads(answer["DashboardBody"])
    return body


@pytest.mark.terraform
def test_dashboard_names_only_catalog_metrics_and_every_standard_one(
    deployed: Deployment,
) -> None:
    body = _dashboard_body(deployed)
    assert catalog_problems(body, [DISTRIBUTION["name"]]) == []
    names = {name for name, _ in named_metrics(body)}
    assert set(SELF) <= names  # the health widget shows metricskit's own metrics
    assert DISTRIBUTION["name"] in names


@pytest.mark.terraform
def test_dashboard_widgets_are_well_formed_on_the_grid(deployed: Deployment) -> None:
    body = _dashboard_body(deployed)
    assert widget_problems(body) == []
    types = [w["type"] for w in body["widgets"]]
    assert types[0] == "text"  # the header comes first
    assert types.count("alarm") == 1
    alarm_widget = next(w for w in body["widgets"] if w["type"] == "alarm")
    assert alarm_widget["properties"]["alarms"] == deployed.outputs["alarm_arns"]


@pytest.mark.terraform
def test_dashboard_job_id_variable_switches_every_job_widget(deployed: Deployment) -> None:
    body = _dashboard_body(deployed)
    job_id = deployed.tf_vars["alarm_job_ids"][0]  # the example opens on its first job
    assert body["variables"] == [
        {
            "type": "property",
            "property": JOB_DIM,
            "inputType": "input",
            "id": JOB_DIM,
            "label": JOB_DIM,
            "defaultValue": job_id,
            "visible": True,
        }
    ]
    namespace = deployed.tf_vars["namespace"]
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            strings, _ = _entry_parts(entry)
            if strings:
                assert strings[0] == namespace
            if JOB_DIM in strings:
                assert strings[strings.index(JOB_DIM) + 1] == job_id


@pytest.mark.terraform
def test_the_default_cost_widget_shows_every_category_the_tracker_publishes(
    deployed: Deployment,
) -> None:
    """Spend without a CostCategory tag is published as Untagged: left out of the default
    list, it never showed on the dashboard."""
    body = _dashboard_body(deployed)
    (widget,) = [w for w in body["widgets"] if w["properties"].get("title", "").startswith("Month")]
    categories = [_entry_parts(entry)[0][3] for entry in widget["properties"]["metrics"]]
    assert categories == ["Training", "Inference", "Storage", "Orchestrator", UNTAGGED]


@pytest.mark.terraform
def test_throughput_is_job_wide_records_per_second_by_metric_math(deployed: Deployment) -> None:
    body = _dashboard_body(deployed)
    widget = next(w for w in body["widgets"] if w["properties"].get("title", "").startswith("Thr"))
    rows = [_entry_parts(e) for e in widget["properties"]["metrics"]]
    (hidden_id,) = [o["id"] for s, o in rows if s and s[1] == "RecordsProcessed"]
    (expression,) = [o["expression"] for s, o in rows if not s]
    assert expression == f"SUM([{hidden_id}]) / PERIOD({hidden_id})"


@pytest.mark.terraform
def test_select_input_and_stage_search_variant_plans_a_valid_dashboard(
    deployed: Deployment,
) -> None:
    """The other branches (a JobId drop-down, SEARCH over stages), checked on the plan."""
    variant = {**deployed.tf_vars, "job_id_input_type": "select", "stage_names": []}
    plan = deployed.tf.plan(output=True, tf_vars=variant)
    change = plan.resource_changes["module.metricskit.aws_cloudwatch_dashboard.this"]["change"]
    assert change["actions"] == ["update"]
    body = json.loads(change["after"]["dashboard_body"])
    assert widget_problems(body) == []
    assert catalog_problems(body, [DISTRIBUTION["name"]]) == []
    namespace = deployed.tf_vars["namespace"]
    (variable,) = body["variables"]
    assert variable["inputType"] == "select"
    assert variable["populateFrom"] == JOB_DIM
    assert variable["search"] == f'{{"{namespace}",{JOB_DIM}}} MetricName="RecordsProcessed"'
    stages = next(w for w in body["widgets"] if "stage" in w["properties"].get("title", ""))
    ((options,),) = stages["properties"]["metrics"]
    assert options["expression"].startswith(f'SEARCH(\'{{"{namespace}",{JOB_DIM},Stage}}')
    # The header tells how to switch jobs the way this dashboard does it: no box to type in.
    header = body["widgets"][0]["properties"]["markdown"]
    assert "drop-down" in header
    assert "Type a" not in header


@pytest.mark.terraform
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"alarm_job_ids": ["job-1", "job-1"]}, "alarm_job_ids must not repeat a JobId"),
        ({"latency_metric_names": ["A", "A"]}, "latency_metric_names must not repeat a name"),
        ({"stage_names": ["read", "read"]}, "stage_names must not repeat a name"),
        ({"cost_tracker_schedule": "rate(1 minutes)"}, "cost_tracker_schedule must be"),
        ({"cost_tracker_schedule": "rate(5 minute)"}, "cost_tracker_schedule must be"),
    ],
)
def test_inputs_terraform_or_eventbridge_would_refuse_fail_the_plan_with_a_reason(
    deployed: Deployment, inputs: dict[str, Any], message: str
) -> None:
    import tftest

    with pytest.raises(tftest.TerraformTestError) as refused:
        deployed.tf.plan(tf_vars={**deployed.tf_vars, **inputs})
    assert message in " ".join(str(refused.value).split())


@pytest.mark.terraform
def test_alarms_watch_the_catalog_metrics_and_notify_the_topic(deployed: Deployment) -> None:
    cloudwatch = deployed.client("cloudwatch")
    arns = deployed.outputs["alarm_arns"]
    alarms = cloudwatch.describe_alarms(AlarmNames=[a.rsplit(":", 1)[1] for a in arns])
    by_suffix = {a["AlarmName"].rsplit("-", 1)[-1]: a for a in alarms["MetricAlarms"]}
    assert len(by_suffix) == 4 == len(arns)
    job = deployed.tf_vars["alarm_job_ids"][0]
    topic = deployed.outputs["sns_topic_arn"]
    for alarm in by_suffix.values():
        assert alarm["AlarmActions"] == [topic]

    # CloudWatch cannot use the AWS managed SNS key: the topic's own key must let it in.
    key_id = deployed.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"][
        "KmsMasterKeyId"
    ]
    key_policy = deployed.client("kms").get_key_policy(KeyId=key_id, PolicyName="default")
    grant = _statements(key_policy["Policy"])["CloudWatchAlarmsPublish"]
    assert grant["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert _as_list(grant["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]

    stalled = by_suffix["stalled"]
    inputs = {q["Id"]: q["MetricStat"] for q in stalled["Metrics"] if "MetricStat" in q}
    assert {k: (v["Metric"]["MetricName"], v["Stat"]) for k, v in inputs.items()} == {
        "processed": ("RecordsProcessed", "Sum"),
        "completed": ("JobCompleted", "Maximum"),
    }
    assert all(
        v["Metric"]["Dimensions"] == [{"Name": JOB_DIM, "Value": job}] for v in inputs.values()
    )
    assert stalled["TreatMissingData"] == "ignore"
    assert stalled["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert stalled["Threshold"] == 1
    assert stalled["EvaluationPeriods"] == stalled["DatapointsToAlarm"] + 1

    rate = by_suffix["rate"]
    stats = {q["Id"]: q for q in rate["Metrics"]}
    assert stats["processed"]["MetricStat"]["Metric"]["MetricName"] == "RecordsProcessed"
    assert stats["errors"]["MetricStat"]["Metric"]["MetricName"] == "ErrorCount"
    assert "errors" in stats["error_rate"]["Expression"]
    assert "processed" in stats["error_rate"]["Expression"]
    assert stats["error_rate"]["ReturnData"] is True

    p99 = by_suffix["p99"]
    assert (p99["MetricName"], p99["ExtendedStatistic"]) == (DISTRIBUTION["name"], "p99")

    # The higher of the estimated and the actual cost: an unpriced job (no estimate) is
    # still watched once Cost Explorer has its cost.
    budget = {q["Id"]: q for q in by_suffix["budget"]["Metrics"]}
    assert budget["cost"]["Expression"] == "MAX([estimated, actual])"
    assert budget["cost"]["ReturnData"] is True
    for query_id, name in (("estimated", "EstimatedCost"), ("actual", "ActualCost")):
        stat = budget[query_id]["MetricStat"]
        assert (stat["Metric"]["MetricName"], stat["Stat"]) == (name, "Maximum")
        assert stat["Metric"]["Dimensions"] == [{"Name": JOB_DIM, "Value": job}]
        assert budget[query_id]["ReturnData"] is False


def _deployed_snapshot(deployed: Deployment) -> dict[str, Any]:
    """The dashboard body and the alarms as CloudWatch holds them, with this run's unique id
    masked and the alarms' state and timestamps left out."""
    names = [arn.rsplit(":", 1)[1] for arn in deployed.outputs["alarm_arns"]]
    found = deployed.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    by_name = {alarm["AlarmName"]: alarm for alarm in found}
    alarms = []
    for name in names:  # in the order of the alarm_arns output
        alarm = {k: v for k, v in by_name[name].items() if "State" not in k and "Time" not in k}
        alarm["Metrics"] = sorted(alarm.get("Metrics", []), key=lambda query: query["Id"])
        alarms.append(alarm)
    snapshot = {"dashboard": _dashboard_body(deployed), "alarms": alarms}
    unique = deployed.tf_vars["name_prefix"].removeprefix("mktf-")
    masked: dict[str, Any] = json.loads(json.dumps(snapshot).replace(unique, "UNIQUE"))
    return masked


@pytest.mark.terraform
def test_deployed_dashboard_and_alarms_match_the_snapshot(deployed: Deployment) -> None:
    """Every widget (order, titles, metrics, statistics, periods, positions) and every alarm
    setting, as deployed for the example's inputs, so a refactoring of the module that changes
    any of them fails here. A change meant to change them rewrites the snapshot:
    UPDATE_SNAPSHOT=1 pytest tests/integration/test_terraform.py, then review its diff."""
    actual = _deployed_snapshot(deployed)
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n", "utf-8")
    expected = json.loads(SNAPSHOT.read_text("utf-8"))
    # The dashboard body is the module's own JSON: exactly. The alarms come back through the
    # AWS API, where a newer moto (or AWS) may add fields: every field the snapshot holds
    # must match, and new ones are ignored.
    assert actual["dashboard"] == expected["dashboard"]
    assert _shaped_like(actual["alarms"], expected["alarms"]) == expected["alarms"]


def _shaped_like(actual: Any, expected: Any) -> Any:
    """``actual`` with only the dictionary keys ``expected`` has, at every depth."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _shaped_like(actual[k], v) for k, v in expected.items() if k in actual}
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        return [_shaped_like(a, e) for a, e in zip(actual, expected, strict=True)]
    return actual


@pytest.mark.terraform
def test_job_table_follows_the_layout(deployed: Deployment) -> None:
    dynamodb = deployed.client("dynamodb")
    name = deployed.outputs["job_table_name"]
    table = dynamodb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "job_id", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", jt.EXPIRES_AT)
    env = deployed.outputs["worker_environment"]
    assert env["METRICSKIT_FINISHED_JOB_RETENTION_DAYS"] == "90"


@pytest.mark.terraform
def test_cost_tracker_runs_the_zip_on_a_schedule(deployed: Deployment) -> None:
    function_name = deployed.outputs["cost_tracker_function_name"]
    config = deployed.client("lambda").get_function(FunctionName=function_name)["Configuration"]
    digest = hashlib.sha256(deployed.zip_path.read_bytes()).digest()
    assert config["CodeSha256"] == base64.b64encode(digest).decode()
    assert (config["Handler"], config["Runtime"]) == ("cost_tracker.handler.handler", "python3.12")
    assert config["Environment"]["Variables"] == {
        "METRICSKIT_JOB_TABLE": deployed.outputs["job_table_name"],
        "METRICSKIT_NAMESPACE": deployed.tf_vars["namespace"],
        "METRICSKIT_SINK": "emf",
        "COST_TRACKER_CE_REFRESH_HOURS": "6",
        "COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "4",
        "COST_TRACKER_CE_LOOKBACK_DAYS": "31",
    }

    events = deployed.client("events")
    rule_name = f"{deployed.tf_vars['name_prefix']}-cost-tracker-schedule"
    rule = events.describe_rule(Name=rule_name)
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert [t["Arn"] for t in targets] == [config["FunctionArn"]]

    policy = json.loads(deployed.client("lambda").get_policy(FunctionName=function_name)["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]

    logs = deployed.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{function_name}")
    assert [g["retentionInDays"] for g in groups["logGroups"]] == [30]


def worker_key_denied(pattern: str, key: str) -> bool:
    """IAM's StringLike: ``*`` any run of characters, ``?`` one character."""
    return (
        re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), key) is not None
    )


def test_the_cost_cache_deny_leaves_every_key_workers_write_alone() -> None:
    """The worker policy denies writes to keys starting with job_table.COST_CACHE_PREFIX (the
    cost tracker's cache and daily request budget); every key the library and the examples
    write (job items, line- and CSV-record-count caches, checkpoints) must stay writable."""
    iam_tf = (TF_DIR / "iam.tf").read_text("utf-8")
    (prefix,) = re.findall(r'cost_cache_key_prefix = "([^"]+)"', iam_tf)
    assert prefix == jt.COST_CACHE_PREFIX
    assert re.findall(r'checkpoint_key_prefix = "([^"]+)"', iam_tf) == [jt.CHECKPOINT_PREFIX]
    assert re.findall(r"count_cache_key_patterns = \[([^\]]+)\]", iam_tf) == [
        f'"{jt.LINECOUNT_PREFIX}*", "{jt.CSVRECORDS_PREFIX}*"'
    ]
    table_tf = (TF_DIR / "job_table.tf").read_text("utf-8")
    assert re.findall(r'job_table_ttl_attribute = "([^"]+)"', table_tf) == [jt.EXPIRES_AT]
    pattern = f"{prefix}*"
    written = [
        "csv-2026-11-23",
        jt.linecount_key("s3://bucket/input/rows.csv.gz"),
        jt.csvrecords_key("/data/rows.csv"),
        jt.checkpoint_key("csv-2026-11-23", "0/4"),
    ]
    assert [key for key in written if worker_key_denied(pattern, key)] == []
    assert worker_key_denied(pattern, jt.cost_cache_key(CACHE_NAME))


# Every item action that names its keys, PartiQL's included: a deny on costcache# keys that
# left one out would hold only until another policy allowed that action.
COST_CACHE_WRITES = [
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PartiQLDelete",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
]
COST_CACHE_READS = [
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:PartiQLSelect",
    "dynamodb:Query",
]


def _statements(document: Any) -> dict[str, dict[str, Any]]:
    if isinstance(document, str):
        document = json.loads(document)
    return {s["Sid"]: s for s in document["Statement"]}


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else sorted(value)


@pytest.mark.terraform
def test_iam_grants_only_what_workers_and_the_tracker_need(deployed: Deployment) -> None:
    iam = deployed.client("iam")
    table_arn = deployed.client("dynamodb").describe_table(
        TableName=deployed.outputs["job_table_name"]
    )["Table"]["TableArn"]

    policy = iam.get_policy(PolicyArn=deployed.outputs["worker_policy_arn"])["Policy"]
    version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])[
        "PolicyVersion"
    ]
    worker = _statements(version["Document"])
    metrics = worker["PutMetricsInOwnNamespace"]
    assert _as_list(metrics["Action"]) == ["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": deployed.tf_vars["namespace"]}
    }
    table = worker["JobTableItems"]
    assert _as_list(table["Action"]) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert table["Resource"] == table_arn
    # Workers may write every item they use, but never the cost tracker's cache items.
    assert "Condition" not in table  # without worker_job_ids: every job's items
    assert "NoOtherJobsCheckpoints" not in worker
    for sid, actions in (
        ("NoCostCacheWrites", COST_CACHE_WRITES),
        ("NoCostCacheReads", COST_CACHE_READS),
    ):
        deny = worker[sid]
        assert deny["Effect"] == "Deny"
        assert deny["Resource"] == table_arn
        assert _as_list(deny["Action"]) == actions
        ((test, keys),) = deny["Condition"].items()
        assert test == "ForAnyValue:StringLike"
        assert keys == {"dynamodb:LeadingKeys": f"{jt.COST_CACHE_PREFIX}*"}
        assert not worker_key_denied(keys["dynamodb:LeadingKeys"], "csv-job-1")
        assert worker_key_denied(keys["dynamodb:LeadingKeys"], jt.cost_cache_key(CACHE_NAME))
    assert "ReadInputObjects" not in worker  # no S3 grant unless buckets are named

    role = f"{deployed.tf_vars['name_prefix']}-cost-tracker"
    tracker = _statements(iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"])
    assert _as_list(tracker["CostExplorerRead"]["Action"]) == ["ce:GetCostAndUsage"]
    assert _as_list(tracker["JobTable"]["Action"]) == [
        "dynamodb:GetItem",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
    ]
    assert tracker["JobTable"]["Resource"] == table_arn
    log_group = f"/aws/lambda/{deployed.outputs['cost_tracker_function_name']}"
    assert tracker["OwnLogGroup"]["Resource"].endswith(f":log-group:{log_group}:*")
    star = [sid for sid, s in {**worker, **tracker}.items() if "*" in _as_list(s["Resource"])]
    assert sorted(star) == ["CostExplorerRead", "PutMetricsInOwnNamespace"]


# --- Plans of the module alone (no apply): inputs the example does not expose -------------------

PLAN_SERVICES = ("cloudwatch", "dynamodb", "events", "iam", "kms", "lambda", "logs", "sns", "sts")
MODULE = "module.metricskit"


@dataclass
class Planned:
    """A plan of the module for some inputs: its JSON, or the error that refused it."""

    plan: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def change(self, address: str) -> dict[str, Any]:
        found = [c for c in self.plan["resource_changes"] if c["address"] == f"{MODULE}.{address}"]
        assert found, f"{address} is not in the plan"
        change: dict[str, Any] = found[0]["change"]
        return change

    def addresses(self, prefix: str) -> list[str]:
        return [
            c["address"]
            for c in self.plan["resource_changes"]
            if c["address"].startswith(f"{MODULE}.{prefix}")
        ]

    def read_at_plan(self, address: str) -> dict[str, Any]:
        """The values of a data source that the plan read (known inputs: read at plan time)."""
        modules = self.plan["prior_state"]["values"]["root_module"].get("child_modules", [])
        found = [
            r["values"]
            for module in modules
            for r in module.get("resources", [])
            if r["address"] == f"{MODULE}.{address}"
        ]
        assert found, f"{address} was not read at plan time"
        values: dict[str, Any] = found[0]
        return values

    def dashboard_body(self) -> dict[str, Any]:
        body = self.change("aws_cloudwatch_dashboard.this")["after"]["dashboard_body"]
        assert isinstance(body, str), "the dashboard body is unknown at plan time"
        decoded: dict[str, Any] = json.loads(body)
        return decoded


@pytest.fixture(scope="module")
def plan_module(
    tmp_path_factory: pytest.TempPathFactory, moto_server: str
) -> Callable[..., Planned]:
    """Plans the module (a private copy) from a root module written per call, with any inputs;
    nothing is applied, so a plan takes seconds."""
    terraform = _terraform_or_skip()
    base = tmp_path_factory.mktemp("tfplan")
    shutil.copytree(
        TF_DIR,
        base / "module",
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl", "tests"),
    )
    root = base / "root"
    root.mkdir()
    zip_path = build_cost_tracker_zip(base)
    env = {**os.environ, **_tf_env(moto_server)}
    defaults = {
        "namespace": "TFPlan/ns",
        "name_prefix": "mkplan",
        "cost_tracker_zip_path": str(zip_path),
    }

    def write(inputs: dict[str, Any]) -> None:
        config = {
            "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws"}}},
            "provider": {
                "aws": {
                    "region": REGION,
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "endpoints": [dict.fromkeys(PLAN_SERVICES, moto_server)],
                }
            },
            "module": {"metricskit": {"source": "../module", **defaults, **inputs}},
            # A root output, so the plan shows what the module tells the workers.
            "output": {"worker_environment": {"value": "${module.metricskit.worker_environment}"}},
        }
        (root / "main.tf.json").write_text(json.dumps(config, indent=2), "utf-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [terraform, *args], cwd=root, env=env, capture_output=True, text=True, check=False
        )

    write({})
    init = run("init", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr

    def plan(**inputs: Any) -> Planned:
        write(inputs)
        result = run("plan", "-input=false", "-no-color", "-out=tfplan")
        if result.returncode != 0:
            return Planned(error=" ".join((result.stdout + result.stderr).split()))
        shown = run("show", "-json", "tfplan")
        assert shown.returncode == 0, shown.stderr
        return Planned(plan=json.loads(shown.stdout))

    return plan


@pytest.mark.terraform
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        # 100 % can never be *above* the threshold: an alarm that cannot fire.
        ({"error_rate_threshold_percent": 100}, "error_rate_threshold_percent must be"),
        ({"stalled_minutes": 1}, "stalled_minutes must be a whole number from 2 to 1439"),
        ({"stalled_minutes": 1440}, "stalled_minutes must be a whole number from 2 to 1439"),
        ({"cost_tracker_pricing_overrides_json": "[]"}, "must be null or a JSON object"),
        ({"cost_tracker_pricing_overrides_json": "5"}, "must be null or a JSON object"),
        ({"cost_tracker_pricing_overrides_json": '{"ec2": 5}'}, "must be null or a JSON object"),
        ({"cost_tracker_pricing_overrides_json": "{bad"}, "must be null or a JSON object"),
        ({"cost_tracker_ce_max_requests_per_day": 0}, "max_requests_per_day must be"),
        ({"cost_tracker_ce_max_requests_per_day": 2.5}, "max_requests_per_day must be"),
        ({"cost_tracker_ce_lookback_days": 366}, "lookback_days must be a whole number"),
        ({"cost_tracker_ce_lookback_days": 0}, "lookback_days must be a whole number"),
        # Each valid alone, too long together: refused at plan, not by AWS at apply.
        (
            {"alarm_job_ids": ["j" * 200], "latency_metric_names": ["L" * 100]},
            "characters; CloudWatch allows 255",
        ),
        ({"namespace": "N" * 255}, "Set dashboard_name, or shorten name_prefix or namespace"),
    ],
)
def test_module_inputs_aws_would_refuse_later_fail_the_plan_with_a_reason(
    plan_module: Callable[..., Planned], inputs: dict[str, Any], message: str
) -> None:
    planned = plan_module(**inputs)
    assert message in planned.error, planned.error or "the plan succeeded"


@pytest.mark.terraform
def test_module_accepts_the_edges_of_those_inputs(plan_module: Callable[..., Planned]) -> None:
    overrides = json.dumps({"ec2": {"spot": {"g5.xlarge": 0.45}}, "profiles": {"x:y": 1.0}})
    planned = plan_module(
        error_rate_threshold_percent=99.9,
        cost_tracker_pricing_overrides_json=overrides,
        namespace="N" * 255,
        dashboard_name="short-enough",
        cost_tracker_ce_max_requests_per_day=8,
    )
    assert planned.error == ""
    function = planned.change("aws_lambda_function.cost_tracker")["after"]
    # Lambda allows 256 characters of description; a long namespace is cut, not refused.
    assert len(function["description"]) == 256
    variables = function["environment"][0]["variables"]
    assert variables["COST_TRACKER_PRICING_OVERRIDES"] == overrides
    assert variables["COST_TRACKER_CE_MAX_REQUESTS_PER_DAY"] == "8"


@pytest.mark.terraform
def test_more_than_100_alarms_are_split_into_alarm_widgets_of_at_most_100(
    plan_module: Callable[..., Planned],
) -> None:
    """CloudWatch takes 1-100 ARNs per alarm widget; 26 jobs make 104 alarms."""
    jobs = [f"job-{n:02d}" for n in range(26)]
    planned = plan_module(alarm_job_ids=jobs)
    assert planned.error == ""
    body = planned.dashboard_body()
    assert widget_problems(body) == []
    alarm_widgets = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert [len(w["properties"]["alarms"]) for w in alarm_widgets] == [100, 4]
    assert [w["properties"]["title"] for w in alarm_widgets] == [
        "Alarms 1-100 of 104",
        "Alarms 101-104 of 104",
    ]
    shown = [arn for w in alarm_widgets for arn in w["properties"]["alarms"]]
    names = sorted(
        change["change"]["after"]["alarm_name"]
        for change in planned.plan["resource_changes"]
        if change["type"] == "aws_cloudwatch_metric_alarm"
    )
    assert len(names) == 104
    assert sorted(arn.rsplit(":", 1)[1] for arn in shown) == names
    assert all(arn.startswith(f"arn:aws:cloudwatch:{REGION}:") for arn in shown)


@pytest.mark.terraform
def test_the_cost_alarm_keeps_its_state_between_tracker_runs(
    plan_module: Callable[..., Planned],
) -> None:
    """Whatever the schedule (here daily), empty periods between runs must not turn the alarm
    OK, or every run above the budget would page again."""
    planned = plan_module(alarm_job_ids=["job-1"], cost_tracker_schedule="rate(1 day)")
    alarm = planned.change('aws_cloudwatch_metric_alarm.cost_over_budget["job-1"]')["after"]
    assert alarm["treat_missing_data"] == "ignore"
    assert alarm["ok_actions"] in (None, [])


STALL_MINUTES = 5
"""The stalled alarm's window in the scenarios below (short, so each scenario is short)."""


def _run_workers(
    script: list[tuple[int, str, str]], *, workers: tuple[str, ...] = ("w1",), minutes: int = 40
) -> tuple[list[Any], float]:
    """Real Jobs of one JobId on a fake clock, flushing once a minute at :30.

    ``script`` lists ``(minute, worker, action)``: ``work`` (process records, then flush),
    ``idle`` (flush with nothing processed), ``completed``/``failed``/``interrupted``
    (close so). A worker with no entry for a minute publishes nothing that minute (dead, or
    not started). Returns every batch published and the wall time of minute 0.
    """
    import metricskit
    from metricskit.testing import MemorySink
    from tests.conftest import FakeClock

    clock = FakeClock(start=0.0)
    sink = MemorySink()
    jobs: dict[str, Any] = {}
    base = 0.0
    try:
        for minute in range(minutes):
            clock.now = minute * 60 + 30
            for when, worker, action in script:
                if when != minute:
                    continue
                job = jobs.get(worker)
                if job is None:
                    job = jobs[worker] = metricskit.Job(
                        "job-1",
                        sink=sink,
                        clock=clock,
                        worker_id=worker if len(workers) > 1 else None,
                        flush_interval=86_400,
                        handle_sigterm=False,
                    )
                    base = base or job.wall_time(0.0)
                if action == "work":
                    job.processed(100)
                if action in ("work", "idle"):
                    job.flush()
                else:
                    job.close(action)
        return list(sink.batches), base
    finally:
        for job in jobs.values():
            job.close()  # a "dead" worker's job, after the batches were taken


def _stalled_states(planned: Planned, script: list[tuple[int, str, str]], **kw: Any) -> list[str]:
    from tests.alarm_model import MathAlarm, alarm_states

    alarm = MathAlarm.from_plan(
        planned.change('aws_cloudwatch_metric_alarm.job_stalled["job-1"]')["after"]
    )
    batches, base = _run_workers(script, **kw)
    return alarm_states(alarm, batches, base=base, minutes=kw.get("minutes", 40))


def _working(first: int, last: int, worker: str = "w1") -> list[tuple[int, str, str]]:
    return [(m, worker, "work") for m in range(first, last + 1)]


@pytest.mark.terraform
def test_the_stalled_alarm_pages_for_stuck_dead_and_failed_jobs_not_finished_ones(
    plan_module: Callable[..., Planned],
) -> None:
    """What the stalled alarm does with what real workers publish, minute by minute, through a
    model of CloudWatch's alarm evaluation (tests/alarm_model.py): moto never evaluates."""
    planned = plan_module(alarm_job_ids=["job-1"], stalled_minutes=STALL_MINUTES)
    assert planned.error == ""
    page_by = 9 + STALL_MINUTES + 1  # last flush at minute 9, then STALL_MINUTES of silence

    completed = _stalled_states(planned, [*_working(0, 9), (10, "w1", "completed")])
    assert "ALARM" not in completed
    assert completed[-1] == "OK"

    died = _stalled_states(planned, _working(0, 9))
    assert "ALARM" not in died[: page_by - 1]
    assert died[page_by - 1 :] == ["ALARM"] * (40 - page_by + 1), died

    failed = _stalled_states(planned, [*_working(0, 9), (10, "w1", "failed")])
    assert failed[-1] == "ALARM"

    stuck = _stalled_states(
        planned,
        [*_working(0, 2), *[(m, "w1", "idle") for m in range(3, 20)], *_working(20, 25),
         (26, "w1", "completed")],
    )  # fmt: skip
    assert stuck[3 + STALL_MINUTES - 1] == "ALARM"
    assert "ALARM" not in stuck[: 3 + STALL_MINUTES - 1]
    # Records flow again from minute 20: OK once that minute leaves the stalled majority, and
    # still OK long after the job completed.
    assert stuck[21:] == ["OK"] * 19

    listed_before_it_starts = _stalled_states(planned, [*_working(20, 29), (30, "w1", "completed")])
    assert "ALARM" not in listed_before_it_starts
    assert listed_before_it_starts[:20] == ["INSUFFICIENT_DATA"] * 20


@pytest.mark.terraform
def test_the_stalled_alarm_waits_for_the_last_of_several_workers(
    plan_module: Callable[..., Planned],
) -> None:
    planned = plan_module(alarm_job_ids=["job-1"], stalled_minutes=STALL_MINUTES)
    two = ("w1", "w2")
    first_done = [*_working(0, 4, "w1"), (5, "w1", "completed"), *_working(0, 14, "w2")]

    both_complete = _stalled_states(planned, [*first_done, (15, "w2", "completed")], workers=two)
    assert "ALARM" not in both_complete

    second_dies = _stalled_states(planned, first_done, workers=two)
    assert second_dies[-1] == "ALARM"


@pytest.mark.terraform
def test_a_customer_managed_table_key_may_be_used_through_dynamodb_only(
    plan_module: Callable[..., Planned],
) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    with_key = plan_module(job_table_kms_key_arn=key)
    assert with_key.error == ""
    key_document = with_key.read_at_plan("data.aws_iam_policy_document.job_table_key[0]")
    (statement,) = key_document["statement"]
    assert statement["sid"] == "JobTableKeyViaDynamoDB"
    assert statement["resources"] == [key]
    assert sorted(statement["actions"]) == [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
    ]
    assert [(c["test"], c["variable"], c["values"]) for c in statement["condition"]] == [
        ("StringEquals", "kms:ViaService", [f"dynamodb.{REGION}.amazonaws.com"])
    ]
    without_key = plan_module()
    assert without_key.addresses("data.aws_iam_policy_document.job_table_key") == []
    for document in ("worker", "cost_tracker"):
        address = f"data.aws_iam_policy_document.{document}"
        # Merged into both policies, next to their own statements (read at apply: they name
        # the table's ARN).
        assert with_key.change(address)["after"]["source_policy_documents"] == [
            key_document["json"]
        ]
        assert not without_key.change(address)["after"]["source_policy_documents"]


@pytest.mark.terraform
def test_workers_may_read_the_s3_objects_they_count_when_the_buckets_are_named(
    plan_module: Callable[..., Planned],
) -> None:
    """count_lines on an s3:// URI calls HeadObject and GetObject (both s3:GetObject)."""
    arns = ["arn:aws:s3:::input-bucket/rows/*", "arn:aws:s3:::other-bucket/*"]
    planned = plan_module(worker_s3_read_arns=arns)
    assert planned.error == ""
    document = planned.read_at_plan("data.aws_iam_policy_document.worker_s3_read[0]")
    (statement,) = document["statement"]
    assert (statement["sid"], statement["actions"]) == ("ReadInputObjects", ["s3:GetObject"])
    assert sorted(statement["resources"]) == sorted(arns)
    worker = planned.change("data.aws_iam_policy_document.worker")["after"]
    assert document["json"] in worker["source_policy_documents"]
    refused = plan_module(worker_s3_read_arns=["arn:aws:s3:::input-bucket"])
    assert "must be an S3 object ARN" in refused.error


def _planned_statements(planned: Planned) -> dict[str, dict[str, Any]]:
    """The worker policy's own statements as planned (read at apply: they name the table)."""
    after = planned.change("data.aws_iam_policy_document.worker")["after"]
    # An unset effect is Terraform's default, Allow.
    return {s["sid"]: {**s, "effect": s["effect"] or "Allow"} for s in after["statement"]}


def _conditions(statement: dict[str, Any]) -> dict[str, list[str]]:
    found = {}
    for condition in statement.get("condition") or []:
        assert condition["variable"] == "dynamodb:LeadingKeys"
        found[condition["test"]] = condition["values"]
    return found


def _worker_may(statements: dict[str, dict[str, Any]], action: str, key: str) -> bool:
    """IAM's verdict on ``action`` on one item ``key`` for these statements (single-key
    requests: ForAllValues/ForAnyValue reduce to one match; a negated operator holds when the
    key matches none of the values; conditions of one statement all hold)."""

    def applies(statement: dict[str, Any]) -> bool:
        if action not in statement["actions"]:
            return False
        for test, values in _conditions(statement).items():
            matches = any(worker_key_denied(pattern, key) for pattern in values)
            if matches == test.endswith("StringNotLike"):
                return False
        return True

    allowed = any(s["effect"] == "Allow" and applies(s) for s in statements.values())
    denied = any(s["effect"] == "Deny" and applies(s) for s in statements.values())
    return allowed and not denied


@pytest.mark.terraform
def test_worker_job_ids_limit_the_workers_to_those_jobs_and_the_count_caches(
    plan_module: Callable[..., Planned],
) -> None:
    """Without the input every worker may write every job's items (checkpoints included);
    with it, only the named jobs', their checkpoints' and the count caches', and nothing
    reaches another job's checkpoint even through a pattern whose * spans the '#'."""
    everyone = _planned_statements(plan_module())
    assert _worker_may(everyone, "dynamodb:UpdateItem", "other-job")
    assert _worker_may(everyone, "dynamodb:PutItem", jt.checkpoint_key("other-job", "0/4"))

    planned = plan_module(worker_job_ids=["etl-nightly-*", "c*", "*4"])
    assert planned.error == ""
    statements = _planned_statements(planned)
    (values,) = _conditions(statements["JobTableItems"]).values()
    assert _conditions(statements["JobTableItems"]) == {"ForAllValues:StringLike": values}
    mine = ["etl-nightly-7", jt.checkpoint_key("etl-nightly-7", "0/4"), "cleanup", "job-4"]
    caches = [jt.linecount_key("s3://b/rows.csv"), jt.csvrecords_key("/data/rows.csv")]
    theirs = ["etl-hourly-7", jt.checkpoint_key("etl-hourly-7", "0/4"), "other"]
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert [key for key in mine + caches if not _worker_may(statements, action, key)] == []
        assert [key for key in theirs if _worker_may(statements, action, key)] == []
        assert not _worker_may(statements, action, jt.cost_cache_key(CACHE_NAME))
    # "c*" and "*4" match checkpoint#etl-hourly-7#0/4 in the allow; the deny refuses it.
    assert worker_key_denied("c*", jt.checkpoint_key("etl-hourly-7", "0/4"))
    deny = statements["NoOtherJobsCheckpoints"]
    assert deny["effect"] == "Deny"
    assert sorted(deny["actions"]) == sorted(COST_CACHE_READS + COST_CACHE_WRITES)
    assert _conditions(deny) == {
        "ForAnyValue:StringLike": [f"{jt.CHECKPOINT_PREFIX}*"],
        "ForAnyValue:StringNotLike": [
            jt.checkpoint_key("etl-nightly-*", "*"),
            jt.checkpoint_key("c*", "*"),
            jt.checkpoint_key("*4", "*"),
        ],
    }


@pytest.mark.terraform
def test_the_cost_cache_is_denied_to_partiql_and_to_reads(
    plan_module: Callable[..., Planned],
) -> None:
    """Workers may neither write nor read the costcache# items, whatever action another
    policy allows. Reading them takes nothing from the workers: metricskit/ never names the
    prefix (the cost tracker, in cost_tracker/, is their only reader and writer)."""
    readers = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "metricskit").rglob("*.py"))
        if path.name != "job_table.py"
        and re.search(r"COST_CACHE_PREFIX|cost_cache_key|costcache#", path.read_text("utf-8"))
    ]
    assert readers == []
    statements = _planned_statements(plan_module())
    key = jt.cost_cache_key(CACHE_NAME)
    for action in COST_CACHE_READS + COST_CACHE_WRITES:
        assert statements["JobTableItems"]["effect"] == "Allow"
        # Allow every action here (as another policy of the role might): still refused.
        widened = {
            **statements,
            "JobTableItems": {**statements["JobTableItems"], "actions": [action]},
        }
        assert not _worker_may(widened, action, key), action
        assert _worker_may(widened, action, "csv-job-1"), action


@pytest.mark.terraform
@pytest.mark.parametrize("patterns", [[], [""], ["etl#nightly"], ["ok-*", "checkpoint#x"]])
def test_worker_job_ids_that_match_nothing_or_reach_other_items_fail_the_plan(
    plan_module: Callable[..., Planned], patterns: list[str]
) -> None:
    refused = plan_module(worker_job_ids=patterns)
    assert "worker_job_ids must be null (every job) or a non-empty list" in refused.error


@pytest.mark.terraform
def test_finished_jobs_expire_by_the_tables_ttl_after_the_retention(
    plan_module: Callable[..., Planned],
) -> None:
    default = plan_module()
    table = default.change("aws_dynamodb_table.jobs")["after"]
    assert table["ttl"] == [{"attribute_name": jt.EXPIRES_AT, "enabled": True}]
    outputs = default.plan["planned_values"]["outputs"]["worker_environment"]["value"]
    assert outputs["METRICSKIT_FINISHED_JOB_RETENTION_DAYS"] == "90"
    forever = plan_module(finished_job_retention_days=0)
    outputs = forever.plan["planned_values"]["outputs"]["worker_environment"]["value"]
    assert outputs["METRICSKIT_FINISHED_JOB_RETENTION_DAYS"] == "0"
    # The library reads the module's value as the module means it.
    assert config.env_retention_days({"METRICSKIT_FINISHED_JOB_RETENTION_DAYS": "0"}) is None
    for days in (3, 6, 7.5, -1, 36501):
        refused = plan_module(finished_job_retention_days=days)
        assert "finished_job_retention_days must be 0 (keep forever)" in refused.error, days
    assert plan_module(finished_job_retention_days=7).error == ""


@pytest.mark.terraform
def test_a_sub_minute_dashboard_needs_high_resolution_and_opens_on_three_hours(
    plan_module: Callable[..., Planned],
) -> None:
    """Standard-resolution data has no sub-minute periods, and high-resolution data is only
    served at them for 3 hours: a 10 s dashboard over the default 6 hours showed nothing."""
    refused = plan_module(dashboard_period_seconds=10)
    assert "needs high_resolution = true" in refused.error

    fast = plan_module(dashboard_period_seconds=10, high_resolution=True)
    assert fast.error == ""
    body = fast.dashboard_body()
    assert body["start"] == "-PT3H"
    throughput = next(w for w in body["widgets"] if w["properties"].get("title", "")[:3] == "Thr")
    assert throughput["properties"]["period"] == 10
    environment = fast.plan["planned_values"]["outputs"]["worker_environment"]["value"]
    assert environment["METRICSKIT_HIGH_RESOLUTION"] == "true"
    assert environment["METRICSKIT_FLUSH_INTERVAL"] == "10"

    default = plan_module()
    assert default.dashboard_body()["start"] == "-PT6H"
    environment = default.plan["planned_values"]["outputs"]["worker_environment"]["value"]
    assert "METRICSKIT_HIGH_RESOLUTION" not in environment
    assert "METRICSKIT_FLUSH_INTERVAL" not in environment
    assert "must be 1, 5, 10, 20, 30" in plan_module(dashboard_period_seconds=15).error


@pytest.mark.terraform
def test_search_queries_longer_than_cloudwatch_allows_fail_the_plan(
    plan_module: Callable[..., Planned],
) -> None:
    """A search query holds at most 1024 characters; long dimension values overflow it."""
    own = {"Env": "e" * 600, "Team": "t" * 500}
    too_long = plan_module(dimensions=own)
    assert "search query of at most 1024 characters" in too_long.error
    assert "the per-stage progress SEARCH has" in too_long.error
    # Named stages and a typed JobId need no search at all.
    assert plan_module(dimensions=own, stage_names=["read"]).error == ""


def _series_of_rows(body: dict[str, Any]) -> tuple[list[tuple[str, Dims]], list[str]]:
    """The (metric name, dimensions) of every metric row in the dashboard, and its SEARCH
    expressions and variable searches."""
    rows: list[tuple[str, Dims]] = []
    searches = [v["search"] for v in body["variables"] if "search" in v]
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            strings, options = _entry_parts(entry)
            if strings:
                pairs = strings[2:]
                rows.append((strings[1], frozenset(zip(pairs[::2], pairs[1::2], strict=True))))
            elif "SEARCH(" in options.get("expression", ""):
                searches.append(options["expression"].split("'")[1])
    return rows, searches


Dims = frozenset[tuple[str, str]]


def search_matches(query: str, namespace: str, name: str, dims: Dims) -> bool:
    """Whether a series matches a search query the module writes, read as CloudWatch's search
    syntax says (``{"<namespace>",Dim,"Dim_2"} MetricName="<name>" Dim="<value>" ...``: names
    quoted in the schema, exact-match values with \\ " ( ) escaped), by the local renderer's
    parser (examples/dashboard_render.py), so the two cannot disagree."""
    from examples.dashboard_render import SearchQuery

    search = SearchQuery.parse(query)
    return search.namespace == namespace and search.matches(name, sorted(dims))


@pytest.mark.terraform
def test_own_dimensions_reach_every_library_series_the_dashboard_and_alarms_read(
    plan_module: Callable[..., Planned], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker configured from the worker_environment output publishes exactly the series the
    dashboard's rows, searches and alarms name; the cost tracker's (JobId only) and the
    self-metrics (JobId only) stay without the workers' own dimensions."""
    import metricskit
    from metricskit.testing import MemorySink

    # Names SEARCH schemas must quote (non-alphanumeric), values whose exact-match terms must
    # escape \ " ( and ).
    own = {"Env": "prod (eu)", "team_name": 'data "eng" \\ ops', "Team.Lead": "a)b("}
    planned = plan_module(
        dimensions=own, alarm_job_ids=["job-1"], job_id_input_type="select", stage_names=[]
    )
    assert planned.error == ""
    environment = planned.plan["planned_values"]["outputs"]["worker_environment"]["value"]
    monkeypatch.setenv("METRICSKIT_DIMENSIONS", environment["METRICSKIT_DIMENSIONS"])
    sink = MemorySink()
    namespace = environment["METRICSKIT_NAMESPACE"]
    with metricskit.Job("example-job", namespace=namespace, sink=sink, total=10) as job:
        job.processed()
        job.failed()
        job.retried()
        job.checkpointed()
        job.observe(DISTRIBUTION["name"], 5.0)
        job.stage("read", total=10).processed()
    published = {(m.key.name, frozenset(m.key.dimensions)) for m in sink.metrics()}
    jobs_own = frozenset({(JOB_DIM, "example-job"), *own.items()})

    rows, searches = _series_of_rows(planned.dashboard_body())
    library = {m["name"] for m in CATALOG["metrics"] if m["emitter"] == "library"}
    for name, dims in rows:
        if name in library or name == DISTRIBUTION["name"]:
            assert dims == jobs_own, name
            assert (name, dims) in published or name in {"ETASeconds", "RecordsPerSecond"}, name
        elif name in SELF or STANDARD.get(name, {}).get("emitter") == "cost_tracker":
            assert not set(own) & {d for d, _ in dims}, name
    checked = {name for name, dims in rows if (name, dims) in published}
    assert {"RecordsProcessed", "ErrorCount", "ProgressPercentage", DISTRIBUTION["name"]} <= checked
    # The JobId drop-down lists the job; the stage SEARCH finds its stage.
    assert len(searches) == 2
    for query in searches:
        found = [p for p in published if search_matches(query, namespace, *p)]
        assert found, f"{query!r} matches nothing the worker published"
        assert all(name in ("RecordsProcessed", "ProgressPercentage") for name, _ in found)

    def alarm_dims(address: str) -> dict[str, str]:
        """The alarm's dimensions, or those every input of its metric math shares."""
        after = planned.change(address)["after"]
        if after["dimensions"]:
            return dict(after["dimensions"])
        inputs = [q["metric"][0]["dimensions"] for q in after["metric_query"] if q["metric"]]
        assert inputs
        assert all(dims == inputs[0] for dims in inputs), inputs
        return dict(inputs[0])

    job_1 = {JOB_DIM: "job-1", **own}
    assert alarm_dims('aws_cloudwatch_metric_alarm.job_stalled["job-1"]') == job_1
    assert alarm_dims('aws_cloudwatch_metric_alarm.error_rate["job-1"]') == job_1
    latency = f'aws_cloudwatch_metric_alarm.latency_p99["job-1/{DISTRIBUTION["name"]}"]'
    assert alarm_dims(latency) == job_1
    cost = 'aws_cloudwatch_metric_alarm.cost_over_budget["job-1"]'
    assert alarm_dims(cost) == {JOB_DIM: "job-1"}
    # The cost tracker publishes the progress of jobs whose workers are gone into the same
    # series (cost_tracker.handler reads METRICSKIT_DIMENSIONS).
    tracker = planned.change("aws_lambda_function.cost_tracker")["after"]
    tracker_env = tracker["environment"][0]["variables"]
    assert json.loads(tracker_env["METRICSKIT_DIMENSIONS"]) == own


def _library_accepts(check: Callable[[Any], Any], value: Any) -> bool:
    from metricskit.errors import MetricsKitError

    try:
        check(value)
    except MetricsKitError:
        return False
    return True


@pytest.mark.terraform
@pytest.mark.parametrize(
    "namespace", ["Batch Jobs", "Team:Jobs", ":Jobs", "AWS/Jobs", "a/b#c.d-e_f", "Bob's", "n\u00e9"]
)
def test_the_module_and_the_library_accept_the_same_namespaces(
    plan_module: Callable[..., Planned], namespace: str
) -> None:
    """A namespace the library refuses makes the workers fall back to "metricskit": outside
    the dashboard, the alarms and the worker policy's namespace condition."""
    from metricskit.validation import check_namespace

    planned = plan_module(namespace=namespace)
    accepted = _library_accepts(check_namespace, namespace)
    assert (planned.error == "") == accepted, planned.error or "the plan succeeded"
    if not accepted:
        assert "the library's rule" in planned.error


@pytest.mark.terraform
@pytest.mark.parametrize("name", ["Kafka Latency", "db/query", "n\u00e9", "x" * 256])
def test_the_module_and_the_library_accept_the_same_latency_metric_names(
    plan_module: Callable[..., Planned], name: str
) -> None:
    from metricskit.validation import check_metric_name

    planned = plan_module(latency_metric_names=[name])
    assert (planned.error == "") == _library_accepts(check_metric_name, name), planned.error


@pytest.mark.terraform
@pytest.mark.parametrize(
    "overrides",
    [
        {"ec2": {"spot": {"g5.xlarge": 0.45}}, "profiles": {"x:y": 1.0}, "region": "eu-west-1"},
        {"fargate": {"on_demand": {"vcpu_hour": 0.04, "gb_hour": 0.004}}},
        {"ec2": {"Spot": {"g5.xlarge": 0.45}}},
        {"ec2": {"spot": 5}},
        {"fargate": {"spot": {"vcpu": 0.01}}},
        {"profiles": 5},
        {"gpu": {}},
    ],
)
def test_the_module_and_the_cost_tracker_accept_the_same_pricing_overrides(
    plan_module: Callable[..., Planned], overrides: dict[str, Any]
) -> None:
    """An override the tracker refuses fails every scheduled run (no cost metric at all), so
    the plan must refuse exactly those."""
    from cost_tracker.pricing import check_override

    planned = plan_module(cost_tracker_pricing_overrides_json=json.dumps(overrides))
    accepted = _library_accepts(lambda value: check_override(value, "X"), overrides)
    assert (planned.error == "") == accepted, planned.error or "the plan succeeded"


@pytest.mark.terraform
@pytest.mark.parametrize(
    ("inputs", "accepted"),
    [
        ({"cost_tracker_schedule": "cron(0 12 * * ? *)"}, True),
        ({"cost_tracker_schedule": "cron(0/15 * ? * MON-FRI *)"}, True),
        ({"cost_tracker_schedule": "cron(0 12 * * *)"}, False),  # five fields: crontab's
        ({"cost_tracker_schedule": "cron(0 12 * * MON *)"}, False),  # no "?" in a day field
        ({"cost_tracker_schedule": "cron(0 12 ? * ? *)"}, False),  # "?" in both
        ({"job_table_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:alias/jobs"}, False),
        ({"dimensions": {"JobId": "x"}}, False),  # metricskit sets it
        ({"dimensions": {"RecordsProcessed": "x"}}, False),  # EMF could not write the metric
        ({"dimensions": {"Env": 'say "hi" \\ (now)'}}, True),  # escaped in SEARCH terms
        ({"dimensions": {"Env": "it's"}}, False),  # would end SEARCH('...'): no escape for it
        ({"dimensions": {"Team Name": "x"}}, False),  # unquoted in SEARCH schemas
        ({"dimensions": {f"D{n}": "v" for n in range(28)}}, False),  # 28 + JobId, Stage, ...
        ({"dimensions": {"Env": "prod-1 (eu)"}}, True),
        ({"sns_kms_key_arn": "not-an-arn"}, False),
        (
            {"sns_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd"},
            True,
        ),
    ],
)
def test_schedules_key_arns_and_dimensions_aws_would_refuse_or_ignore_fail_the_plan(
    plan_module: Callable[..., Planned], inputs: dict[str, Any], accepted: bool
) -> None:
    """EventBridge wants six cron fields with "?" in exactly one day field; IAM policies match
    a KMS key only by its key ARN (an alias ARN would grant nothing)."""
    planned = plan_module(**inputs)
    assert (planned.error == "") == accepted, planned.error or "the plan succeeded"


@pytest.mark.terraform
def test_cost_tracker_code_changed_outside_terraform_fails_the_plan(
    deployed: Deployment, tmp_path: Path
) -> None:
    """The provider no longer compares source_code_hash with the deployed code (5.51+): the
    postcondition is what keeps foreign code from running unnoticed."""
    import zipfile

    import tftest

    function_name = deployed.outputs["cost_tracker_function_name"]
    lambda_client = deployed.client("lambda")
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("cost_tracker/handler.py", "def handler(event, context):\n    return 1\n")
    lambda_client.update_function_code(FunctionName=function_name, ZipFile=foreign.read_bytes())
    try:
        with pytest.raises(tftest.TerraformTestError) as refused:
            deployed.tf.plan(tf_vars=deployed.tf_vars)
        # The error is the repr of terraform's output: its line breaks arrive as "\\n".
        message = " ".join(str(refused.value).replace("\\n", " ").split())
        assert "Resource postcondition failed" in message
        assert "changed outside Terraform" in message
        assert "-replace=" in message
    finally:
        lambda_client.update_function_code(
            FunctionName=function_name, ZipFile=deployed.zip_path.read_bytes()
        )
    deployed.tf.plan(tf_vars=deployed.tf_vars)  # the zip's own code again: the plan passes


@pytest.mark.terraform
def test_destroy_is_clean(deployed: Deployment) -> None:
    deployed.tf.destroy(tf_vars=deployed.tf_vars)
    deployed.destroyed = True
    assert deployed.tf.state_pull().resources == {}
    cloudwatch = deployed.client("cloudwatch")
    dashboards = cloudwatch.list_dashboards(DashboardNamePrefix=deployed.outputs["dashboard_name"])
    assert dashboards["DashboardEntries"] == []
    prefix = deployed.tf_vars["name_prefix"]
    assert cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"] == []
    assert (
        deployed.outputs["job_table_name"]
        not in deployed.client("dynamodb").list_tables()["TableNames"]
    )
    functions = deployed.client("lambda").list_functions()["Functions"]
    assert all(not f["FunctionName"].startswith(prefix) for f in functions)
