"""Check that the deployed cost tracker runs the code in this checkout.

    python -m cost_tracker.verify FUNCTION_NAME [--source-root DIR]

Builds the deterministic zip, asks Lambda for the function's ``CodeSha256`` and compares.
Exit 0 when they match, 1 when the deployed code is stale or different, 2 when Lambda could
not be asked. (A team once ran six-hour-old Lambda code for a day because nothing tied the
deployed code to the source; this makes the tie checkable in CI or by hand.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cost_tracker.package import build_zip

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient


def deployed_code_sha256(function_name: str, client: LambdaClient | None = None) -> str:
    """The ``CodeSha256`` Lambda reports for ``function_name``."""
    if client is None:
        import boto3

        client = boto3.client("lambda")
    response = client.get_function_configuration(FunctionName=function_name)
    return str(response["CodeSha256"])


def local_code_sha256(source_root: Path | None = None) -> str:
    """The base64 SHA-256 of the zip this checkout builds."""
    with tempfile.TemporaryDirectory() as tmp:
        _, sha = build_zip(Path(tmp), source_root)
    return sha


def main(argv: Sequence[str] | None = None, client: LambdaClient | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cost_tracker.verify", description=__doc__.splitlines()[0]
    )
    parser.add_argument("function_name")
    parser.add_argument("--source-root", type=Path, default=None)
    args = parser.parse_args(argv)
    local = local_code_sha256(args.source_root)
    try:
        deployed = deployed_code_sha256(args.function_name, client)
    except Exception as exc:  # any AWS or credential error: say so, distinctly
        print(f"could not read {args.function_name}'s configuration: {exc}", file=sys.stderr)
        return 2
    if deployed == local:
        print(f"OK: {args.function_name} runs this checkout's code (CodeSha256 {local})")
        return 0
    print(
        f"STALE: {args.function_name} runs CodeSha256 {deployed}, this checkout builds {local};"
        " run terraform apply to deploy it"
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
