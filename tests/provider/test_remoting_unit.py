"""Remoting layer without a server: connection validation, error classification from the shapes pypsrp
produces, secret scrubbing, hosts-file block handling and value parsing."""

from __future__ import annotations

import importlib.util

import requests
from pypsrp.complex_objects import GenericComplexObject
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.messages import ErrorRecordMessage
from urllib3.exceptions import MaxRetryError, NameResolutionError

from hvreplica_provider import hyperv as hv
from hvreplica_provider import windows as win
from hvreplica_provider.remoting import (
    AccessDenied,
    Authentication,
    HostConnection,
    InvalidState,
    NotFound,
    RemoteError,
    SecureText,
    Transient,
    Unreachable,
    Validation,
    cmd,
    error_from_record,
    error_from_transport,
    parse_connection,
    scrub,
)

CONN = HostConnection(host="h1.contoso.com", auth="basic", username="admin", password="pw")
CA_PEM = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"


def problems_of(**kwargs: object) -> dict[str, str]:
    return dict(parse_connection({"host": "h1.contoso.com", **kwargs}, "connection")[1])


def test_valid_https_basic_connection_has_no_problems_and_defaults() -> None:
    conn, problems = parse_connection(
        {"host": "h1.contoso.com", "auth": "basic", "username": "u", "password": "p", "port": 5986.0},
        "primary",
    )
    assert problems == []
    assert conn is not None and conn.port == 5986 and isinstance(conn.port, int)
    assert conn.verify_tls is True and conn.max_concurrent_operations == 3
    assert HostConnection(host="h", transport="http").effective_port == 5985
    assert HostConnection(host="h").effective_port == 5986


def test_basic_over_http_is_refused_with_the_fix() -> None:
    found = problems_of(transport="http", auth="basic", username="u", password="p")
    assert "clear text" in found["connection.auth"] and "https" in found["connection.auth"]


def test_certificate_auth_needs_cert_key_and_https() -> None:
    found = problems_of(auth="certificate", transport="http")
    assert "client_cert_pem" in found["connection.client_cert_pem"]
    assert "client_key_pem" in found["connection.client_key_pem"]
    assert "https" in found["connection.transport"]


def test_port_auth_timeouts_and_unknown_settings() -> None:
    found = problems_of(port=70000, auth="digest", username="u", password="p", read_timeout_sec=10)
    assert "65535" in found["connection.port"]
    assert "negotiate" in found["connection.auth"]
    assert "greater than operation_timeout_sec" in found["connection.read_timeout_sec"]
    conn, problems = parse_connection({"host": "h", "pasword": "x"}, "replica")
    assert conn is None and "pasword" in problems[0][1]
    assert parse_connection("h1", "primary")[1][0][0] == "primary"


def test_credssp_without_its_package_is_refused_in_check() -> None:
    found = problems_of(auth="credssp", username="u", password="p")
    if importlib.util.find_spec("requests_credssp") is None:
        assert "requests-credssp" in found["connection.auth"]
    else:
        assert "connection.auth" not in found


def test_bad_ca_pem_and_missing_password() -> None:
    found = problems_of(auth="ntlm", username="u", ca_cert_pem=CA_PEM)
    assert "PEM" in found["connection.ca_cert_pem"]
    assert "username and password" in found["connection.password"]


def test_verify_tls_false_warns_and_the_password_never_shows() -> None:
    conn = HostConnection(host="h1", auth="basic", username="u", password="Sup3rS3cret", verify_tls=False)
    assert conn.problems() == []
    [warning] = conn.warnings()
    assert "verify_tls is false" in warning and "ca_cert_pem" in warning
    assert "Sup3rS3cret" not in repr(conn)
    assert HostConnection(host="h1", auth="basic", username="u", password="x").warnings() == []


def test_pool_key_is_the_session_not_its_timeouts() -> None:
    """Issue 8 #6: connections that differ only in timeouts or the concurrency bound share one pool; other
    credentials or trust settings are another session (never a replacement of this one)."""
    a = HostConnection(host="H1.contoso.com", auth="basic", username="Admin", password="one")
    assert (
        a.pool_key
        == HostConnection(
            host="h1.contoso.com",
            auth="basic",
            username="admin",
            password="one",
            read_timeout_sec=31,
            operation_timeout_sec=25,
            max_concurrent_operations=5,
            connect_timeout_sec=3,
            retry_deadline_sec=9,
        ).pool_key
    )
    assert (
        a.pool_key
        != HostConnection(host="h1.contoso.com", auth="basic", username="admin", password="two").pool_key
    )
    assert (
        a.pool_key
        != HostConnection(
            host="h1.contoso.com", auth="basic", username="admin", password="one", verify_tls=False
        ).pool_key
    )


def record(category: int, fq: str, message: str, command: str | None = None) -> ErrorRecordMessage:
    rec = ErrorRecordMessage()
    rec.category, rec.fq_error, rec._to_string, rec.message = category, fq, message, message
    rec.command_name = command
    return rec


GET_REPLICATION = "Microsoft.HyperV.PowerShell.Commands.GetVMReplication"


def test_not_enabled_is_recognised_by_windows_id_and_category_only() -> None:
    """Windows' Get-VMReplication on a VM without replication: OperationFailed in category InvalidOperation
    (GetVMReplication.cs). Access denied, a failed VMMS call (OperationFailed, NotSpecified), the same id from
    another cmdlet or an unknown error must never pass for it (they would make a resource look gone)."""

    def typed(category: int, fq: str) -> RemoteError:
        return error_from_record(record(category, fq, "x"), cmdlets="Get-VM | Get-VMReplication", host="h")

    assert hv.is_not_enabled(typed(7, f"OperationFailed,{GET_REPLICATION}"))
    for category, fq in [
        (18, f"AccessDenied,{GET_REPLICATION}"),
        (0, f"OperationFailed,{GET_REPLICATION}"),
        (7, "OperationFailed,Microsoft.HyperV.PowerShell.Commands.SetVMReplication"),
        (13, f"ObjectNotFound,{GET_REPLICATION}"),
        (7, f"VMReplication_NotEnabled,{GET_REPLICATION}"),  # a resource key: Windows never sends it
        (0, "SomethingElse"),
    ]:
        assert not hv.is_not_enabled(typed(category, fq)), (category, fq)
    enable = "Microsoft.HyperV.PowerShell.Commands.EnableVMReplication"
    assert hv.refused_by(typed(0, f"OperationFailed,{enable}"), "EnableVMReplication")  # failed VMMS job
    assert hv.refused_by(typed(7, f"InvalidState,{enable}"), "EnableVMReplication")
    assert not hv.refused_by(typed(18, f"AccessDenied,{enable}"), "EnableVMReplication")
    assert not hv.refused_by(typed(5, f"InvalidParameter,{enable}"), "EnableVMReplication")
    assert not hv.refused_by(typed(7, f"OperationFailed,{GET_REPLICATION}"), "EnableVMReplication")


def test_error_records_become_typed_exceptions() -> None:
    cases = [
        (13, "PathNotFound,Microsoft.PowerShell.Commands.GetItemPropertyCommand", NotFound),
        (18, "UnauthorizedAccess", AccessDenied),
        (28, "AuthFailed", Authentication),
        (7, "InvalidOperation,Microsoft.HyperV.PowerShell.Commands.EnableVMReplication", InvalidState),
        (5, "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.EnableVMReplication", Validation),
        (0, "SomethingElse", RemoteError),
    ]
    for category, fq, cls in cases:
        err = error_from_record(record(category, fq, "boom", "Enable-VMReplication"), cmdlets="x", host="h1")
        assert type(err) is cls, (category, fq)
        assert err.fq_error_id == fq and err.cmdlet == "Enable-VMReplication" and err.remote_message == "boom"
        assert "Enable-VMReplication failed on h1: boom" in str(err)
    # Without invocation info: the cmdlet the error id's command class names, else all of the invocation's.
    statements = "Enable-VMReplication; Start-VMInitialReplication; Get-VMReplication"
    fq = "OperationFailed,Microsoft.HyperV.PowerShell.Commands.EnableVMReplication"
    assert (
        error_from_record(record(7, fq, "no"), cmdlets=statements, host="h").cmdlet == "Enable-VMReplication"
    )
    fq = "PathNotFound,Microsoft.PowerShell.Commands.GetItemPropertyCommand"
    assert error_from_record(
        record(13, fq, "x"), cmdlets="Get-ChildItem | Get-ItemProperty", host="h"
    ).cmdlet == ("Get-ItemProperty")
    assert error_from_record(record(13, "x", "gone"), cmdlets="Get-Item", host="h").cmdlet == "Get-Item"


def test_secrets_are_scrubbed_from_remote_messages() -> None:
    rec = record(5, "Bad,Import-PfxCertificate", "Cannot bind 'pfx-pw-123' to Password (pfx-pw-123)")
    err = error_from_record(rec, cmdlets="Import-PfxCertificate", host="h", secrets=["pfx-pw-123"])
    assert "pfx-pw-123" not in str(err) and "***" in str(err)
    assert scrub("ab abc", ["ab", "abc"]) == "*** ***"
    assert repr(SecureText("hunter2")) == "SecureText('***')"
    assert cmd("Import-PfxCertificate", Password=SecureText("pw"), FilePath=None).secrets == ("pw",)
    assert cmd("Get-Item", Path="x", Force=None).parameters == (("Path", "x"),)


def test_transport_failures_are_classified() -> None:
    def fault(code: int) -> WSManFaultError:
        return WSManFaultError(code, "m", "reason", None, None, None)

    assert isinstance(error_from_transport(fault(0x80338029), CONN, cmdlets="c"), Transient)
    assert isinstance(error_from_transport(fault(0x8033805B), CONN, cmdlets="c"), Transient)
    assert isinstance(error_from_transport(fault(0x800705AA), CONN, cmdlets="c"), Transient)
    not_transient = error_from_transport(fault(0x80070005), CONN, cmdlets="c")
    assert type(not_transient) is RemoteError and "0x80070005" in str(not_transient)
    assert isinstance(
        error_from_transport(WinRMTransportError("http", 503, ""), CONN, cmdlets="c"), Transient
    )
    assert isinstance(
        error_from_transport(WinRMTransportError("http", 403, ""), CONN, cmdlets="c"), AccessDenied
    )
    assert type(error_from_transport(WinRMTransportError("http", 400, ""), CONN, cmdlets="c")) is RemoteError
    auth = error_from_transport(
        AuthenticationError("Failed to authenticate the user u with basic"), CONN, cmdlets="c"
    )
    assert isinstance(auth, Authentication) and "connection.password" in str(auth)
    # the message names where and as whom, not the invocation's cmdlets (issue 8 #10)
    assert "https://h1.contoso.com:5986 (auth basic, user admin)" in str(auth) and " c " not in str(auth)
    unresolvable = requests.exceptions.ConnectionError(
        MaxRetryError(None, "/wsman", NameResolutionError("nohost.invalid", None, OSError("no such name")))
    )
    not_retried = error_from_transport(unresolvable, CONN, cmdlets="c")
    assert type(not_retried) is RemoteError and "connection.host" in str(not_retried)
    reset = requests.exceptions.ConnectionError("Connection reset by peer")
    assert isinstance(error_from_transport(reset, CONN, cmdlets="c"), Transient)
    tls = requests.exceptions.SSLError("certificate verify failed")
    assert isinstance(error_from_transport(tls, CONN, cmdlets="c"), Authentication)
    assert error_from_transport(ValueError("bug"), CONN, cmdlets="c") is None
    refused = requests.exceptions.ConnectionError(MaxRetryError(None, "/wsman", reason=None))
    refused.args[0].reason = ConnectionError("x")
    refused.args[0].reason.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert isinstance(error_from_transport(refused, CONN, cmdlets="c"), Unreachable)  # not retried


def test_hosts_block_is_replaced_and_other_lines_stay() -> None:
    stock = ["# Copyright (c) 1993-2009 Microsoft Corp.", "#", "# 127.0.0.1 localhost", "10.0.0.5 fileserver"]
    with_block = win.render_hosts(stock, {"Host2.Fabrikam.com": "127.0.0.12"})
    assert with_block[: len(stock)] == stock
    assert win.parse_managed_block(with_block) == {"host2.fabrikam.com": "127.0.0.12"}
    changed = win.render_hosts([*with_block, "10.0.0.9 later-line"], {"host3.fabrikam.com": "127.0.0.13"})
    assert "10.0.0.9 later-line" in changed and "127.0.0.12 host2.fabrikam.com" not in changed
    assert win.parse_managed_block(changed) == {"host3.fabrikam.com": "127.0.0.13"}
    assert win.render_hosts(changed, {}) == [*stock, "10.0.0.9 later-line"]


def test_timespans_and_entry_plans() -> None:
    assert hv.timespan("PT18H30M") == "18:30:00"
    assert hv.timespan("P1DT2H") == "26:00:00"
    assert hv.timespan("06:00:00") == "06:00:00"
    current = [
        hv.AuthorizationEntry("host1.contoso.com", "D:\\R", "G1"),
        hv.AuthorizationEntry("old.x.com", "D:\\O"),
    ]
    wanted = [
        hv.AuthorizationEntry("HOST1.contoso.com", "D:\\New", "G1"),
        hv.AuthorizationEntry("n.x.com", "D:\\N"),
    ]
    plan = hv.entry_cmds(current, wanted, remove_unlisted=["old.x.com"])
    names = [st[0].name for st in plan]
    assert names == [
        "Remove-VMReplicationAuthorizationEntry",
        "Set-VMReplicationAuthorizationEntry",
        "New-VMReplicationAuthorizationEntry",
    ]
    # Entries this resource did not create are never removed.
    assert [st[0].name for st in hv.entry_cmds(current, wanted)] == names[1:]


def test_set_server_always_passes_both_ports() -> None:
    settings = hv.ReplicationServerSettings(True, "Certificate", "AB" * 20, 8443, 8080, False, "")
    [command] = hv.set_server_cmd(settings)
    params = dict(command.parameters)
    assert params["CertificateAuthenticationPort"] == 8443 and params["KerberosAuthenticationPort"] == 8080
    assert params["CertificateThumbprint"] == "AB" * 20 and params["Force"] is True
    off = dict(
        hv.set_server_cmd(hv.ReplicationServerSettings(False, "", "", 443, 80, False, ""))[0].parameters
    )
    assert off["ReplicationEnabled"] is False and "AllowedAuthenticationType" not in off
    assert off["CertificateAuthenticationPort"] == 443 and off["KerberosAuthenticationPort"] == 80


def test_firewall_rules_are_read_by_instance_id_when_name_is_absent() -> None:
    """Name is the NetSecurity type data's alias of the CIM key InstanceID: without the type data only
    InstanceID arrives, and the rule must still be found."""
    full, bare = GenericComplexObject(), GenericComplexObject()
    for obj in (full, bare):
        obj.types = [
            "Microsoft.Management.Infrastructure.CimInstance#root/standardcimv2/MSFT_NetFirewallRule",
            "Microsoft.Management.Infrastructure.CimInstance",
            "System.Object",
        ]
        obj.adapted_properties = {"InstanceID": "VIRT-HVRHTTPSL-In-TCP-NoScope", "Enabled": 1}
    full.extended_properties = {"Name": "VIRT-HVRHTTPSL-In-TCP-NoScope", "Enabled": "True"}
    rules = win.parse_firewall_rules([bare])
    assert rules == {"VIRT-HVRHTTPSL-In-TCP-NoScope": win.FirewallRule("VIRT-HVRHTTPSL-In-TCP-NoScope", True)}
    assert win.parse_firewall_rules([full]) == rules
