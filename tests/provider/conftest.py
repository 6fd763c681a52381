"""Fixtures for the provider tests (defined in tests/support/topology_lab.py)."""

from tests.support.topology_lab import fast_polling as fast_polling
