"""The replica-server side: Get-/Set-VMReplicationServer, the *-VMReplicationAuthorizationEntry cmdlets and
Test-VMReplicationConnection."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from psrpcore.types import ErrorRecord

from hvsim.cmdlets.base import (
    BOOL,
    FORCE,
    HASHTABLE,
    INT32,
    PASSTHRU,
    STRING,
    STRINGS,
    BoundArguments,
    CmdletContext,
    Param,
    cmdlet,
    enum_type,
)
from hvsim.cmdlets.hyperv_common import (
    COMMANDS,
    COMPUTER_NAME,
    INVALID_OPERATION,
    OBJECT_NOT_FOUND,
    OPERATION_FAILED,
    PORT_RANGE,
    TIMESPAN,
    VMMS_FAILED,
    ErrorKind,
    check_computer_name,
    check_thumbprint_for,
    confirm,
    connection_failed,
    fail,
    hyperv_error,
    invalid_parameter,
    require_dns_name,
    wildcard_match,
)
from hvsim.cmdlets.hyperv_objects import (
    RecoveryAuthenticationType,
    ReplicationAuthenticationType,
    authorization_entry_object,
    replication_server_object,
)
from hvsim.hyperv import (
    ANY_SERVER,
    ANY_SERVER_TRUST_GROUP,
    DEFAULT_CERTIFICATE_PORT,
    DEFAULT_KERBEROS_PORT,
    AuthorizationEntry,
)
from hvsim.network import (
    ReplicationCheckError,
    check_connection,
    is_absolute_windows_path,
    normalize_thumbprint,
)

# §2.1 [Impl]: the code accepts 1 h - 7 d for the interval and 0 - 24 h for the start time.
MONITORING_INTERVAL_RANGE = (timedelta(hours=1), timedelta(days=7))
MONITORING_START_RANGE = (timedelta(0), timedelta(hours=24))
_SETTABLE = (
    "ReplicationEnabled",
    "AllowedAuthenticationType",
    "ReplicationAllowedFromAnyServer",
    "CertificateThumbprint",
    "DefaultStorageLocation",
    "KerberosAuthenticationPort",
    "CertificateAuthenticationPort",
    "KerberosAuthenticationPortMapping",
    "CertificateAuthenticationPortMapping",
    "MonitoringInterval",
    "MonitoringStartTime",
)


@cmdlet(
    "Get-VMReplicationServer",
    f"{COMMANDS}.GetVMReplicationServer",
    [
        Param("ComputerName", STRINGS, position=0),
    ],
)
def get_replication_server(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    ctx.write_output(replication_server_object(ctx.host.hyperv))


@cmdlet(
    "Set-VMReplicationServer",
    f"{COMMANDS}.SetVMReplicationServer",
    [
        Param("ReplicationEnabled", BOOL, aliases=("RepEnabled",), position=0),
        Param(
            "AllowedAuthenticationType",
            enum_type(RecoveryAuthenticationType),
            aliases=("AuthType",),
            position=1,
        ),
        Param("ReplicationAllowedFromAnyServer", BOOL, aliases=("AllowAnyServer",), position=2),
        Param("CertificateThumbprint", STRING, aliases=("Thumbprint",)),
        Param("DefaultStorageLocation", STRING, aliases=("StorageLoc",)),
        Param("KerberosAuthenticationPort", INT32, aliases=("KerbAuthPort",), value_range=PORT_RANGE),
        Param("CertificateAuthenticationPort", INT32, aliases=("CertAuthPort",), value_range=PORT_RANGE),
        Param("KerberosAuthenticationPortMapping", HASHTABLE),
        Param("CertificateAuthenticationPortMapping", HASHTABLE),
        Param("MonitoringInterval", TIMESPAN),
        Param("MonitoringStartTime", TIMESPAN),
        COMPUTER_NAME,
        FORCE,
        PASSTHRU,
    ],
    supports_should_process=True,
)
def set_replication_server(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    hyperv = ctx.host.hyperv
    server = hyperv.server
    # §2.1 validation order; nothing is written when any check fails.
    if not any(name in args for name in _SETTABLE):
        fail(ctx, OPERATION_FAILED, "You must specify at least one parameter to run this command.")
    any_server = args.get("ReplicationAllowedFromAnyServer")
    if any_server is True and not args.get("DefaultStorageLocation"):
        invalid_parameter(
            ctx,
            "The 'ReplicationAllowedFromAnyServer' parameter requires that the 'DefaultStorageLocation' "
            "parameter be specified.",
        )
    _check_range(ctx, args, "MonitoringInterval", MONITORING_INTERVAL_RANGE)
    _check_range(ctx, args, "MonitoringStartTime", MONITORING_START_RANGE)
    auth = args.get("AllowedAuthenticationType")
    thumbprint = (
        normalize_thumbprint(args["CertificateThumbprint"]) if "CertificateThumbprint" in args else None
    )
    if auth is not None and auth.name != "Kerberos" and not thumbprint:
        invalid_parameter(ctx, "'CertificateThumbprint' is not provided.")
    if auth is not None and auth.name == "Kerberos" and thumbprint:
        invalid_parameter(ctx, f"'CertificateThumbprint' is not required for '{auth.name}'.")
    if args.get("ReplicationEnabled") is True and auth is None:
        invalid_parameter(ctx, "'AllowedAuthenticationType' is not provided.")
    ports = "KerberosAuthenticationPort" in args or "CertificateAuthenticationPort" in args
    mappings = args.get("KerberosAuthenticationPortMapping") or args.get(
        "CertificateAuthenticationPortMapping"
    )
    if ports and mappings:
        invalid_parameter(ctx, "Conflicting parameters have been supplied to the cmdlet.")  # hvsim's choice
    if mappings:
        # hvsim's wording: port mappings need a Replica Broker on a failover cluster, which hvsim has not.
        fail(ctx, VMMS_FAILED, "Port mappings apply to a Hyper-V Replica Broker on a failover cluster.")
    if thumbprint:
        _check_certificate(ctx, thumbprint)
    location = args.get("DefaultStorageLocation")
    if location is not None:
        _check_storage_location(ctx, location)
        if any_server is not True and not (any_server is None and hyperv.any_server_entry):
            invalid_parameter(
                ctx,
                "The parameter 'ReplicationAllowedFromAnyServer' must be set to 'True' to allow any changes "
                "to 'DefaultStorageLocation'.",
            )
    entries_to_drop = [e for e in hyperv.authorization_entries if e.allowed_primary_server != ANY_SERVER]
    if any_server is True and hyperv.any_server_entry is None and entries_to_drop:
        confirm(
            ctx,
            "Set-VMReplicationServer: All authenticated incoming servers would be allowed to replicate. All "
            "existing authorization entries will be removed. Do you want to continue?",
            bool(args.get("Force")),
        )
    if not ctx.should_process(ctx.host.computer_name, "Set-VMReplicationServer"):
        return

    if "ReplicationEnabled" in args:
        server.replication_enabled = bool(args["ReplicationEnabled"])  # $null binds as None
    if auth is not None:
        server.allowed_authentication_type = int(auth)
        if auth.name == "Kerberos":
            server.certificate_thumbprint = ""
    if thumbprint:
        server.certificate_thumbprint = thumbprint
    if args.get("ReplicationEnabled") is False:  # disabling forgets the authentication settings (§2.1)
        server.allowed_authentication_type, server.certificate_thumbprint = 0, ""
    # Omitted ports are written back as their defaults (§2.1 "port reset").
    server.kerberos_port = args.get("KerberosAuthenticationPort") or DEFAULT_KERBEROS_PORT
    server.certificate_port = args.get("CertificateAuthenticationPort") or DEFAULT_CERTIFICATE_PORT
    if "MonitoringInterval" in args:
        server.monitoring_interval = args["MonitoringInterval"]
    if "MonitoringStartTime" in args:
        server.monitoring_start_time = args["MonitoringStartTime"]
    _apply_any_server(hyperv, any_server, location)
    if args.get("PassThru"):
        ctx.write_output(replication_server_object(hyperv))


def _apply_any_server(hyperv: Any, any_server: bool | None, location: str | None) -> None:
    current = hyperv.any_server_entry
    if any_server is True:
        if current is None:
            hyperv.authorization_entries = [
                AuthorizationEntry(ANY_SERVER, location or "", ANY_SERVER_TRUST_GROUP)
            ]
        elif location:
            current.replica_storage_location = location
    elif any_server is False and current is not None:
        hyperv.authorization_entries.remove(current)
    elif any_server is None and current is not None and location:
        current.replica_storage_location = location


def _check_range(
    ctx: CmdletContext, args: BoundArguments, name: str, bounds: tuple[timedelta, timedelta]
) -> None:
    value = args.get(name)
    if value is not None and not bounds[0] <= value <= bounds[1]:
        invalid_parameter(
            ctx, f"The value specified in the '{name}' parameter was out of the range of valid values."
        )


def _check_certificate(ctx: CmdletContext, thumbprint: str) -> None:
    """VMMS checks the certificate when it applies the settings: a failed job (hvsim's wording)."""
    stored = ctx.host.certificates.get("My", thumbprint)
    if stored is None:
        message = f"The certificate with thumbprint '{thumbprint}' was not found in Cert:\\LocalMachine\\My."
        fail(ctx, VMMS_FAILED, message)
    elif not stored.has_private_key:
        fail(ctx, VMMS_FAILED, f"The certificate with thumbprint '{thumbprint}' has no private key.")


def _check_storage_location(ctx: CmdletContext, location: str) -> None:
    if not is_absolute_windows_path(location):
        invalid_parameter(
            ctx, f"The storage location '{location}' must be an absolute path such as D:\\Replica."
        )


# --- authorization entries ----------------------------------------------------------------------------------

_FQDN = re.compile(r"^(\*\.)?(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*$", re.UNICODE)


def _entries(ctx: CmdletContext) -> list[AuthorizationEntry]:
    return ctx.host.hyperv.authorization_entries


@cmdlet(
    "Get-VMReplicationAuthorizationEntry",
    f"{COMMANDS}.GetVMReplicationAuthorizationEntry",
    [
        Param("AllowedPrimaryServer", STRING, aliases=("AllowedPS",), position=0),
        Param("ReplicaStorageLocation", STRING, aliases=("StorageLoc",)),
        Param("TrustGroup", STRING),
        COMPUTER_NAME,
    ],
)
def get_authorization_entry(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    selected = list(_entries(ctx))
    for name, attribute in (
        ("AllowedPrimaryServer", "allowed_primary_server"),
        ("ReplicaStorageLocation", "replica_storage_location"),
        ("TrustGroup", "trust_group"),
    ):
        pattern = args.get(name)
        if pattern is None:
            continue
        selected = [e for e in selected if wildcard_match(pattern, getattr(e, attribute))]
        # §2.2: a server or trust-group filter that matches nothing is an error; a location filter is not.
        if not selected and name != "ReplicaStorageLocation":
            ctx.write_error(_entry_not_found(ctx, OPERATION_FAILED, name, pattern))
            return
    for entry in selected:
        ctx.write_output(authorization_entry_object(entry))


def _entry_not_found(ctx: CmdletContext, kind: ErrorKind, parameter: str, value: str) -> ErrorRecord:
    """VMReplicationAuthorizationEntry_NotFoundBy*: OperationFailed from Get-, ObjectNotFound from Remove-."""
    if parameter == "TrustGroup":
        message = (
            f"Unable to find a authorization entry for the given trust group '{value}' with given criteria."
        )
    else:
        message = f"Unable to find an authorization entry for primary server '{value}' with given criteria."
    return hyperv_error(ctx, kind, message)


@cmdlet(
    "New-VMReplicationAuthorizationEntry",
    f"{COMMANDS}.NewVMReplicationAuthorizationEntry",
    [
        Param("AllowedPrimaryServer", STRING, aliases=("AllowedPS",), position=0, mandatory=True),
        Param("ReplicaStorageLocation", STRING, aliases=("StorageLoc",), position=1, mandatory=True),
        Param("TrustGroup", STRING, position=2, mandatory=True),
        COMPUTER_NAME,
    ],
    supports_should_process=True,
)
def new_authorization_entry(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    server_name = args["AllowedPrimaryServer"].strip()
    location = args["ReplicaStorageLocation"]
    entries = _entries(ctx)
    if server_name != ANY_SERVER and not _FQDN.match(server_name):
        invalid_parameter(
            ctx, "The 'AllowedPrimaryServer' parameter requires a fully qualified domain name (FQDN)."
        )
    _check_storage_location(ctx, location)
    if server_name == ANY_SERVER and entries:
        message = (
            "Parameter 'AllowedPrimaryServer' cannot be set to 'all' if existing authorizations are present."
        )
        fail(ctx, INVALID_OPERATION, message)
    if server_name != ANY_SERVER and any(e.allowed_primary_server == ANY_SERVER for e in entries):
        message = (
            "Parameter 'AllowedPrimaryServer' cannot be a custom entry if the authorization for 'all' is "
            "already set."
        )
        fail(ctx, INVALID_OPERATION, message)
    if any(e.allowed_primary_server.lower() == server_name.lower() for e in entries):
        # VMMS refuses the duplicate (AddReplicationAuthSettingsFailed); the reason is hvsim's wording.
        message = f"Adding the authorization entry failed. An entry for '{server_name}' already exists."
        fail(ctx, VMMS_FAILED, message)
    if not ctx.should_process(server_name, "New-VMReplicationAuthorizationEntry"):
        return
    entry = AuthorizationEntry(server_name, location, args["TrustGroup"])
    entries.append(entry)
    ctx.write_output(authorization_entry_object(entry))


@cmdlet(
    "Set-VMReplicationAuthorizationEntry",
    f"{COMMANDS}.SetVMReplicationAuthorizationEntry",
    [
        Param("AllowedPrimaryServer", STRING, aliases=("AllowedPS",), position=0, mandatory=True),
        Param("ReplicaStorageLocation", STRING, aliases=("StorageLoc",), position=1),
        Param("TrustGroup", STRING, position=2),
        COMPUTER_NAME,
        PASSTHRU,
    ],
    supports_should_process=True,
)
def set_authorization_entry(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    wanted = args["AllowedPrimaryServer"].lower()
    location = args.get("ReplicaStorageLocation")
    if location is not None:
        _check_storage_location(ctx, location)
    # §2.2 [Impl]: no match is a silent no-op; files are never moved.
    for entry in _entries(ctx):
        if entry.allowed_primary_server.lower() != wanted:
            continue
        if not ctx.should_process(entry.allowed_primary_server, "Set-VMReplicationAuthorizationEntry"):
            return
        if location is not None:
            entry.replica_storage_location = location
        if "TrustGroup" in args:
            entry.trust_group = args["TrustGroup"]
        if args.get("PassThru"):
            ctx.write_output(authorization_entry_object(entry))


@cmdlet(
    "Remove-VMReplicationAuthorizationEntry",
    f"{COMMANDS}.RemoveVMReplicationAuthorizationEntry",
    [
        Param(
            "AllowedPrimaryServer",
            STRING,
            aliases=("AllowedPS",),
            position=0,
            sets=("AllowedPrimaryServer",),
            mandatory=("AllowedPrimaryServer",),
        ),
        Param("TrustGroup", STRING, sets=("TrustGroup",), mandatory=("TrustGroup",)),
        COMPUTER_NAME,
        PASSTHRU,
    ],
    default_set="AllowedPrimaryServer",
    supports_should_process=True,
)
def remove_authorization_entry(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    entries = _entries(ctx)
    if "AllowedPrimaryServer" in args:
        parameter, value = "AllowedPrimaryServer", args["AllowedPrimaryServer"]
        doomed = [e for e in entries if e.allowed_primary_server.lower() == value.lower()]
    else:
        parameter, value = "TrustGroup", args["TrustGroup"]
        doomed = [e for e in entries if wildcard_match(value, e.trust_group)]
    if not doomed:
        ctx.write_error(_entry_not_found(ctx, OBJECT_NOT_FOUND, parameter, value))
        return
    for entry in doomed:
        if ctx.should_process(entry.allowed_primary_server, "Remove-VMReplicationAuthorizationEntry"):
            entries.remove(entry)
            if args.get("PassThru"):
                ctx.write_output(authorization_entry_object(entry))


# --- connection test ----------------------------------------------------------------------------------------


@cmdlet(
    "Test-VMReplicationConnection",
    f"{COMMANDS}.TestVMReplicationConnection",
    [
        Param("ReplicaServerName", STRING, aliases=("ReplicaServer",), position=0, mandatory=True),
        Param(
            "ReplicaServerPort",
            INT32,
            aliases=("ReplicaPort",),
            position=1,
            mandatory=True,
            value_range=PORT_RANGE,
        ),
        Param(
            "AuthenticationType",
            enum_type(ReplicationAuthenticationType),
            aliases=("AuthType",),
            position=2,
            mandatory=True,
        ),
        Param("CertificateThumbprint", STRING, aliases=("Thumbprint", "Cert"), position=3),
        Param("BypassProxyServer", BOOL),
        COMPUTER_NAME,
    ],
)
def test_replication_connection(ctx: CmdletContext, args: BoundArguments) -> None:
    check_computer_name(ctx, args)
    name = args["ReplicaServerName"]
    require_dns_name(ctx, name)
    auth = args["AuthenticationType"].name
    thumbprint = normalize_thumbprint(args.get("CertificateThumbprint") or "")
    check_thumbprint_for(ctx, auth, thumbprint)
    try:
        check_connection(ctx.lab, ctx.host, name, args["ReplicaServerPort"], auth, thumbprint, ctx.lab.now())
    except ReplicationCheckError as exc:
        ctx.write_error(connection_failed(ctx, f"The connection test to replica server '{name}' failed", exc))
        return
    ctx.write_output(
        f"Connection to replica server '{name}' on port {args['ReplicaServerPort']} using {auth} "
        "authentication was successful."
    )
