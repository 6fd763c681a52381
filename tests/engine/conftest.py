"""Engine-contract fixtures for this directory (defined in tests/support/engine.py and topology_lab.py)."""

from tests.support.engine import mocked_program as mocked_program
from tests.support.engine import module_provider_servers as module_provider_servers
from tests.support.engine import provider_servers as provider_servers
from tests.support.topology_lab import fast_polling as fast_polling
