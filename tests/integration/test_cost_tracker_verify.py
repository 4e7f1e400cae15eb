"""The deployed-code check tells a current Lambda from a stale one (against moto)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest

from cost_tracker.package import build_zip
from cost_tracker.verify import main as verify

REPO = Path(__file__).resolve().parents[2]


def deploy(zip_path: Path, name: str) -> None:
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="cost_tracker.handler.handler",
        Code={"ZipFile": zip_path.read_bytes()},
    )


def test_verify_says_ok_for_current_code_and_stale_after_a_source_change(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "src"
    for package in ("cost_tracker", "metricskit"):
        shutil.copytree(REPO / package, source / package)
    zip_path, _ = build_zip(tmp_path / "dist", source)
    deploy(zip_path, "verify-tracker")
    lam = boto3.client("lambda")
    assert verify(["verify-tracker", "--source-root", str(source)], client=lam) == 0
    assert "OK" in capsys.readouterr().out
    handler = source / "cost_tracker" / "handler.py"
    handler.write_text(handler.read_text() + "\n# changed\n")
    assert verify(["verify-tracker", "--source-root", str(source)], client=lam) == 1
    assert "STALE" in capsys.readouterr().out
    assert verify(["no-such-function"], client=lam) == 2
