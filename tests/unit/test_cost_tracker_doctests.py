"""The cost tracker's docstring examples run: an example that no longer works is a wrong doc."""

from __future__ import annotations

import doctest
import importlib
from types import ModuleType

import pytest

MODULES = (
    "cost_tracker.cost_explorer",
    "cost_tracker.handler",
    "cost_tracker.job_source",
    "cost_tracker.package",
    "cost_tracker.pricing",
    "cost_tracker.verify",
)


@pytest.mark.parametrize("name", MODULES)
def test_every_docstring_example_of_the_module_passes(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    result = doctest.testmod(module, report=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
