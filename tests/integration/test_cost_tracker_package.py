"""The Lambda zip: deterministic bytes, a new hash for a changed source, importable as is."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from cost_tracker.package import (
    LAMBDA_ZIPPED_LIMIT_BYTES,
    PACKAGES,
    build_zip,
    default_source_root,
)


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    """A private copy of the packaged sources (with a stray __pycache__ to be left out)."""
    root = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(
            default_source_root() / package,
            root / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    stray = root / "cost_tracker" / "__pycache__"
    stray.mkdir()
    (stray / "handler.cpython-311.pyc").write_bytes(b"\x00junk")
    return root


def test_two_builds_of_the_same_sources_are_byte_identical(
    source_copy: Path, tmp_path: Path
) -> None:
    first, first_sha = build_zip(tmp_path / "a", source_copy)
    # Touching files changes their mtimes, which must not reach the zip.
    for path in source_copy.rglob("*.py"):
        path.touch()
    second, second_sha = build_zip(tmp_path / "b", source_copy)
    assert first.read_bytes() == second.read_bytes()
    assert first_sha == second_sha
    digest = hashlib.sha256(first.read_bytes()).digest()
    assert base64.b64decode(first_sha) == digest


def test_the_zip_bytes_do_not_depend_on_the_zlib_build(
    source_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another zlib (zlib-ng, a patched one) compresses the same input to other bytes: a zip
    built with it would get another CodeSha256. Here the "other zlib" compresses at level 1."""
    first, first_sha = build_zip(tmp_path / "a", source_copy)
    real = zlib.compressobj

    def other_zlib(level: int = -1, *args: Any, **kwargs: Any) -> Any:
        return real(1, *args, **kwargs)

    monkeypatch.setattr(zipfile.zlib, "compressobj", other_zlib)
    second, second_sha = build_zip(tmp_path / "b", source_copy)
    assert first.read_bytes() == second.read_bytes()
    assert first_sha == second_sha
    with zipfile.ZipFile(first) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    assert first.stat().st_size < LAMBDA_ZIPPED_LIMIT_BYTES / 10  # far below the limit


def test_a_changed_source_gives_a_new_hash(source_copy: Path, tmp_path: Path) -> None:
    _, before = build_zip(tmp_path / "a", source_copy)
    handler = source_copy / "cost_tracker" / "handler.py"
    handler.write_text(handler.read_text() + "\n# changed\n")
    _, after = build_zip(tmp_path / "b", source_copy)
    assert before != after


def test_the_zip_holds_both_packages_and_nothing_else(source_copy: Path, tmp_path: Path) -> None:
    path, _ = build_zip(tmp_path / "out", source_copy)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert "cost_tracker/handler.py" in names
    assert "cost_tracker/pricing.json" in names
    assert "metricskit/catalog.json" in names
    assert all(name.split("/")[0] in PACKAGES for name in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith(("boto3", "botocore"))]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_the_command_prints_the_path_and_the_lambda_code_sha256(
    source_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cost_tracker.package",
            "--out",
            str(out),
            "--source-root",
            str(source_copy),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    path_line, sha_line = result.stdout.strip().splitlines()
    zip_path = Path(path_line)
    assert zip_path == out / "cost_tracker.zip"
    assert zip_path.is_file()
    assert sha_line == base64.b64encode(hashlib.sha256(zip_path.read_bytes()).digest()).decode()


def test_the_handler_imports_from_the_zip_alone(source_copy: Path, tmp_path: Path) -> None:
    """What Lambda does: the zip on sys.path, no site-packages (boto3 is imported lazily)."""
    path, _ = build_zip(tmp_path / "out", source_copy)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import cost_tracker.handler as h, cost_tracker.pricing as p;"
        "assert h.__file__.startswith(sys.argv[1]), h.__file__;"
        "print(p.PriceTable.load(environ={}).hourly_rate('ec2:g5.xlarge'))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.006"


def test_the_json_form_names_the_same_zip_and_hash(source_copy: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cost_tracker.package",
            "--json",
            "--out",
            str(tmp_path / "j"),
            "--source-root",
            str(source_copy),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = json.loads(result.stdout)
    path, sha = build_zip(tmp_path / "k", source_copy)
    assert printed["code_sha256"] == sha
    assert Path(printed["path"]).read_bytes() == path.read_bytes()
