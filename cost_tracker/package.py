"""Deterministic Lambda zip of ``cost_tracker`` and ``metricskit`` (boto3 is in the runtime).

The same sources give the same bytes, so the same base64 SHA-256 (what Lambda reports as
``CodeSha256``); a changed source gives a new hash, so Terraform's ``source_code_hash``
changes and the function is redeployed. Determinism comes from: files in sorted order,
a fixed timestamp (1980-01-01, the earliest a zip can hold), fixed permissions (0644),
a fixed creator system, no ``__pycache__``/``*.pyc``, and no compression: entries are
*stored*, so the bytes depend on the sources alone. DEFLATE output depends on the zlib build
(zlib-ng, or a distribution's patched zlib, gives other bytes for the same input), so a
compressed zip built elsewhere would get another hash, and ``cost_tracker.verify`` would call
the deployed code STALE. The sources are a few hundred KB, far below Lambda's limits
(:data:`LAMBDA_ZIPPED_LIMIT_BYTES`).

Usage::

    python -m cost_tracker.package --out build/
    build/cost_tracker.zip
    3q2+7w...=            # base64 SHA-256, equal to the deployed function's CodeSha256

``--json`` prints ``{"path": ..., "code_sha256": ...}`` instead (for Terraform's
``external`` data source).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

PACKAGES: Final = ("cost_tracker", "metricskit")
INCLUDED_SUFFIXES: Final = frozenset({".py", ".json", ".typed"})
ZIP_NAME: Final = "cost_tracker.zip"
FIXED_TIME: Final = (1980, 1, 1, 0, 0, 0)
FILE_MODE: Final = 0o100644  # regular file, rw-r--r--
UNIX_SYSTEM: Final = 3
LAMBDA_ZIPPED_LIMIT_BYTES: Final = 50 * 1024 * 1024
"""The largest .zip Lambda accepts uploaded directly (its contents may reach 250 MB):
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"""


def default_source_root() -> Path:
    """The folder that holds the ``cost_tracker`` and ``metricskit`` packages."""
    return Path(__file__).resolve().parent.parent


def source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(archive name, path) of every packaged file, in a fixed order."""
    found: list[tuple[str, Path]] = []
    for package in PACKAGES:
        base = root / package
        if not (base / "__init__.py").is_file():
            raise FileNotFoundError(f"{base} is not a Python package")
        for path in base.rglob("*"):
            relative = path.relative_to(root)
            if (
                path.is_file()
                and path.suffix in INCLUDED_SUFFIXES
                and "__pycache__" not in relative.parts
            ):
                found.append((relative.as_posix(), path))
    yield from sorted(found)


def build_zip(out_dir: Path, source_root: Path | None = None) -> tuple[Path, str]:
    """Write the zip into ``out_dir``; return its path and base64 SHA-256.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     path, sha = build_zip(Path(out))
    >>> path.name, len(sha)
    ('cost_tracker.zip', 44)
    """
    root = source_root or default_source_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIP_NAME
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in source_files(root):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_STORED  # see the module docstring: no zlib
            info.create_system = UNIX_SYSTEM
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, path.read_bytes())
    return target, code_sha256(target)


def code_sha256(path: Path) -> str:
    """Base64 of the SHA-256 of the file: Lambda's ``CodeSha256``."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode("ascii")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cost_tracker.package", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write the zip into")
    parser.add_argument(
        "--source-root",
        type=Path,
        default=None,
        help="folder holding cost_tracker/ and metricskit/ (default: this installation's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    path, sha = build_zip(args.out, args.source_root)
    if args.json:
        print(json.dumps({"path": str(path), "code_sha256": sha}))
    else:
        print(path)
        print(sha)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
