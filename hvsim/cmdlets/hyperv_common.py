"""What every Hyper-V cmdlet shares: parameter types, VM selection (-VMName with wildcards, -VM objects),
-ComputerName handling and the Hyper-V error records."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from psrpcore.types import ErrorCategory, ErrorRecord, PSObject

from hvsim.cmdlets.base import (
    STRINGS,
    BoundArguments,
    CmdletContext,
    ConversionError,
    Param,
    ParamType,
    object_type,
    prompt_failure_message,
)
from hvsim.cmdlets.errors import WrittenError, register_exception
from hvsim.hyperv import VirtualMachine
from hvsim.network import ReplicationCheckError

NS = "Microsoft.HyperV.PowerShell"
COMMANDS = f"{NS}.Commands"
# Every error a Hyper-V cmdlet writes carries this exception (VirtualizationException.cs, sealed, derived from
# System.Exception); VMMS failures are wrapped in it (ExceptionHelper.ConvertToVirtualizationException).
VIRTUALIZATION_EXCEPTION = f"{NS}.VirtualizationException"
register_exception(VIRTUALIZATION_EXCEPTION, "System.Exception")

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
            fail(
                ctx,
                INVALID_PARAMETER,
                f"hvsim runs Hyper-V cmdlets on the host they are sent to; connect to '{name}' directly "
                "instead of passing -ComputerName.",
            )


def vm_not_found(ctx: CmdletContext, name: str, kind: ErrorKind) -> ErrorRecord:
    """VirtualizationObjectLocator.WriteNonMatchingNameErrors: ObjectNotFound without a target for most
    cmdlets; Get-VM -Name asks for its "warning" mode, which writes InvalidParameter with the name as
    target."""
    message = f'Hyper-V was unable to find a virtual machine with name "{name}".'
    return hyperv_error(ctx, kind, message, name if kind == INVALID_PARAMETER else None)


def select_vms(
    ctx: CmdletContext, args: BoundArguments, *, default_all: bool = False
) -> list[VirtualMachine]:
    """The VMs the standard -VMName / -VM parameters select (after the -ComputerName check)."""
    check_computer_name(ctx, args)
    return find_vms(ctx, args.get("VMName"), args.get("VM"), default_all=default_all)


def find_vms(
    ctx: CmdletContext,
    names: list[str] | None,
    objects: list[Any] | None,
    *,
    default_all: bool = False,
    missing: ErrorKind | None = None,
) -> list[VirtualMachine]:
    """VMs by name (case-insensitive, wildcards; a plain name matching nothing writes the not-found error of
    kind `missing`, ObjectNotFound by default) or by piped VM objects; all VMs when neither is given and
    `default_all`."""
    hyperv = ctx.host.hyperv
    if objects:
        found = []
        for obj in objects:
            vm = hyperv.vm_by_id(str(property_value(obj, "VMId") or property_value(obj, "Id") or ""))
            if vm is None:
                ctx.write_error(vm_not_found(ctx, str(property_value(obj, "Name") or ""), OBJECT_NOT_FOUND))
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
                ctx.write_error(vm_not_found(ctx, name, missing or OBJECT_NOT_FOUND))
        selected.extend(vm for vm in matches if vm not in selected)
    return selected


def property_value(obj: PSObject, name: str) -> Any:
    for prop in (*obj.PSObject.adapted_properties, *obj.PSObject.extended_properties):
        if prop.name.lower() == name.lower():
            return prop.get_value(obj)
    return None


# --- validation shared by Enable-/Set-VMReplication and Test-VMReplicationConnection ------------------------


def require_dns_name(ctx: CmdletContext, name: str, parameter: str = "ReplicaServerName") -> None:
    """-ReplicaServerName must be a DNS name: an IP address is an invalid URI for the replication service."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return
    invalid_parameter(ctx, f"The '{parameter}' parameter requires a fully qualified domain name (FQDN).")


def check_thumbprint_for(ctx: CmdletContext, authentication_type: str, thumbprint: str | None) -> None:
    if authentication_type == "Certificate" and not thumbprint:
        invalid_parameter(ctx, "'CertificateThumbprint' is not provided.")
    if authentication_type == "Kerberos" and thumbprint:
        invalid_parameter(ctx, f"'CertificateThumbprint' is not required for '{authentication_type}'.")


# --- errors -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorKind:
    """An ErrorIdentifier (the FullyQualifiedErrorId's part before the cmdlet class) and its category, as
    ExceptionHelper.cs pairs them."""

    identifier: str
    category: ErrorCategory


INVALID_PARAMETER = ErrorKind("InvalidParameter", ErrorCategory.InvalidArgument)
INVALID_STATE = ErrorKind("InvalidState", ErrorCategory.InvalidOperation)
INVALID_OPERATION = ErrorKind("InvalidOperation", ErrorCategory.InvalidOperation)
OBJECT_NOT_FOUND = ErrorKind("ObjectNotFound", ErrorCategory.ObjectNotFound)
# CreateOperationFailedException: a cmdlet's own refusal ("replication is not enabled", "already enabled").
OPERATION_FAILED = ErrorKind("OperationFailed", ErrorCategory.InvalidOperation)
# A failed VMMS job (VirtualizationOperationFailedException with error code 32768): TLS, authentication,
# authorization, an existing replica VM, a running VM ... all arrive as this.
VMMS_FAILED = ErrorKind("OperationFailed", ErrorCategory.NotSpecified)
UNSPECIFIED = ErrorKind("Unspecified", ErrorCategory.NotSpecified)  # any other exception


def hyperv_error(ctx: CmdletContext, kind: ErrorKind, message: str, target: Any = None) -> ErrorRecord:
    """The record of a VirtualizationException, FQID "<identifier>,Microsoft.HyperV.PowerShell.Commands.
    <Class>". Windows passes no target object for almost all of them."""
    return ctx.error(VIRTUALIZATION_EXCEPTION, message, kind.identifier, kind.category, target)


def fail(ctx: CmdletContext, kind: ErrorKind, message: str, target: Any = None) -> NoReturn:
    """Throw from the cmdlet's record: written as a NON-terminating error (terminating only under
    -ErrorAction Stop), and the rest of this record is skipped."""
    raise WrittenError(hyperv_error(ctx, kind, message, target))


def confirm(ctx: CmdletContext, query: str, force: bool) -> None:
    """ShouldContinue (only -Force skips it, -Confirm:$false does not). A remote runspace cannot prompt, and
    the cmdlet base class writes that failure like any other: Unspecified, NotSpecified, non-terminating
    (ExceptionHelper maps an exception it does not know so)."""
    if not force:
        fail(ctx, UNSPECIFIED, prompt_failure_message(query))


def invalid_parameter(ctx: CmdletContext, message: str) -> NoReturn:
    """A parameter value or combination the cmdlet refuses before touching anything
    (ExceptionHelper.CreateInvalidArgumentException)."""
    fail(ctx, INVALID_PARAMETER, message)


def vm_failure(ctx: CmdletContext, vm: VirtualMachine, message: str) -> ErrorRecord:
    """A failed VMMS job about `vm`: VMMS ends such messages with the VM's id. The wording of VMMS' own
    messages is hvsim's (they come from VMMS, not from the cmdlet assemblies)."""
    return hyperv_error(ctx, VMMS_FAILED, f"{message} (Virtual machine ID {vm.id})")


def invalid_state(ctx: CmdletContext, vm: VirtualMachine) -> ErrorRecord:
    """The cmdlets' refusal for a VM whose replication state does not allow the operation (a VM without
    replication is in state Disabled): OperationFailed_InvalidReplicationState."""
    return hyperv_error(
        ctx,
        INVALID_STATE,
        f"The operation cannot be performed while the virtual machine '{vm.name}' is in the current "
        "replication state.",
    )


def not_applicable(ctx: CmdletContext, vm: VirtualMachine) -> ErrorRecord:
    """VMReplication.ReportInvalidModeError: the cmdlet does not apply to a VM in this replication mode."""
    where = {"Primary": "primary ", "Replica": "Replica "}.get(vm.replication_mode, "")
    message = f'"{ctx.spec.name}" is not applicable on {where}virtual machine "{vm.name}".'
    return hyperv_error(ctx, OPERATION_FAILED, message)


def not_enabled(ctx: CmdletContext, vm: VirtualMachine, kind: ErrorKind) -> ErrorRecord:
    """VMReplication_NotEnabled, whose kind depends on the cmdlet: OperationFailed for Get-VMReplication,
    InvalidState for Set-VMReplication, ObjectNotFound for Measure-VMReplication."""
    return hyperv_error(ctx, kind, f"Replication is not enabled for virtual machine with name '{vm.name}'.")


def connection_failed(ctx: CmdletContext, what: str, error: ReplicationCheckError) -> ErrorRecord:
    """A failed replication connection check as VMMS reports it: a failed job, whichever check failed (the
    message says which)."""
    return hyperv_error(ctx, VMMS_FAILED, f"{what}: the {error.check} check failed. {error}")
