"""The package root: every documented name is exported, and importing it is light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_importing_the_root_or_pki_does_not_load_pulumi() -> None:
    probe = "import sys, hvreplica_provider, hvreplica_provider.pki, hvreplica_provider.clock; " \
            "print('pulumi' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
