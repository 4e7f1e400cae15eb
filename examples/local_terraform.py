"""Apply the Terraform module (``terraform/examples/complete``) against the demo's local AWS.

The module's files are copied to a temporary folder first, so ``.terraform/``, the lock file
and the state never land in the checkout; the folder is removed once the outputs are read
(the moto server, and so everything applied, lives only as long as the demo anyway).
Providers come from the on-disk mirror configured by ``TF_CLI_CONFIG_FILE`` (the Makefile
points it at ``terraform/tests/terraformrc``, which reads ``/opt/tf-plugins``): no network.

>>> outputs = apply_complete_example(endpoint, zip_path, tf_vars)    # doctest: +SKIP
>>> outputs["job_table_name"]                                         # doctest: +SKIP
'metricskit-demo-jobs'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
TF_DIR: Final = REPO / "terraform"
EXAMPLE: Final = "examples/complete"
MIRROR: Final = Path("/opt/tf-plugins")
TERRAFORMRC: Final = TF_DIR / "tests" / "terraformrc"
INIT_TIMEOUT_SECONDS: Final = 120.0
APPLY_TIMEOUT_SECONDS: Final = 240.0
STOP_GRACE_SECONDS: Final = 10.0


class TerraformError(RuntimeError):
    """terraform is missing, or one of its commands failed; the message says which and why."""


def cli_config() -> tuple[str | None, str | None]:
    """(TF_CLI_CONFIG_FILE to use, None) when Terraform can run offline, else (None, why not).

    A ``TF_CLI_CONFIG_FILE`` that names an existing file is used as is; otherwise the repo's
    mirror configuration, when the mirror ``/opt/tf-plugins`` exists.
    """
    if shutil.which("terraform") is None:
        return None, "terraform is not on PATH"
    configured = os.environ.get("TF_CLI_CONFIG_FILE", "")
    # The Makefile always names the repo's file, which is only usable with its mirror.
    names_ours = bool(configured) and Path(configured).resolve() == TERRAFORMRC.resolve()
    if configured and Path(configured).is_file() and not names_ours:
        return configured, None
    if MIRROR.is_dir():
        return str(TERRAFORMRC), None
    return None, (
        f"no provider mirror at {MIRROR}, which {TERRAFORMRC.name} names, and TF_CLI_CONFIG_FILE "
        "names no other file (Terraform would need the network to fetch the AWS provider)"
    )


TF_ISOLATED_PREFIXES: Final = ("TF_VAR_", "TF_CLI_ARGS", "TF_WORKSPACE", "TF_DATA_DIR")
"""The caller's Terraform settings that would change what the demo applies (variables,
extra arguments, another workspace or data folder): not passed on."""


def terraform_env(endpoint: str, config_file: str) -> dict[str, str]:
    """The environment of every terraform command: fake credentials, the local endpoint, and
    none of the caller's AWS/Kafka/metricskit/proxy (:func:`examples.local_aws.isolated`) or
    Terraform (:data:`TF_ISOLATED_PREFIXES`) settings."""
    from examples.local_aws import local_environ

    env = local_environ(os.environ, endpoint)
    for name in [n for n in env if n.startswith(TF_ISOLATED_PREFIXES)]:
        del env[name]
    env.update(
        {
            "TF_CLI_CONFIG_FILE": config_file,
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",  # no version check over the network
        }
    )
    return env


def var_arguments(tf_vars: Mapping[str, Any]) -> list[str]:
    """``-var name=value`` pairs; lists and numbers in HCL/JSON syntax.

    >>> var_arguments({"namespace": "CSVToKafka", "alarm_job_ids": ["j-1"]})
    ['-var', 'namespace=CSVToKafka', '-var', 'alarm_job_ids=["j-1"]']
    """
    arguments: list[str] = []
    for name, value in tf_vars.items():
        text = value if isinstance(value, str) else json.dumps(value)
        arguments += ["-var", f"{name}={text}"]
    return arguments


def _run(command: list[str], cwd: Path, env: Mapping[str, str], timeout: float) -> str:
    """Run one terraform command in a process group of its own, so that a timeout or an
    interrupt of the demo (Ctrl-C, SIGTERM) stops terraform *and* its provider plugins."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        raise TerraformError(
            f"`{' '.join(command[:2])}` took longer than {timeout:.0f} s"
        ) from None
    except BaseException:
        _stop_group(process)
        raise
    if process.returncode != 0:
        lines = [line for line in (stderr or stdout).splitlines() if line.strip()]
        tail = " | ".join(lines[-3:]) or f"exit status {process.returncode}"
        raise TerraformError(f"`{' '.join(command[:2])}` failed: {tail}")
    return stdout


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM to terraform's process group (terraform stops its plugins), SIGKILL after 10 s."""
    for signum, grace in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.communicate(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # Plugins that outlived terraform are still in its group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def apply_complete_example(
    endpoint: str, tf_vars: Mapping[str, Any], *, config_file: str | None = None
) -> dict[str, Any]:
    """``terraform init`` + ``apply`` of examples/complete on ``endpoint``; the outputs' values.

    Raises :class:`TerraformError` when terraform cannot run or a command fails.
    """
    if config_file is None:
        config_file, why_not = cli_config()
        if config_file is None:
            raise TerraformError(why_not or "terraform cannot run here")
    env = terraform_env(endpoint, config_file)
    with tempfile.TemporaryDirectory(prefix="metricskit-demo-tf-") as scratch:
        root = Path(scratch) / "terraform"
        shutil.copytree(
            TF_DIR,
            root,
            ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
        )
        workdir = root / EXAMPLE
        _run(
            ["terraform", "init", "-no-color", "-input=false"],
            workdir,
            env,
            INIT_TIMEOUT_SECONDS,
        )
        _run(
            [
                "terraform",
                "apply",
                "-auto-approve",
                "-no-color",
                "-input=false",
                *var_arguments(tf_vars),
            ],
            workdir,
            env,
            APPLY_TIMEOUT_SECONDS,
        )
        raw = _run(["terraform", "output", "-json", "-no-color"], workdir, env, 60.0)
    outputs: dict[str, Any] = {name: entry["value"] for name, entry in json.loads(raw).items()}
    return outputs
