"""``make demo`` end to end with a small file: the summary matches what was produced, the PNG
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


def start_demo(out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METRICSKIT_"))}
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


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("demo")
    process = start_demo(out, "--pace", "4")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
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
    assert summary["estimated_cost"] > 0
    assert summary["cost_per_million"] == pytest.approx(
        summary["estimated_cost"] / summary["records"] * 1e6
    )
    assert f"{ROWS - malformed:,}" in stdout
    assert "dashboard" in stdout


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
    assert {"Throughput (records/s, all workers)", "KafkaLatency (ms)", "Records done"} <= {
        w["title"] for w in drawn
    }
    for widget in drawn:
        left, top, right, bottom = widget["box_px"]
        area = pixels[top:bottom, left:right]
        coloured = (area.max(axis=2) - area.min(axis=2)) > 0.25  # not white, grey or black
        assert coloured.sum() > 50, widget["title"]
    records_done = widgets["Records done"]["values"]["records done (job)"]
    assert records_done == report["summary"]["records"]
    assert widgets["Errors"]["values"]["errors"] == report["summary"]["errors"]
    assert widgets["Progress (%)"]["values"]["progress"] == 100.0


@pytest.mark.slow
def test_the_demo_leaves_no_process_behind(demo: tuple[str, dict[str, Any], Path]) -> None:
    stdout, _, _ = demo
    assert not [pid for pid in worker_pids(stdout) if alive(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_demo_stops_its_workers(tmp_path: Path, stop: signal.Signals) -> None:
    process = start_demo(tmp_path, "--pace", "120")
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
