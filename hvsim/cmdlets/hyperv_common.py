"""What every Hyper-V cmdlet shares: parameter types, VM selection (-VMName with wildcards, -VM objects),
-ComputerName handling and the Hyper-V error records."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from psrpcore.types import ErrorCategory, PSObject

from hvsim.cmdlets.base import (
    STRINGS,
    BoundArguments,
    CmdletContext,
    ConversionError,
    Param,
    ParamType,
    object_type,
)
from hvsim.cmdlets.errors import register_exception
from hvsim.hyperv import VirtualMachine
from hvsim.network import ReplicationCheckError

NS = "Microsoft.HyperV.PowerShell"
COMMANDS = f"{NS}.Commands"
VIRTUALIZATION_EXCEPTION = f"{NS}.VirtualizationException"
OPERATION_FAILED_EXCEPTION = f"{NS}.VirtualizationOperationFailedException"
register_exception(VIRTUALIZATION_EXCEPTION, "System.Exception")
register_exception(OPERATION_FAILED_EXCEPTION, VIRTUALIZATION_EXCEPTION)

VIRTUAL_MACHINE_TYPE = f"{NS}.VirtualMachine"
PORT_RANGE = (1, 65535)


# --- parameter types ----------------------------------------------------------------------------------------


def _timespan(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return timedelta(seconds=value.total_seconds())
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(microseconds=value / 10)  # a bare number is ticks, as [TimeSpan]<Int64> is
    match = re.fullmatch(r"\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?\s*", str(value))
    if match is None:
        raise ConversionError(
            f'Cannot convert value "{value}" to type "System.TimeSpan". Error: "String was not recognized as '
            f'a valid TimeSpan."'
        )
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0").ljust(7, "0")) / 10,
    )


def _datetime(value: Any) -> datetime:
    text = value.isoformat() if isinstance(value, datetime) else str(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConversionError(
            f'Cannot convert value "{value}" to type "System.DateTime". Error: "String was not recognized as '
            f'a valid DateTime."'
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _guid(value: Any) -> str:
    """System.Guid from its string forms (with or without braces/dashes); kept as the lower-case D form."""
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise ConversionError(
            f'Cannot convert value "{value}" to type "System.Guid". Error: "Guid should contain 32 digits '
            'with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."'
        ) from None


TIMESPAN = ParamType("System.TimeSpan", _timespan)
GUID = ParamType("System.Guid", _guid)
DATETIME = ParamType("System.DateTime", _datetime)
VM_OBJECTS = ParamType(
    f"{VIRTUAL_MACHINE_TYPE}[]",
    lambda value: [
        object_type(VIRTUAL_MACHINE_TYPE).convert(v)
        for v in (value if isinstance(value, list | tuple) else [value])
    ],
    is_array=True,
)


def vm_params(
    *, name_sets: tuple[str, ...] = (), object_sets: tuple[str, ...] = (), mandatory: bool = True
) -> tuple[Param, ...]:
    """-VMName (alias Name, position 0, wildcards) and -VM (objects, from the pipeline) in their parameter
    sets."""
    return (
        Param(
            "VMName",
            STRINGS,
            aliases=("Name",),
            position=0,
            sets=name_sets,
            mandatory=name_sets if mandatory else False,
        ),
        Param(
            "VM",
            VM_OBJECTS,
            position=0,
            sets=object_sets,
            from_pipeline=True,
            mandatory=object_sets if mandatory else False,
        ),
        COMPUTER_NAME,
    )


COMPUTER_NAME = Param("ComputerName", STRINGS)


# --- selection ----------------------------------------------------------------------------------------------


def is_wildcard(name: str) -> bool:
    return any(c in name for c in "*?[")


def wildcard_match(pattern: str, value: str) -> bool:
    """PowerShell WildcardPattern (case-insensitive *, ?, [set])."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def check_computer_name(ctx: CmdletContext, args: BoundArguments) -> None:
    """hvsim runs each cmdlet on the host it was sent to: -ComputerName may only name that host."""
    host = ctx.host
    local = {"localhost", ".", host.fqdn.lower(), host.computer_name.lower(), host.address}
    for name in args.get("ComputerName") or []:
        if name.lower() not in local:
            ctx.throw(
                VIRTUALIZATION_EXCEPTION,
                f"hvsim runs Hyper-V cmdlets on the host they are sent to; connect to '{name}' directly "
                "instead of passing -ComputerName.",
                "InvalidParameter",
                ErrorCategory.InvalidArgument,
                name,
            )


def vm_not_found(ctx: CmdletContext, name: str) -> Any:
    return ctx.error(
        VIRTUALIZATION_EXCEPTION,
        f'Hyper-V was unable to find a virtual machine with name "{name}".',
        "ObjectNotFound",
        ErrorCategory.ObjectNotFound,
        name,
    )


def select_vms(
    ctx: CmdletContext, args: BoundArguments, *, default_all: bool = False
) -> list[VirtualMachine]:
    """The VMs the standard -VMName / -VM parameters select (after the -ComputerName check)."""
    check_computer_name(ctx, args)
    return find_vms(ctx, args.get("VMName"), args.get("VM"), default_all=default_all)


def find_vms(
    ctx: CmdletContext, names: list[str] | None, objects: list[Any] | None, *, default_all: bool = False
) -> list[VirtualMachine]:
    """VMs by name (wildcards; a plain name matching nothing writes the not-found error) or by piped VM
    objects;
    all VMs when neither is given and `default_all`."""
    hyperv = ctx.host.hyperv
    if objects:
        found = []
        for obj in objects:
            vm = hyperv.vm_by_id(str(_property(obj, "VMId") or _property(obj, "Id") or ""))
            if vm is None:
                ctx.write_error(vm_not_found(ctx, str(_property(obj, "Name") or "")))
            else:
                found.append(vm)
        return found
    if not names:
        return list(hyperv.vms) if default_all else []
    selected: list[VirtualMachine] = []
    for name in names:
        if is_wildcard(name):
            matches = [vm for vm in hyperv.vms if wildcard_match(name, vm.name)]
        else:
            matches = hyperv.find_vms(name)
            if not matches:
                ctx.write_error(vm_not_found(ctx, name))
        selected.extend(vm for vm in matches if vm not in selected)
    return selected


def _property(obj: PSObject, name: str) -> Any:
    for prop in (*obj.PSObject.adapted_properties, *obj.PSObject.extended_properties):
        if prop.name.lower() == name.lower():
            return prop.get_value(obj)
    return None


# --- validation shared by Enable-/Set-VMReplication and Test-VMReplicationConnection ------------------------


def require_dns_name(ctx: CmdletContext, name: str) -> None:
    """-ReplicaServerName must be a DNS name: an IP address is an invalid URI for the replication service."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return
    ctx.throw(
        VIRTUALIZATION_EXCEPTION,
        f"The replica server name '{name}' is not valid: specify the fully qualified domain name of the "
        "replica server, not an IP address.",
        "InvalidParameter_InvalidUri",
        ErrorCategory.InvalidArgument,
        name,
    )


def check_thumbprint_for(ctx: CmdletContext, authentication_type: str, thumbprint: str | None) -> None:
    if authentication_type == "Certificate" and not thumbprint:
        ctx.throw(
            VIRTUALIZATION_EXCEPTION,
            "The certificate thumbprint must be specified with certificate-based authentication "
            "(-CertificateThumbprint).",
            "InvalidParameter",
            ErrorCategory.InvalidArgument,
        )
    if authentication_type == "Kerberos" and thumbprint:
        ctx.throw(
            VIRTUALIZATION_EXCEPTION,
            "A certificate thumbprint cannot be specified with Kerberos authentication.",
            "InvalidParameter",
            ErrorCategory.InvalidArgument,
            thumbprint,
        )


# --- errors -------------------------------------------------------------------------------------------------


def invalid_parameter(
    ctx: CmdletContext, message: str, target: Any = None, error_id: str = "InvalidParameter"
) -> NoReturn:
    """A parameter combination the cmdlet refuses before touching anything (terminating)."""
    ctx.throw(VIRTUALIZATION_EXCEPTION, message, error_id, ErrorCategory.InvalidArgument, target)


def vm_failure(ctx: CmdletContext, vm: VirtualMachine, message: str, error_id: str) -> Any:
    """A VirtualizationOperationFailedException about `vm`: VMMS ends such messages with the VM's id."""
    return ctx.error(
        OPERATION_FAILED_EXCEPTION,
        f"{message} (Virtual machine ID {vm.id})",
        error_id,
        ErrorCategory.InvalidOperation,
        vm.name,
    )


def invalid_state(ctx: CmdletContext, vm: VirtualMachine, operation: str) -> Any:
    """The VMMS refusal for a VM in the wrong replication state (§3.7: "not in a valid replication state")."""
    return vm_failure(
        ctx,
        vm,
        f"'{operation}' failed for virtual machine '{vm.name}': the virtual machine is not in a valid "
        f"replication state to perform the operation (current state {vm.replication_state}).",
        "OperationFailed_InvalidReplicationState",
    )


def not_applicable(ctx: CmdletContext, vm: VirtualMachine) -> Any:
    message = f"'{ctx.spec.name}' is not applicable on virtual machine '{vm.name}'."
    return vm_failure(ctx, vm, message, "InvalidOperation")


def not_enabled(ctx: CmdletContext, vm: VirtualMachine) -> Any:
    message = f"Replication is not enabled for virtual machine '{vm.name}'."
    return vm_failure(ctx, vm, message, "VMReplication_NotEnabled")


_CHECK_CATEGORIES = {
    "authorization": ErrorCategory.PermissionDenied,
    "Kerberos authentication": ErrorCategory.AuthenticationError,
}


def connection_failed(ctx: CmdletContext, what: str, error: ReplicationCheckError, target: Any) -> Any:
    """A failed replication connection check as the cmdlet reports it: which check, the message, the code."""
    if error.check.startswith(("primary certificate", "replica certificate", "certificate", "TLS")):
        category = ErrorCategory.SecurityError
    else:
        category = _CHECK_CATEGORIES.get(error.check, ErrorCategory.ConnectionError)
    return ctx.error(
        OPERATION_FAILED_EXCEPTION,
        f"{what}: the {error.check} check failed. {error}",
        "OperationFailed",
        category,
        target,
    )
