"""Engine-contract fixtures for this directory (the factories live in tests/support/engine.py)."""

from tests.support.engine import mocked_program as mocked_program
from tests.support.engine import module_provider_servers as module_provider_servers
from tests.support.engine import provider_servers as provider_servers
