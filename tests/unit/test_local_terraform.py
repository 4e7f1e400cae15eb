"""The demo's Terraform settings: without the provider mirror it says so, in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import local_terraform


@pytest.fixture
def no_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(local_terraform.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(local_terraform, "MIRROR", tmp_path / "no-tf-plugins")


@pytest.mark.usefixtures("no_mirror")
def test_the_makefiles_terraformrc_without_its_mirror_names_the_mirror(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`make demo` always exports the repo's terraformrc; that file alone must not send
    Terraform to fetch a provider it cannot reach (which failed with a confusing init error)."""
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(local_terraform.TERRAFORMRC))
    config_file, why_not = local_terraform.cli_config()
    assert config_file is None
    assert why_not is not None
    assert f"no provider mirror at {local_terraform.MIRROR}" in why_not


@pytest.mark.usefixtures("no_mirror")
def test_a_users_own_cli_config_is_used_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = tmp_path / "terraformrc"
    own.write_text("# a network mirror, say\n")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(own))
    assert local_terraform.cli_config() == (str(own), None)
