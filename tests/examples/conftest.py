"""Fixtures for the example tests (defined in tests/support/engine.py and tests/support/topology_lab.py)."""

from tests.support.engine import mocked_program as mocked_program
from tests.support.topology_lab import fast_polling as fast_polling
