"""The opt-in real-host suite (tests/realhost/) run against an hvsim lab, so its code keeps working between
real runs: the whole lifecycle passes and record mode writes a recording without any password. (A recording
made against hvsim is NOT a Windows answer; it goes to a temporary folder and is thrown away.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hvsim_env import DEFAULT_PASSWORD, DEFAULT_USER, REPO_ROOT, host, lab_config, running_lab


def _host_table(entry: dict, fqdn: str, vms: list[str]) -> str:
    return (
        f'[[host]]\nfqdn = "{fqdn}"\naddress = "{entry["address"]}"\nstorage_location = "D:\\\\Replica"\n'
        f"vms = {json.dumps(vms)}\n[host.connection]\n"
        f'host = "{entry["address"]}"\nport = {entry["winrm_port"]}\nauth = "basic"\n'
        f'username = "{DEFAULT_USER}"\npassword_env = "HVREPLICA_TEST_PASSWORD"\nca_cert_file = "ca.pem"\n'
    )


@pytest.mark.parametrize("count", [2, 3])
def test_the_realhost_lifecycle_runs_and_records_against_hvsim(tmp_path: Path, count: int) -> None:
    """Two hosts (host1 -> host2) and three (host1 -> host2 -> host3, each in its own domain)."""
    names = ["host1.contoso.com", "host2.fabrikam.com", "host3.northwind.net"][:count]
    vms = [[f"rt0{i}"] if i < count - 1 else [] for i in range(count)]
    entries = [host(name, f"127.79.{count}.{i + 1}", vms=vms[i]) for i, name in enumerate(names)]
    with running_lab(lab_config(*entries)) as emulator:
        (tmp_path / "ca.pem").write_text(emulator.ca_pem_path.read_text())
        config = tmp_path / "realhost.toml"
        config.write_text("".join(_host_table(e, n, v) for e, n, v in zip(entries, names, vms, strict=True)))
        env = {
            **os.environ,
            "HVREPLICA_REALHOST_CONFIG": str(config),
            "HVREPLICA_TEST_PASSWORD": DEFAULT_PASSWORD,
            "HVREPLICA_RECORD": "1",
            "HVREPLICA_RECORDINGS_DIR": str(tmp_path / "recordings"),
        }
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/realhost",
                "-m",
                "realhost",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    [recording] = (tmp_path / "recordings").glob("*.json")
    text = recording.read_text()
    assert DEFAULT_PASSWORD not in text and "<redacted>" in text
    exchanges = json.loads(text)["exchanges"]
    cmdlets = {c["cmdlet"] for e in exchanges for s in e["statements"] for c in s}
    assert {
        "Enable-VMReplication",
        "Set-VMReplication",
        "Import-PfxCertificate",
        "Remove-VMReplication",
    } <= cmdlets
