"""The Lab's state file: every model survives a save/load round trip, private keys stay out of dumps, the file
is owner-only, hosts dropped from the config are kept, and the admin operations report what is wrong."""

from __future__ import annotations

import json
import stat
from datetime import datetime
from pathlib import Path

import pytest
from psrpcore import Command
from psrpcore.types import PSSecureString

from hvsim.cmdlets import invoke
from hvsim.config import parse_config
from hvsim.lab import Lab, LabError
from tests.hvsim.test_dispatch import RecordingSink
from tests.support.certs import make_ca, make_host_cert

ONE = {"fqdn": "p1.contoso.com", "address": "127.69.0.1", "vms": ["web01"]}
TWO = {"fqdn": "p2.fabrikam.com", "address": "127.69.0.2"}
PASSWORD = "Persist-Pw-1"


def configure(lab: Lab, fqdn: str) -> str:
    """Change every Windows model of a host through the real cmdlets; returns the imported thumbprint."""
    ca = make_ca("Persistence Root")
    leaf = make_host_cert(ca, fqdn)
    steps = [
        (
            "Set-Content",
            {"Path": "C:\\Windows\\Temp\\c.pfx", "Value": leaf.pfx(PASSWORD, (ca.cert,)), "Encoding": "Byte"},
        ),
        (
            "Import-PfxCertificate",
            {
                "FilePath": "C:\\Windows\\Temp\\c.pfx",
                "CertStoreLocation": "Cert:\\LocalMachine\\My",
                "Password": PSSecureString(PASSWORD),
                "Exportable": True,
            },
        ),
        (
            "New-Item",
            {"Path": "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication"},
        ),
        (
            "New-ItemProperty",
            {
                "Path": "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication",
                "Name": "DisableCertRevocationCheck",
                "PropertyType": "DWord",
                "Value": 1,
            },
        ),
        (
            "Add-Content",
            {"Path": "C:\\Windows\\System32\\drivers\\etc\\hosts", "Value": "127.69.0.2 p2.fabrikam.com"},
        ),
        ("Enable-NetFirewallRule", {"Name": "VIRT-HVRHTTPSL-In-TCP-NoScope"}),
    ]
    for name, params in steps:
        command = Command(name)
        command.parameters.extend(params.items())
        sink = RecordingSink()
        invoke(lab, lab.host(fqdn), "Administrator", [command], [], sink)
        assert sink.errors == [], (name, [str(e) for e in sink.errors])
    return leaf.thumbprint


def test_state_round_trips_through_lab_json(tmp_path: Path) -> None:
    config = parse_config({"host": [ONE, TWO]})
    lab = Lab(config, tmp_path)
    thumbprint = configure(lab, ONE["fqdn"])
    lab.add_vm(TWO["fqdn"], "app01")
    lab.save()
    before = {fqdn: h.to_dict() for fqdn, h in lab.hosts.items()}

    again = Lab(config, tmp_path)
    assert {fqdn: h.to_dict() for fqdn, h in again.hosts.items()} == before
    host = again.host(ONE["fqdn"])
    stored = host.certificates.get("My", thumbprint)
    assert stored is not None and stored.has_private_key and stored.exportable
    assert (
        host.registry.dword(
            "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication",
            "DisableCertRevocationCheck",
        )
        == 1
    )
    assert host.files.read_text("C:\\Windows\\System32\\drivers\\etc\\hosts").endswith(
        "127.69.0.2 p2.fabrikam.com\r\n"
    )
    rule = host.firewall.rule("VIRT-HVRHTTPSL-In-TCP-NoScope")
    assert rule is not None and rule.enabled
    assert [vm.name for vm in again.host(TWO["fqdn"]).hyperv.vms] == ["app01"]
    saved_clock = datetime.fromisoformat(json.loads(lab.state_path.read_text())["clock"]["now"])
    assert again.now() >= saved_clock  # emulated time does not run backwards across a restart


def test_state_file_is_owner_only_and_dumps_hold_no_keys(tmp_path: Path) -> None:
    lab = Lab(parse_config({"host": [ONE]}), tmp_path)
    thumbprint = configure(lab, ONE["fqdn"])
    lab.save()
    assert stat.S_IMODE(lab.state_path.stat().st_mode) == 0o600
    dump = lab.dump_host(ONE["fqdn"])
    text = json.dumps(dump)
    assert "PRIVATE KEY" not in text and PASSWORD not in text
    my = {c["thumbprint"]: c for c in dump["certificates"]["My"]}
    assert my[thumbprint]["has_private_key"] is True
    assert "PRIVATE KEY" in lab.state_path.read_text()  # the emulated key store itself is persisted


def test_hosts_removed_from_the_config_are_kept(tmp_path: Path) -> None:
    Lab(parse_config({"host": [ONE, TWO]}), tmp_path).save()
    smaller = Lab(parse_config({"host": [ONE]}), tmp_path)
    smaller.save()
    restored = Lab(parse_config({"host": [ONE, TWO]}), tmp_path)
    assert TWO["fqdn"] in json.loads(smaller.state_path.read_text())["hosts"]
    assert restored.host(TWO["fqdn"]).facts.caption.startswith("Microsoft Windows Server")


def test_incompatible_state_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text(json.dumps({"version": 999, "hosts": {}}))
    with pytest.raises(LabError, match="incompatible hvsim"):
        Lab(parse_config({"host": [ONE]}), tmp_path)


def test_admin_operations_name_what_is_wrong(tmp_path: Path) -> None:
    lab = Lab(parse_config({"host": [ONE]}), tmp_path)
    with pytest.raises(LabError, match=r"no emulated host 'nope\.contoso\.com'"):
        lab.host("nope.contoso.com")
    with pytest.raises(LabError, match="already has a VM named 'web01'"):
        lab.add_vm(ONE["fqdn"], "web01")
    with pytest.raises(LabError, match="has no VM named 'ghost'"):
        lab.remove_vm(ONE["fqdn"], "ghost")
    lab.set_vm_running(ONE["fqdn"], "web01", False)
    assert lab.host(ONE["fqdn"]).hyperv.find_vms("web01")[0].state == "Off"
    lab.remove_vm(ONE["fqdn"], "web01")
    assert lab.host(ONE["fqdn"]).hyperv.vms == []
    started = lab.host(ONE["fqdn"]).facts.vmms_started
    lab.clock.advance(60)
    lab.restart_vmms(ONE["fqdn"])
    assert lab.host(ONE["fqdn"]).facts.vmms_started > started
