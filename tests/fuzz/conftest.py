"""Hypothesis profiles for the property-based tests over every resource's `check`.

`make test` (and a plain `pytest`) uses the bounded "hvreplica" profile: a few seconds per resource. For an
occasional deep run: `pytest tests/fuzz --hypothesis-profile=long` (3000 examples per resource, about a
minute), or set HYPOTHESIS_PROFILE=long.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,  # the first example of a run pays for imports and key loading
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("hvreplica", max_examples=60, **_COMMON)
settings.register_profile("long", max_examples=3000, **_COMMON)


def pytest_configure(config: pytest.Config) -> None:
    # Runs when this conftest is registered, after Hypothesis' own plugin: the command line wins, then the
    # environment, then the bounded profile.
    chosen = config.getoption("hypothesis_profile", None) or os.environ.get("HYPOTHESIS_PROFILE")
    settings.load_profile(chosen or "hvreplica")
