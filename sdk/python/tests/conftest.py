"""Shared fixtures. Under CI=true a missing optional dependency fails the
test that needs it instead of skipping it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import module, or skip (fail under CI=true) with the Debian package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        msg = f"{module} is missing ({e}); `make deps` installs python3-{module.split('.')[0].replace('_', '-')}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
