"""Cost tracker pieces without AWS: profiles, prices, overrides, item checks, periods, time."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cost_tracker.cost_explorer import CostSnapshot, build_request, query_period
from cost_tracker.handler import estimated_cost, event_time, progress_metrics
from cost_tracker.pricing import PriceTable, UnknownProfileError, parse_profile
from metricskit import catalog
from metricskit.errors import ConfigurationError, MetricsKitError
from metricskit.job_record import JobRecord

FARGATE_VCPU = 0.04048
FARGATE_GB = 0.004445


@pytest.fixture
def prices() -> PriceTable:
    return PriceTable.load(environ={})


def test_the_shipped_table_names_its_source_date_and_region(prices: PriceTable) -> None:
    assert prices.data["region"] == "us-east-1"
    assert dt.date.fromisoformat(prices.retrieved)
    assert set(prices.data["sources"]) >= {"fargate_on_demand", "ec2_on_demand", "ec2_spot"}
    for instance in ("g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g5.2xlarge", "m5.large"):
        on_demand = prices.hourly_rate(f"ec2:{instance}")
        spot = prices.hourly_rate(f"ec2-spot:{instance}")
        assert 0 < spot < on_demand


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("fargate:4vcpu:8gb", 4 * FARGATE_VCPU + 8 * FARGATE_GB),
        ("fargate:0.25vcpu:0.5gb", 0.25 * FARGATE_VCPU + 0.5 * FARGATE_GB),
        ("batch-fargate:4vcpu:8gb", 4 * FARGATE_VCPU + 8 * FARGATE_GB),
        ("fargate-spot:2vcpu:4gb", 2 * 0.01264791 + 4 * 0.00138883),
        ("batch-fargate-spot:2vcpu:4gb", 2 * 0.01264791 + 4 * 0.00138883),
        ("ec2:g5.xlarge", 1.006),
        ("batch-ec2:g4dn.xlarge", 0.526),
        ("ec2:G4DN.2XLARGE", 0.752),
    ],
)
def test_profiles_are_priced_from_the_table(
    prices: PriceTable, profile: str, expected: float
) -> None:
    assert prices.hourly_rate(profile) == pytest.approx(expected)


def test_batch_and_spot_use_the_same_capacity_prices(prices: PriceTable) -> None:
    assert prices.hourly_rate("batch-ec2-spot:g5.2xlarge") == prices.hourly_rate(
        "ec2-spot:g5.2xlarge"
    )


@pytest.mark.parametrize(
    "profile",
    ["", "fargate", "fargate:4cpu:8gb", "fargate:0vcpu:8gb", "lambda:1gb", "ec2:", "tpu:v4"],
)
def test_malformed_profiles_raise_and_list_the_allowed_forms(profile: str) -> None:
    with pytest.raises(UnknownProfileError, match=r"fargate:<N>vcpu:<M>gb.*ec2-spot"):
        parse_profile(profile)


@pytest.mark.parametrize(
    "profile",
    [
        "ec2:c7i.metal-24xl",
        "ec2-spot:m7i.metal-48xl",
        "batch-ec2:r7i.metal-48xl",
        "ec2:u-6tb1.metal",
    ],
)
def test_instance_types_with_a_hyphen_in_the_size_are_priced_from_an_override(
    profile: str,
) -> None:
    """Real EC2 types such as c7i.metal-24xl have a hyphen in the size part."""
    instance = profile.split(":", 1)[1]
    assert parse_profile(profile).instance_type == instance
    market = "spot" if "-spot:" in profile else "on_demand"
    overrides = json.dumps({"ec2": {market: {instance: 4.5}}})
    table = PriceTable.load(environ={"COST_TRACKER_PRICING_OVERRIDES": overrides})
    assert table.hourly_rate(profile) == pytest.approx(4.5)


@pytest.mark.parametrize("profile", ["ec2:c7i.metal-", "ec2:c7i.-24xl", "ec2:c7i.metal--24xl"])
def test_a_size_with_a_stray_hyphen_is_still_malformed(profile: str) -> None:
    with pytest.raises(UnknownProfileError, match=r"ec2:<instance-type>"):
        parse_profile(profile)


def test_an_instance_type_without_a_price_is_reported_not_guessed(prices: PriceTable) -> None:
    with pytest.raises(UnknownProfileError, match=r"no EC2 spot price for 'p5.48xlarge'") as info:
        prices.hourly_rate("ec2-spot:p5.48xlarge")
    assert isinstance(info.value, MetricsKitError)
    assert "g5.xlarge" in str(info.value)  # the message lists what is known


def test_environment_overrides_change_one_rate_and_keep_the_rest(tmp_path: Path) -> None:
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"fargate": {"on_demand": {"vcpu_hour": 0.05}}}))
    overrides = {"ec2": {"spot": {"g5.xlarge": 0.45}}, "profiles": {"ec2:custom.big": 9.5}}
    table = PriceTable.load(
        environ={
            "COST_TRACKER_PRICING_FILE": str(file),
            "COST_TRACKER_PRICING_OVERRIDES": json.dumps(overrides),
        }
    )
    assert table.hourly_rate("ec2-spot:g5.xlarge") == 0.45
    assert table.hourly_rate("ec2-spot:g4dn.xlarge") == PriceTable.load(environ={}).hourly_rate(
        "ec2-spot:g4dn.xlarge"
    )
    assert table.hourly_rate("fargate:1vcpu:2gb") == pytest.approx(0.05 + 2 * FARGATE_GB)
    assert table.hourly_rate("ec2:custom.big") == 9.5


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]"])
def test_unparsable_overrides_raise_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="COST_TRACKER_PRICING_OVERRIDES"):
        PriceTable.load(environ={"COST_TRACKER_PRICING_OVERRIDES": raw})


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("5", "got a number"),
        ('"text"', "got a string"),
        ('{"ec2": 5}', "ec2 must be an object"),
        ('{"ec2": {"spot": 0.45}}', "ec2.spot must be an object"),
        ('{"ec2": {"ondemand": {"m5.large": 0.1}}}', "ec2.ondemand is not one of"),
        ('{"fargate": {"on_demand": 0.04}}', "fargate.on_demand must be an object"),
        ('{"fargate": {"spot": {"cpu_hour": 0.01}}}', "fargate.spot.cpu_hour is not one of"),
        ('{"profiles": ["ec2:g5.xlarge", 1.0]}', "profiles must be an object"),
        ('{"ec22": {}}', "ec22 is not one of"),
    ],
)
def test_an_override_of_the_wrong_shape_is_refused_at_load_naming_the_variable(
    raw: str, problem: str
) -> None:
    """Not a per-job AttributeError ("internal error") later: the run stops at load and says
    which variable is wrong and what shape it must have."""
    with pytest.raises(ConfigurationError) as refused:
        PriceTable.load(environ={"COST_TRACKER_PRICING_OVERRIDES": raw})
    message = str(refused.value)
    assert "COST_TRACKER_PRICING_OVERRIDES" in message
    assert problem in message
    assert '"ec2": {"on_demand" | "spot": {"<instance-type>": <rate>}}' in message


def test_a_pricing_file_of_the_wrong_shape_is_refused_naming_its_variable(tmp_path: Path) -> None:
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"profiles": 3}))
    with pytest.raises(ConfigurationError, match=r"COST_TRACKER_PRICING_FILE.*profiles must be"):
        PriceTable.load(environ={"COST_TRACKER_PRICING_FILE": str(file)})


def test_a_garbage_override_value_is_reported_when_used() -> None:
    table = PriceTable.load(
        environ={"COST_TRACKER_PRICING_OVERRIDES": '{"ec2": {"on_demand": {"m5.large": "x"}}}'}
    )
    with pytest.raises(UnknownProfileError, match="not a number"):
        table.hourly_rate("ec2:m5.large")


def test_estimate_uses_worker_seconds_then_wall_time_times_workers() -> None:
    with_seconds = JobRecord("a", "running", started_at=0.0, worker_seconds=5400.0)
    assert estimated_cost(with_seconds, 2.0, now=99_999.0) == pytest.approx(3.0)
    wall = JobRecord("b", "running", started_at=1000.0, workers=3)
    assert estimated_cost(wall, 1.0, now=1000.0 + 7200) == pytest.approx(6.0)
    finished = JobRecord("c", "completed", started_at=0.0, finished_at=3600.0)
    assert estimated_cost(finished, 1.0, now=1e9) == pytest.approx(1.0)
    # Workers silent for longer than stale_after died without closing: they stopped costing
    # at their last heartbeat, however long the item still says running.
    dead = JobRecord("d", "running", started_at=0.0, heartbeat_at=3600.0, workers=2)
    assert estimated_cost(dead, 1.0, now=30 * 86_400.0, stale_after=600) == pytest.approx(2.0)
    alive = JobRecord("e", "running", started_at=0.0, heartbeat_at=7000.0, workers=2)
    assert estimated_cost(alive, 1.0, now=7200.0, stale_after=600) == pytest.approx(4.0)


def test_progress_of_a_job_whose_workers_are_gone_has_no_eta() -> None:
    """Dead workers finish nothing: an ETA "if resumed" (75 left at 0.25/s = 300 s) would go
    into the series the live workers publish theirs to and promise a near finish."""
    job = JobRecord("j", "running", started_at=0.0, heartbeat_at=100.0, done=25.0, total=100.0)
    values = progress_metrics(job)
    assert values == {
        catalog.RECORDS_DONE: 25.0,
        catalog.RECORDS_TOTAL: 100.0,
        catalog.PROGRESS_PERCENTAGE: 25.0,
    }
    no_total = progress_metrics(JobRecord("k", "running", started_at=0.0, done=3.0))
    assert no_total == {catalog.RECORDS_DONE: 3.0}


def test_now_comes_from_the_event_time_else_the_clock() -> None:
    assert (
        event_time({"time": "2026-11-23T12:00:00Z"})
        == dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC).timestamp()
    )
    assert (
        event_time({"time": "2026-11-23T12:00:00+01:00"})
        == dt.datetime(2026, 11, 23, 11, tzinfo=dt.UTC).timestamp()
    )
    assert event_time({}, clock=lambda: 42.0) == 42.0
    assert event_time({"time": "yesterday"}, clock=lambda: 7.0) == 7.0
    assert event_time(None, clock=lambda: 8.0) == 8.0


def test_the_query_covers_the_month_and_the_earliest_current_job() -> None:
    now = dt.datetime(2026, 3, 15, 10, tzinfo=dt.UTC).timestamp()
    assert query_period(now, []) == ("2026-03-01", "2026-03-16")
    feb = dt.datetime(2026, 2, 20, tzinfo=dt.UTC).timestamp()
    assert query_period(now, [now, feb]) == ("2026-02-20", "2026-03-16")
    ancient = dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()
    # A start from long ago (a job item's started_at = 0, say) takes the period back at most
    # MAX_LOOKBACK_DAYS (31), not a year: one item cannot widen every refresh.
    assert query_period(now, [ancient]) == ("2026-02-12", "2026-03-16")
    assert query_period(now, [0.0, feb]) == ("2026-02-12", "2026-03-16")
    request = build_request(now, [])
    assert request["Granularity"] == "MONTHLY"
    assert [g["Key"] for g in request["GroupBy"]] == ["JobId", "CostCategory"]


def test_snapshots_survive_the_cache_round_trip() -> None:
    snapshot = CostSnapshot(
        status="ok", fetched_at=12.5, month="2026-11", job_costs={"a": 1.5}, monthly={"T": 2.0}
    )
    assert CostSnapshot.from_json(snapshot.to_json()) == snapshot
    assert snapshot.job_status("a") == "ok"
    assert snapshot.job_status("b") == "no_data"
    failed = CostSnapshot(status="error", fetched_at=1.0, error_code="AccessDeniedException")
    assert failed.job_status("a") == "error:AccessDeniedException"
