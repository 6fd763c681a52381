"""The package root: every documented name is exported, and importing it is light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pulumi.dynamic import Resource, ResourceProvider

import hvreplica_provider


def test_root_exports_resources_args_and_providers() -> None:
    for name in hvreplica_provider.__all__:
        exported = getattr(hvreplica_provider, name)
        if name.endswith("Provider"):
            assert issubclass(exported, ResourceProvider)
        elif not name.endswith("Args"):
            assert issubclass(exported, Resource)
    for resource in ("CertificateAuthority", "HostCertificate"):
        assert {resource, f"{resource}Args", f"{resource}Provider"} <= set(hvreplica_provider.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hvreplica_provider.Nope  # noqa: B018


def test_importing_the_root_or_pki_does_not_load_pulumi() -> None:
    probe = "import sys, hvreplica_provider, hvreplica_provider.pki, hvreplica_provider.clock; " \
            "print('pulumi' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
