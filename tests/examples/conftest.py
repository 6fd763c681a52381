"""Fixtures for the example tests (the factories live in tests/support/engine.py)."""

from tests.support.engine import mocked_program as mocked_program
