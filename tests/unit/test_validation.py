"""Definition-time errors are typed and say what is allowed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import metricskit
from metricskit.errors import ConfigurationError, InvalidDimensionError, InvalidMetricError


@pytest.fixture
def job() -> Iterator[metricskit.Job]:
    job = metricskit.Job("job-1", sink="memory")
    yield job
    job.close()  # its flusher thread must not outlive the test (later tests fork)


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        ("", "non-empty"),
        ("AWS/EC2", "reserved"),
        (":jobs", "may not start with ':'"),
        ("has space", "letters, digits"),
        ("x" * 256, "at most 255"),
    ],
)
def test_bad_namespace_raises(namespace: str, message: str) -> None:
    with pytest.raises(InvalidMetricError, match=message):
        metricskit.Job("j", namespace=namespace, sink="off")


def test_bad_unit_lists_the_cloudwatch_units(job: metricskit.Job) -> None:
    with pytest.raises(InvalidMetricError, match="allowed: Bits, Bits/Second"):
        job.observe("Latency", 1.0, unit="ms")


@pytest.mark.parametrize("name", ["", "x" * 256, "caf\u00e9", None])
def test_bad_metric_names_raise(job: metricskit.Job, name: object) -> None:
    with pytest.raises(InvalidMetricError):
        job.gauge(name, 1.0)  # type: ignore[arg-type]


def test_standard_names_are_reserved(job: metricskit.Job) -> None:
    with pytest.raises(InvalidMetricError, match="processed, failed"):
        job.observe("RecordsProcessed", 1.0)


def test_one_name_cannot_change_unit_or_kind(job: metricskit.Job) -> None:
    job.observe("Latency", 1.0)
    with pytest.raises(InvalidMetricError, match="'Milliseconds'"):
        job.observe("Latency", 1.0, unit="Seconds")
    with pytest.raises(InvalidMetricError, match="already a distribution"):
        job.gauge("Latency", 1.0)


def test_too_many_dimensions_counts_the_ones_metricskit_adds() -> None:
    dims = {f"D{i}": "v" for i in range(29)}
    with pytest.raises(InvalidDimensionError, match=r"31 dimensions per series.*at most 30"):
        metricskit.Job("j", sink="off", dimensions=dims)
    job = metricskit.Job("j", sink="off", dimensions={f"D{i}": "v" for i in range(28)})
    job.close()


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ({"JobId": "x"}, "reserved names"),
        ({"Env": ""}, "1 to 1024"),
        ({"Env": "x" * 1025}, "1 to 1024"),
        ({":Env": "prod"}, "may not start"),
        ({"Env": 3}, "must be a string"),
    ],
)
def test_bad_dimensions_raise(dims: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidDimensionError, match=message):
        metricskit.Job("j", sink="off", dimensions=dims)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["_aws", "MetricskitDistributions"])
def test_dimension_and_metric_names_of_emf_members_raise_and_list_the_reserved_names(
    name: str,
) -> None:
    """Such a dimension would overwrite a member every EMF document has (``_aws``: no
    document valid, while export reported success)."""
    with pytest.raises(InvalidDimensionError, match=r"reserved names: .*JobId, .*Stage, .*_aws"):
        metricskit.Job("j", sink="off", dimensions={name: "x"})
    job = metricskit.Job("j", sink="off")
    try:
        with pytest.raises(InvalidMetricError, match="reserved names: MetricskitDistributions"):
            job.observe(name, 1.0)
        with pytest.raises(InvalidMetricError, match="reserved"):
            job.gauge(name, 1.0)
    finally:
        job.close()


@pytest.mark.parametrize("stage", [False, True])
@pytest.mark.parametrize("name", ["Env", "JobId", "WorkerId", "Stage"])
def test_a_metric_named_like_a_dimension_raises_whatever_the_sink(name: str, stage: bool) -> None:
    """EMF writes dimensions and metrics as members of one object: such a metric could never
    be published there, so it is refused at definition, where switching sinks cannot hide it."""
    job = metricskit.Job("j", sink="off", dimensions={"Env": "prod"})
    recorder = job.stage("load") if stage else job
    try:
        for define in (
            lambda: recorder.observe(name, 1.0),
            lambda: recorder.timer(name),
            lambda: recorder.gauge(name, 1.0),
            lambda: recorder.distribution(name),
        ):
            with pytest.raises(InvalidMetricError, match=rf"metric '{name}' is named like a dim"):
                define()
        recorder.gauge("EnvCount", 1.0)  # a name that only starts like one is fine
    finally:
        job.close()


@pytest.mark.parametrize("name", ["RecordsProcessed", "ETASeconds", "MetricskitRetries"])
def test_a_dimension_named_like_a_metricskit_metric_raises(name: str) -> None:
    with pytest.raises(InvalidDimensionError, match=rf"dimension '{name}' is reserved"):
        metricskit.Job("j", sink="off", dimensions={name: "x"})


def test_bad_job_id_and_total_raise() -> None:
    with pytest.raises(InvalidDimensionError):
        metricskit.Job("", sink="off")
    with pytest.raises(ConfigurationError, match="total must be"):
        metricskit.Job("j", sink="off", total=-1)


def test_sink_object_without_export_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="export"):
        metricskit.Job("j", sink=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: metricskit.Job("j", sink="off", dimensions={"   ": "prod"}),
        lambda: metricskit.Job("j", sink="off", dimensions={"Env": "   "}),
        lambda: metricskit.Job("   ", sink="off"),
        lambda: metricskit.Job("j", sink="off", worker_id=" "),
    ],
)
def test_whitespace_only_dimension_names_and_values_raise(build: Callable[[], object]) -> None:
    """CloudWatch wants at least one non-whitespace character in each dimension name and value."""
    with pytest.raises(InvalidDimensionError, match="at least one character that is not a space"):
        build()


def test_a_whitespace_only_stage_name_raises() -> None:
    job = metricskit.Job("j", sink="off")
    try:
        with pytest.raises(InvalidDimensionError, match="not a space"):
            job.stage("  ")
    finally:
        job.close()


def test_dimensions_with_inner_spaces_are_still_accepted() -> None:
    job = metricskit.Job("j", sink="off", dimensions={"Data Set": " eu west "})
    job.close()
    assert ("Data Set", " eu west ") in job.dimensions
