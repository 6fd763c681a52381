"""End-to-end tests: the real Pulumi CLI runs this repository's programs against hvsim.

They run whenever a CLI is found (`pulumi` >= 3.139 on PATH, or `.pulumi-bin/` from `make pulumi-cli`);
otherwise every test here is skipped, all under one reason line. `.ci/run` builds the CLI first, so CI
runs them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from scripts.pulumi_run import CliNotFound, find_cli


@functools.cache
def _cli() -> Path | str:
    """The CLI, or why there is none (looked up once per test session)."""
    try:
        return find_cli()
    except CliNotFound as err:
        return f"end-to-end tests need the real Pulumi CLI: {err}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Raised here rather than in a fixture so that pytest reports every skip at this one place.
    cli = _cli()
    if isinstance(cli, str):
        pytest.skip(cli)


@pytest.fixture(scope="session")
def pulumi_cli() -> Path:
    cli = _cli()
    assert isinstance(cli, Path)
    return cli
