"""examples/local_aws.py: the demo's local AWS hides the caller's settings and cleans up."""

from __future__ import annotations

import doctest
import os
import threading

import pytest

from examples import local_aws
from examples.local_aws import LocalAws, isolated, local_environ


def test_the_doctests_hold() -> None:
    assert doctest.testmod(local_aws).failed == 0


@pytest.mark.parametrize("name", ["Http_Proxy", "HTTPS_Proxy", "All_Proxy", "https_proxy"])
def test_proxy_variables_are_hidden_in_any_case(name: str) -> None:
    # urllib.request.getproxies (botocore's source) lowercases names ending in _proxy.
    env = local_environ({name: "http://proxy.invalid:3128", "NO_PROXY": "x"}, "http://e")
    assert isolated(name)
    assert name not in env
    assert env["NO_PROXY"] == "x"  # only ever bypasses a proxy: kept


class InterruptedRewrite(dict[str, str]):
    """The wanted environment; Ctrl-C lands after start() rewrote its first variables."""

    reads = 0

    def __getitem__(self, name: str) -> str:
        type(self).reads += 1
        if type(self).reads == 3:
            raise KeyboardInterrupt
        return super().__getitem__(name)


def test_ctrl_c_after_the_server_started_stops_it_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    before = dict(os.environ)
    threads_before = set(threading.enumerate())
    real_local_environ = local_aws.local_environ
    monkeypatch.setattr(
        local_aws,
        "local_environ",
        lambda base, endpoint: InterruptedRewrite(real_local_environ(base, endpoint)),
    )
    aws = LocalAws()
    with pytest.raises(KeyboardInterrupt):
        aws.start()
    assert InterruptedRewrite.reads == 3  # it did rewrite some variables first
    assert dict(os.environ) == before
    assert aws.endpoint == ""
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert leftover == []  # the moto server thread was stopped
