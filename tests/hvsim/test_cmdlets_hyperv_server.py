"""Conformance of Get-/Set-VMReplicationServer and the *-VMReplicationAuthorizationEntry cmdlets with the real
pypsrp client (hyperv-replica.md §1.4, §2.1, §2.2): fresh-host values, validation order, port reset,
derived any-server settings, entry filters and their errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.certs import make_ca, make_host_cert
from tests.support.hvsim_env import host, lab_config, running_lab
from tests.support.hyperv import PFX_PASSWORD, HostSession, import_pfx, props, sessions

FQDN = "hv2.fabrikam.com"
SERVER_TYPES = [
    "Microsoft.HyperV.PowerShell.VMReplicationServer",
    "Microsoft.HyperV.PowerShell.VirtualizationObject",
    "System.Object",
]


@pytest.fixture(scope="module")
def hv() -> Iterator[HostSession]:
    config = lab_config(host(FQDN, "127.62.0.1"))
    with running_lab(config) as emulator, sessions(emulator, FQDN) as opened:
        yield opened[FQDN]


@pytest.fixture()
def fresh(hv: HostSession) -> HostSession:
    """The replica role off, no entries (tests change the one host in turn)."""
    hv.ok("Set-VMReplicationServer", ReplicationEnabled=False, ReplicationAllowedFromAnyServer=False)
    for entry in hv.ok("Get-VMReplicationAuthorizationEntry"):
        hv.ok(
            "Remove-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer=props(entry)["AllowedPrimaryServer"],
        )
    return hv


def server(hv: HostSession) -> dict:
    out = hv.ok("Get-VMReplicationServer")
    assert len(out) == 1 and out[0].types == SERVER_TYPES
    return props(out[0])


def comparable(settings: dict) -> dict:
    """Enum objects compare by their string form."""
    return {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in settings.items()}


def test_fresh_host_values(hv: HostSession) -> None:
    s = server(hv)
    assert s["ReplicationEnabled"] is False
    assert s["AllowedAuthenticationType"] == 0  # the unnamed enum value a fresh host stores
    assert (s["KerberosAuthenticationPort"], s["CertificateAuthenticationPort"]) == (80, 443)
    assert s["CertificateThumbprint"] == ""
    assert s["ReplicationAllowedFromAnyServer"] is False and s["DefaultStorageLocation"] == ""
    assert s["AuthorizationEntries"] == []
    assert (s["MonitoringInterval"], s["MonitoringStartTime"]) == ("PT12H", "PT9H")  # TimeSpan on the wire
    assert s["KerberosAuthenticationPortMapping"] is None


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "You must specify at least one parameter to run this command."),
        ({"ReplicationAllowedFromAnyServer": True}, "DefaultStorageLocation"),
        ({"MonitoringInterval": "00:30:00"}, "MonitoringInterval"),
        ({"ReplicationEnabled": True, "AllowedAuthenticationType": "Certificate"}, "CertificateThumbprint"),
        ({"AllowedAuthenticationType": "Kerberos", "CertificateThumbprint": "AB" * 20}, "Kerberos"),
        ({"ReplicationEnabled": True}, "AllowedAuthenticationType"),
        (
            {"KerberosAuthenticationPort": 8080, "KerberosAuthenticationPortMapping": {"a.b": 1}},
            "Conflicting",
        ),
        ({"CertificateAuthenticationPort": 70000}, "maximum allowed range"),
        ({"AllowedAuthenticationType": "Basic"}, "AllowedAuthenticationType"),
    ],
)
def test_set_validation_writes_nothing(fresh: HostSession, params: dict, fragment: str) -> None:
    before = comparable(server(fresh))
    outcome = fresh.run("Set-VMReplicationServer", **params)
    # Binding errors fail the pipeline; the cmdlet's own checks are written as non-terminating errors.
    binding = outcome.error.reason != "VirtualizationException"
    assert outcome.had_errors == binding
    assert binding or outcome.error.fq_error.split(",")[0] in ("InvalidParameter", "OperationFailed")
    assert fragment in f"{outcome.error} {outcome.error.fq_error}"
    assert comparable(server(fresh)) == before


def test_validation_order_any_server_before_certificate(fresh: HostSession) -> None:
    outcome = fresh.run(
        "Set-VMReplicationServer",
        ReplicationAllowedFromAnyServer=True,
        AllowedAuthenticationType="Certificate",
    )
    assert "DefaultStorageLocation" in str(outcome.error)


def test_kerberos_then_port_reset(fresh: HostSession) -> None:
    fresh.ok(
        "Set-VMReplicationServer",
        ReplicationEnabled=True,
        AllowedAuthenticationType="Kerberos",
        KerberosAuthenticationPort=8080,
        CertificateAuthenticationPort=8443,
    )
    s = server(fresh)
    assert (s["ReplicationEnabled"], str(s["AllowedAuthenticationType"])) == (True, "Kerberos")
    assert (s["KerberosAuthenticationPort"], s["CertificateAuthenticationPort"]) == (8080, 8443)
    # §2.1: a call without ports writes the defaults back.
    fresh.ok("Set-VMReplicationServer", MonitoringInterval="06:00:00")
    s = server(fresh)
    assert (s["KerberosAuthenticationPort"], s["CertificateAuthenticationPort"]) == (80, 443)
    assert s["MonitoringInterval"] == "PT6H"


def test_certificate_auth_needs_a_certificate_with_key_in_my(fresh: HostSession) -> None:
    missing = fresh.run(
        "Set-VMReplicationServer",
        ReplicationEnabled=True,
        AllowedAuthenticationType="Certificate",
        CertificateThumbprint="AB" * 20,
    )
    # VMMS refuses it when it applies the settings: a failed job (OperationFailed, NotSpecified).
    assert missing.error.fq_error.startswith("OperationFailed,") and "LocalMachine\\My" in str(missing.error)
    cert = make_host_cert(make_ca("Server Test CA"), FQDN)
    thumbprint = import_pfx(fresh, cert.pfx(PFX_PASSWORD))
    passthru = fresh.ok(
        "Set-VMReplicationServer",
        "Passthru",
        ReplicationEnabled=True,
        AllowedAuthenticationType="CertificateAndKerberos",
        CertificateThumbprint=thumbprint.lower(),
    )
    s = props(passthru[0])
    assert str(s["AllowedAuthenticationType"]) == "CertificateAndKerberos"
    assert s["CertificateThumbprint"] == thumbprint
    # Disabling resets the authentication type to 0 and clears the thumbprint (§2.1).
    fresh.ok("Set-VMReplicationServer", ReplicationEnabled=False)
    s = server(fresh)
    assert (s["ReplicationEnabled"], s["AllowedAuthenticationType"], s["CertificateThumbprint"]) == (
        False,
        0,
        "",
    )


def test_any_server_entry_is_derived(fresh: HostSession) -> None:
    fresh.ok(
        "Set-VMReplicationServer", ReplicationAllowedFromAnyServer=True, DefaultStorageLocation="D:\\Any"
    )
    s = server(fresh)
    assert (s["ReplicationAllowedFromAnyServer"], s["DefaultStorageLocation"]) == (True, "D:\\Any")
    entry = props(fresh.ok("Get-VMReplicationAuthorizationEntry")[0])
    assert entry == {
        "AllowedPrimaryServer": "*",
        "ReplicaStorageLocation": "D:\\Any",
        "TrustGroup": "DEFAULT",
    }
    blocked = fresh.run(
        "New-VMReplicationAuthorizationEntry",
        AllowedPrimaryServer="hv1.contoso.com",
        ReplicaStorageLocation="D:\\R",
        TrustGroup="g",
    )
    assert blocked.error.fq_error.startswith("InvalidOperation,") and "'all'" in str(blocked.error)
    fresh.ok("Set-VMReplicationServer", ReplicationAllowedFromAnyServer=False)
    assert server(fresh)["ReplicationAllowedFromAnyServer"] is False
    assert fresh.ok("Get-VMReplicationAuthorizationEntry") == []


def test_any_server_over_existing_entries_asks_unless_forced(fresh: HostSession) -> None:
    fresh.ok("New-VMReplicationAuthorizationEntry", positional=("hv1.contoso.com", "D:\\R1", "g1"))
    prompt = fresh.run(
        "Set-VMReplicationServer", ReplicationAllowedFromAnyServer=True, DefaultStorageLocation="D:\\Any"
    )
    assert not prompt.had_errors and prompt.error.fq_error.startswith("Unspecified,")  # written by the base
    assert "All existing authorization entries will be removed." in str(prompt.error)
    assert len(fresh.ok("Get-VMReplicationAuthorizationEntry")) == 1  # nothing applied
    fresh.ok(
        "Set-VMReplicationServer",
        "Force",
        ReplicationAllowedFromAnyServer=True,
        DefaultStorageLocation="D:\\Any",
    )
    servers = [props(e)["AllowedPrimaryServer"] for e in fresh.ok("Get-VMReplicationAuthorizationEntry")]
    assert servers == ["*"]


def test_authorization_entry_lifecycle(fresh: HostSession) -> None:
    out = fresh.ok(
        "New-VMReplicationAuthorizationEntry",
        AllowedPrimaryServer="hv1.contoso.com",
        ReplicaStorageLocation="D:\\Replica",
        TrustGroup="site-a",
    )
    assert out[0].types[0] == "Microsoft.HyperV.PowerShell.VMReplicationAuthorizationEntry"
    fresh.ok("New-VMReplicationAuthorizationEntry", positional=("*.northwind.net", "E:\\Replica", "site-b"))
    duplicate = fresh.run(
        "New-VMReplicationAuthorizationEntry", positional=("HV1.contoso.com", "D:\\Other", "x")
    )
    assert duplicate.error.fq_error.startswith("OperationFailed,") and "already exists" in str(
        duplicate.error
    )
    bad_name = fresh.run("New-VMReplicationAuthorizationEntry", positional=("not a name", "D:\\R", "x"))
    assert bad_name.error.fq_error.startswith("InvalidParameter,")
    relative = fresh.run(
        "New-VMReplicationAuthorizationEntry", positional=("hv3.contoso.com", "Replica", "x")
    )
    assert relative.error.fq_error.startswith("InvalidParameter,") and "absolute path" in str(relative.error)

    assert [
        props(e)["TrustGroup"]
        for e in fresh.ok("Get-VMReplicationAuthorizationEntry", positional=("*.contoso.com",))
    ] == ["site-a"]
    no_match = fresh.run("Get-VMReplicationAuthorizationEntry", AllowedPrimaryServer="nobody.example")
    # GetVMReplicationAuthorizationEntry.cs: CreateOperationFailedException; Remove- uses ObjectNotFound.
    assert not no_match.had_errors and no_match.error.fq_error.startswith("OperationFailed,")
    assert str(no_match.error) == (
        "Unable to find an authorization entry for primary server 'nobody.example' with given criteria."
    )
    assert fresh.ok("Get-VMReplicationAuthorizationEntry", ReplicaStorageLocation="Z:\\*") == []

    assert (
        fresh.ok(
            "Set-VMReplicationAuthorizationEntry",
            AllowedPrimaryServer="ghost.example",
            ReplicaStorageLocation="D:\\X",
        )
        == []
    )  # silent no-op
    updated = fresh.ok(
        "Set-VMReplicationAuthorizationEntry", "Passthru", positional=("hv1.contoso.com", "F:\\Moved")
    )
    assert props(updated[0])["ReplicaStorageLocation"] == "F:\\Moved"

    fresh.ok("Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer="hv1.contoso.com")
    again = fresh.run("Remove-VMReplicationAuthorizationEntry", AllowedPrimaryServer="hv1.contoso.com")
    assert again.error.fq_error == (
        "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.RemoveVMReplicationAuthorizationEntry"
    )
    fresh.ok("Remove-VMReplicationAuthorizationEntry", TrustGroup="site-*")
    assert fresh.ok("Get-VMReplicationAuthorizationEntry") == []
