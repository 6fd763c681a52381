"""End-to-end tests: the real Pulumi CLI runs this repository's programs against hvsim.

They run whenever a CLI is found (`pulumi` >= 3.139 on PATH, or `.pulumi-bin/` from `make pulumi-cli`);
otherwise every test here is skipped with one reason line. `.ci/run` builds the CLI first, so CI runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pulumi_cli import require_cli


@pytest.fixture(scope="session")
def pulumi_cli() -> Path:
    return require_cli()
