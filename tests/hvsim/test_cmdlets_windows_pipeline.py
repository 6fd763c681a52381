"""Pipeline-level behaviour of the cmdlet dispatcher as the real pypsrp client sees it: script text refused,
unknown commands, binding errors, several statements, client pipeline input, common parameters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pypsrp.powershell import PowerShell

from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import HostSession, sessions

FQDN = "pipe1.contoso.com"


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    with running_lab(lab_config(host(FQDN, "127.68.0.1"))) as emulator, sessions(emulator, FQDN) as opened:
        yield opened[FQDN]


def test_add_script_is_refused_with_the_rule(hv: HostSession) -> None:
    ps = PowerShell(hv.pool)
    ps.add_script("Get-ChildItem C:\\ | Remove-Item -Recurse")
    ps.invoke()
    assert ps.had_errors
    assert "hvsim executes cmdlets, not scripts" in str(ps.streams.error[0])


def test_unknown_cmdlet_fails_the_pipeline(hv: HostSession) -> None:
    outcome = hv.run("Get-Unicorn")
    assert outcome.had_errors
    assert outcome.error.fq_error == "CommandNotFoundException"
    assert outcome.error.category == 13  # ObjectNotFound


def test_binding_errors_reach_the_client_with_their_ids(hv: HostSession) -> None:
    unknown = hv.run("Test-Path", Path="C:\\", Colour="red")
    assert unknown.had_errors
    assert str(unknown.error) == "A parameter cannot be found that matches parameter name 'Colour'."
    assert unknown.error.fq_error == "NamedParameterNotFound,Microsoft.PowerShell.Commands.TestPathCommand"
    missing = hv.run("Get-Item")
    assert missing.error.fq_error == "MissingMandatoryParameter,Microsoft.PowerShell.Commands.GetItemCommand"


def test_statements_and_client_input(hv: HostSession) -> None:
    ps = PowerShell(hv.pool)
    ps.add_cmdlet("Test-Path").add_parameter("Path", "C:\\Windows").add_statement()
    ps.add_cmdlet("Test-Path").add_parameter("Path", "C:\\Nope")
    assert ps.invoke() == [True, False]
    piped = PowerShell(hv.pool)
    piped.add_cmdlet("Test-Path")
    assert piped.invoke(input=["C:\\Windows", "C:\\Nope", "Cert:\\LocalMachine\\Root"]) == [True, False, True]


def test_commands_pipe_into_each_other(hv: HostSession) -> None:
    hv.ok("Set-Content", Path="C:\\Windows\\Temp\\piped.txt", Value="x")
    ps = PowerShell(hv.pool)
    ps.add_cmdlet("Get-Item").add_parameter("Path", "C:\\Windows\\Temp\\piped.txt")
    ps.add_cmdlet("Remove-Item").add_parameter("Confirm", False)
    ps.invoke()
    assert not ps.had_errors and not ps.streams.error
    assert hv.ok("Test-Path", Path="C:\\Windows\\Temp\\piped.txt") == [False]


def test_error_action_over_the_wire(hv: HostSession) -> None:
    quiet = hv.run("Get-Item", Path="C:\\Nope", ErrorAction="SilentlyContinue")
    assert not quiet.had_errors and quiet.errors == []
    loud = hv.run("Get-Item", Path="C:\\Nope")
    assert not loud.had_errors and len(loud.errors) == 1  # non-terminating: the pipeline completes
    stopped = hv.run("Get-Item", Path="C:\\Nope", ErrorAction="Stop")
    assert stopped.had_errors
    assert stopped.error.fq_error == "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
