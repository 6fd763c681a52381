"""The opt-in real-host suite (tests/realhost/) run against an hvsim lab, so its code keeps working between
real runs: the whole lifecycle passes and record mode writes a recording without any password. (A recording
made against hvsim is NOT a Windows answer; it goes to a temporary folder and is thrown away.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.hvsim_env import DEFAULT_PASSWORD, DEFAULT_USER, REPO_ROOT, host, lab_config, running_lab


def _host_table(entry: dict, fqdn: str, vms: list[str]) -> str:
    return (
        f'[[host]]\nfqdn = "{fqdn}"\naddress = "{entry["address"]}"\nstorage_location = "D:\\\\Replica"\n'
        f"vms = {json.dumps(vms)}\n[host.connection]\n"
        f'host = "{entry["address"]}"\nport = {entry["winrm_port"]}\nauth = "basic"\n'
        f'username = "{DEFAULT_USER}"\npassword_env = "HVREPLICA_TEST_PASSWORD"\nca_cert_file = "ca.pem"\n'
    )


def test_the_realhost_lifecycle_runs_and_records_against_hvsim(tmp_path: Path) -> None:
    primary = host("host1.contoso.com", "127.79.0.11", vms=["rt01"])
    replica = host("host2.fabrikam.com", "127.79.0.12")
    with running_lab(lab_config(primary, replica)) as emulator:
        (tmp_path / "ca.pem").write_text(emulator.ca_pem_path.read_text())
        config = tmp_path / "realhost.toml"
        config.write_text(
            _host_table(primary, "host1.contoso.com", ["rt01"])
            + _host_table(replica, "host2.fabrikam.com", [])
        )
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
