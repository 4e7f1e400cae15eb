"""The wheel ships exactly the tracked package files, and works installed from it alone.

Built from a copy of the tracked files (a build in the checkout would leave build/ and
egg-info behind), without build isolation: the dev venv has the setuptools the build needs,
so no package index is asked.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import metricskit

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("metricskit", "cost_tracker")


def tracked_files() -> list[str]:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in listing.split("\0") if name]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in tracked_files():
        if (REPO / name).is_file():  # a tracked file deleted in the working tree is not built
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (built,) = out.glob("metricskit-*.whl")
    return built


def test_wheel_holds_exactly_the_tracked_package_files(wheel: Path) -> None:
    expected = {
        name for name in tracked_files() if name.split("/")[0] in PACKAGES and "/tests/" not in name
    }
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.split("/")[0] in PACKAGES}
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert shipped == expected
    # Nothing else at the top level: no tests/, examples/ or bench/ installed into site-packages.
    assert tops - set(PACKAGES) == {f"metricskit-{metricskit.__version__}.dist-info"}


def test_wheel_metadata_names_version_license_and_command(wheel: Path) -> None:
    info = f"metricskit-{metricskit.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        licenses = [name for name in archive.namelist() if name.startswith(f"{info}/licenses/")]
    assert metadata["Name"] == "metricskit"
    assert metadata["Version"] == metricskit.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Requires-Python"] == ">=3.11"
    assert any(req.startswith("boto3") for req in metadata.get_all("Requires-Dist") or [])
    assert licenses == [f"{info}/licenses/LICENSE"]
    assert "metricskit = metricskit.cli:main" in entry_points


def test_installed_wheel_imports_reads_its_catalog_and_runs(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # PYTHONPATH comes before the dev venv's editable install, so the wheel's copy is imported.
    script = (
        "import metricskit, cost_tracker.handler\n"
        "from metricskit import catalog\n"
        "from cost_tracker.pricing import PriceTable\n"
        "print(metricskit.__file__)\n"
        "print(len(catalog.standard_metrics()) > 0 and PriceTable.load({}).hourly_rate("
        "'fargate:4vcpu:8gb') > 0)\n"
        "job = metricskit.Job('wheel', sink='memory', total=2)\n"
        "job.processed(2)\n"
        "job.close()\n"
        "print(job.status().done)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    location, has_catalog, done = run.stdout.split()
    assert Path(location).is_relative_to(site)
    assert has_catalog == "True"
    assert done == "2.0"
    version = subprocess.run(
        [sys.executable, "-m", "metricskit", "--version"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert metricskit.__version__ in version.stdout
