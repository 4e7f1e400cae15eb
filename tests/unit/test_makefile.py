"""The Makefile's choice of virtual environment: reused, made again, or refused.

Each case runs ``make -n venv`` on a copy of the Makefile in a scratch directory whose
``.venv/bin/python`` and ``PYTHON`` are small scripts answering the version question, so no
real venv is made and the checkout's own ``.venv`` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def fake_python(path: Path, version: str) -> Path:
    """An interpreter that says it is ``version`` and passes the venv's pip check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\ncase "$*" in *import\\ pip*) exit 0;; esac\necho {version}\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "constraints").mkdir()
    for name in ("pyproject.toml", "constraints/dev.txt"):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1_000_000, 1_000_000))  # older than any stamp
    return tmp_path


def make_venv(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-n", "venv", *args], cwd=project, capture_output=True, text=True, check=False
    )


def installed(project: Path, version: str) -> None:
    fake_python(project / ".venv/bin/python", version)
    (project / ".venv/.installed").write_text("")


def test_a_venv_of_the_named_version_is_reused(project: Path) -> None:
    installed(project, "3.11")
    python = fake_python(project / "bin/python3.11", "3.11")
    run = make_venv(project, f"PYTHON={python}")
    assert run.returncode == 0, run.stderr
    assert "Nothing to be done" in run.stdout
    assert (project / ".venv/.installed").exists()


def test_naming_another_interpreter_makes_the_venv_again(project: Path) -> None:
    installed(project, "3.11")
    python = fake_python(project / "bin/python3.12", "3.12")
    run = make_venv(project, f"PYTHON={python}")
    assert run.returncode == 0, run.stderr
    assert not (project / ".venv/.installed").exists()
    # The dry run shows the check comparing with 3.12, and the rebuild with the named one.
    assert '"3.12" not in ("", v)' in run.stdout
    assert f"rm -rf .venv && {python} -m venv .venv" in run.stdout


def test_a_missing_named_interpreter_is_refused_not_ignored(project: Path) -> None:
    installed(project, "3.11")
    run = make_venv(project, "PYTHON=python3.99-not-here")
    assert run.returncode != 0
    assert "PYTHON=python3.99-not-here: no such Python interpreter" in run.stderr
    assert (project / ".venv/.installed").exists()


def test_a_half_made_venv_is_made_again(project: Path) -> None:
    (project / ".venv").mkdir()
    python = fake_python(project / "bin/python3.11", "3.11")
    run = make_venv(project, f"PYTHON={python}")
    assert run.returncode == 0, run.stderr
    assert f"rm -rf .venv && {python} -m venv .venv" in run.stdout
