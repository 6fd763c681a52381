"""Hypothesis profiles for the property-based tests over every resource's `check`.

`make test` (and a plain `pytest`) uses the bounded "default" profile: a few seconds per resource. For an
occasional deep run: `pytest tests/fuzz --hypothesis-profile=long` (thousands of examples per resource,
minutes), or set HYPOTHESIS_PROFILE=long.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,  # the first example of a run pays for imports and key loading
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)
settings.register_profile(
    "long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
