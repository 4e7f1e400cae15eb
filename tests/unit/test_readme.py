"""The README's three-line usage runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from metricskit import catalog
from metricskit.cli import main as cli_main
from metricskit.testing import capture

README = Path(__file__).resolve().parents[2] / "README.md"


def usage_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python block"
    return str(blocks[0])


class Producer:
    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, row: object) -> None:
        self.sent.append(row)


def test_readme_usage_runs_as_written_and_publishes_what_it_recorded() -> None:
    rows = list(range(1234))
    producer = Producer()
    with capture() as sink:
        exec(usage_snippet(), {"rows": rows, "producer": producer})
    assert producer.sent == rows
    assert sink.sum(catalog.RECORDS_PROCESSED, JobId="csv-job-1") == 1234
    assert sink.count("KafkaLatency") == 1234
    assert sink.last(catalog.RECORDS_TOTAL) == 1_000_000
    assert sink.batches[0].namespace == "CSVToKafka"


def test_cli_catalog_lists_every_metric(capsys: object) -> None:
    assert cli_main(["catalog"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    for entry in catalog.standard_metrics():
        assert entry.name in out


def test_cli_count_lines_counts_a_local_file(tmp_path: object, capsys: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "rows.csv"
    path.write_text("a\nb\nc")  # a last line without a newline still counts
    assert cli_main(["count-lines", str(path), "--no-cache"]) == 0
    assert capsys.readouterr().out.strip() == "3"  # type: ignore[attr-defined]


def test_cli_jobs_without_a_table_says_how_to_name_one(capsys: object) -> None:
    assert cli_main(["jobs"]) == 2
    assert "METRICSKIT_JOB_TABLE" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_every_configuration_variable_is_documented_in_the_readme() -> None:
    from metricskit import config

    text = README.read_text()
    missing = [name for name in config.ALL_VARIABLES if name not in text]
    assert missing == []


def test_pip_install_metricskit_brings_what_the_default_sink_needs() -> None:
    """`pip install metricskit` and the three lines publish to CloudWatch: boto3 is a base
    dependency, not only an extra."""
    import tomllib

    from metricskit import config

    project = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
    assert config.DEFAULT_SINK == "cloudwatch"
    base = [re.split(r"[<>=!~\[; ]", dep)[0] for dep in project["dependencies"]]
    assert "boto3" in base
    assert "boto3>=1.28" in project["optional-dependencies"]["cloudwatch"]  # old installs


def test_the_progress_guide_shows_byte_progress_readers_real_signature() -> None:
    import inspect

    from metricskit.progress import ByteProgressReader

    parts: list[str] = []
    for parameter in inspect.signature(ByteProgressReader).parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        default = "" if parameter.default is parameter.empty else f"={parameter.default!r}"
        parts.append(parameter.name + default)
    guide = (README.parent / "docs" / "PROGRESS_AND_ETA.md").read_text()
    assert f"`ByteProgressReader({', '.join(parts)})`" in guide
