"""Get-Service and Restart-Service for the services the provider touches: vmms can be restarted (its start
time moves) while the WinRM session that asked stays open; an unknown name is a non-terminating error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from hvsim.server import Emulator
from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, props, sessions

FQDN = "hv1.contoso.com"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Emulator, HostSession]]:
    config = lab_config(host(FQDN, "127.62.0.1"))
    with running_lab(config) as emulator, sessions(emulator, FQDN) as opened:
        yield emulator, opened[FQDN]


def test_get_service_shape_and_unknown_name(lab: tuple[Emulator, HostSession]) -> None:
    _, hv = lab
    vmms = hv.ok("Get-Service", Name="VMMS")  # names match ignoring case
    assert vmms[0].types[0] == "System.ServiceProcess.ServiceController"
    p = props(vmms[0])
    assert (p["Name"], str(p["Status"]), str(p["StartType"])) == ("vmms", "Running", "Automatic")
    missing = hv.run("Get-Service", Name=["nope", "vmms"])
    assert not missing.had_errors and [props(s)["Name"] for s in missing.output] == ["vmms"]
    assert (
        missing.error.fq_error == "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
    )
    assert str(missing.error) == "Cannot find any service with service name 'nope'."


def test_restart_vmms_moves_its_start_time_and_keeps_the_session(lab: tuple[Emulator, HostSession]) -> None:
    emulator, hv = lab
    facts = emulator.lab.host(FQDN).facts
    with emulator.lab.lock:
        facts.vmms_started = long_ago = facts.vmms_started - dt.timedelta(days=3)
    out = hv.ok("Restart-Service", "Force", "PassThru", Name="vmms")
    assert props(out[0])["Name"] == "vmms"
    assert facts.vmms_started - long_ago >= dt.timedelta(days=3) - dt.timedelta(seconds=1)
    assert hv.ok("Get-Service", Name="vmms")  # the same pool still answers
    hv.ok("Restart-Service", Name="WinRM")  # WinRM's restart is not modelled: nothing happens
