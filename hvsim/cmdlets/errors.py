"""ErrorRecord builders: the exception type chain, message, FullyQualifiedErrorId, category and target that
Windows PowerShell puts on the wire, and the TerminatingError that carries one out of a cmdlet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psrpcore.types import (
    CommandOrigin,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    InvocationInfo,
    NETException,
    PSDict,
    PSInt,
    PSList,
    PSSecureString,
)

from hvsim.wsman.psrp_compat import clixml_text

# .NET exception type -> its base type; walked to build the <TN> chain the client sees.
_SMA = "System.Management.Automation"
_EXCEPTION_PARENTS: dict[str, str] = {
    "System.SystemException": "System.Exception",
    "System.ArgumentException": "System.SystemException",
    "System.InvalidOperationException": "System.SystemException",
    "System.IO.IOException": "System.SystemException",
    "System.IO.FileNotFoundException": "System.IO.IOException",
    "System.UnauthorizedAccessException": "System.SystemException",
    "System.NotSupportedException": "System.SystemException",
    "System.Security.Cryptography.CryptographicException": "System.SystemException",
    "System.ComponentModel.Win32Exception": "System.Runtime.InteropServices.ExternalException",
    "System.Runtime.InteropServices.ExternalException": "System.SystemException",
    "System.Management.Automation.RuntimeException": "System.SystemException",
    "System.Management.Automation.ParameterBindingException": "System.Management.Automation.RuntimeException",
    "System.Management.Automation.CommandNotFoundException": "System.Management.Automation.RuntimeException",
    "System.Management.Automation.SessionStateException": "System.Management.Automation.RuntimeException",
    f"{_SMA}.ItemNotFoundException": f"{_SMA}.SessionStateException",
    f"{_SMA}.DriveNotFoundException": f"{_SMA}.SessionStateException",
    f"{_SMA}.ProviderNotFoundException": f"{_SMA}.SessionStateException",
    "System.Management.Automation.PSArgumentException": "System.ArgumentException",
    "System.Management.Automation.PSInvalidOperationException": "System.InvalidOperationException",
    "System.Management.Automation.PSNotSupportedException": "System.NotSupportedException",
    "System.Management.Automation.Host.HostException": "System.Management.Automation.RuntimeException",
    f"{_SMA}.ValidationMetadataException": f"{_SMA}.MetadataException",
    "System.Management.Automation.MetadataException": "System.Management.Automation.RuntimeException",
    "System.Management.Automation.PipelineStoppedException": "System.Management.Automation.RuntimeException",
    "Microsoft.Management.Infrastructure.CimException": "System.SystemException",
    "Microsoft.PowerShell.Cmdletization.Cim.CimJobException": "System.SystemException",
}

# Error codes that Windows attaches to the common exception types (HResult, an I32 on the wire).
_HRESULTS: dict[str, int] = {
    "System.Exception": -2146233088,
    "System.SystemException": -2146233087,
    "System.ArgumentException": -2147024809,
    "System.InvalidOperationException": -2146233079,
    "System.IO.IOException": -2146232800,
    "System.Management.Automation.RuntimeException": -2146233087,
    "System.Security.Cryptography.CryptographicException": -2146233296,
}


class TerminatingError(Exception):
    """A terminating failure of a pipeline: the server fails the pipeline with this ErrorRecord."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(str(record))
        self.record = record


class WrittenError(Exception):
    """An error a cmdlet's ProcessRecord lets escape and its base class catches and writes as a
    NON-terminating error record (subject to -ErrorAction), as the Hyper-V cmdlets' base class does with every
    exception of its parameter checks and operations (VirtualizationCmdletBase.ProcessRecord ->
    ExceptionHelper.DisplayErrorOnException)."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(str(record))
        self.record = record


def register_exception(type_name: str, parent: str) -> None:
    """Declare a .NET exception type (and its base) so records built for it carry the real type chain."""
    _EXCEPTION_PARENTS[type_name] = parent


def exception_type_chain(type_name: str) -> list[str]:
    """The .NET type-name chain of an exception type, most derived first, ending at System.Object."""
    chain = [type_name]
    while chain[-1] != "System.Exception":
        chain.append(_EXCEPTION_PARENTS.get(chain[-1], "System.Exception"))
    chain.append("System.Object")
    return chain


def make_exception(type_name: str, message: str, hresult: int | None = None) -> NETException:
    """A serialisable .NET exception object of `type_name` (real TN chain, Message, HResult, ToString)."""
    if hresult is None:
        hresult = next((_HRESULTS[t] for t in exception_type_chain(type_name) if t in _HRESULTS), -2146233088)
    exc = NETException(Message=message, HResult=PSInt(hresult))
    exc.PSObject.type_names = exception_type_chain(type_name)
    exc.PSObject.to_string = clixml_text(f"{type_name}: {message}")
    return exc


def error_record(
    *,
    exception_type: str,
    message: str,
    error_id: str,
    category: ErrorCategory,
    command_name: str | None = None,
    command_type: str | None = None,
    target: Any = None,
    target_type: str | None = None,
    hresult: int | None = None,
    invocation: InvocationInfo | None = None,
) -> ErrorRecord:
    """An ErrorRecord as a cmdlet of .NET type `command_type` (named `command_name`) would write it.

    FullyQualifiedErrorId is "<error_id>,<command_type>" when the error comes from a cmdlet and the bare id
    otherwise (e.g. CommandNotFoundException raised by the engine); Activity is the cmdlet name and Reason the
    exception's short type name, exactly what ErrorCategoryInfo shows on Windows.
    """
    fqid = f"{error_id},{command_type}" if command_type else error_id
    target_name = "" if target is None else str(target)
    if target_type is None and target is not None:
        target_type = "String" if isinstance(target, str) else type(target).__name__
    info = ErrorCategoryInfo(
        Category=category,
        Activity=command_name or "",
        Reason=exception_type.rsplit(".", 1)[-1],
        TargetName=target_name,
        TargetType=target_type or "",
    )
    return ErrorRecord(
        Exception=make_exception(exception_type, message, hresult),
        CategoryInfo=info,
        TargetObject=target,
        FullyQualifiedErrorId=fqid,
        InvocationInfo=invocation,
    )


_GENERIC_ARGS = "[System.String, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]"
_OBJECT_ARG = "[System.Object, mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089]"


def _bound_value(value: Any) -> Any:
    """A bound parameter as it arrives beyond the serialization depth: primitives keep their type, anything
    else is its ToString (so a SecureString shows only its type name)."""
    if isinstance(value, PSSecureString):
        return "System.Security.SecureString"
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return "System.Byte[]"
    if isinstance(value, list | tuple):
        return "System.String[]" if value and all(isinstance(v, str) for v in value) else "System.Object[]"
    return str(value)


def invocation_info(
    command_name: str,
    bound: Mapping[str, Any],
    *,
    pipeline_position: int,
    pipeline_length: int,
    expecting_input: bool,
) -> InvocationInfo:
    """InvocationInfo of a cmdlet invoked by name over remoting (CommandOrigin Runspace, no script text),
    as Windows puts it in an ErrorRecord."""
    parameters = PSDict({name: _bound_value(value) for name, value in bound.items()})
    parameters.PSObject.type_names = [
        f"System.Collections.Generic.Dictionary`2[{_GENERIC_ARGS},{_OBJECT_ARG}]",
        "System.Object",
    ]
    unbound = PSList()
    unbound.PSObject.type_names = [f"System.Collections.Generic.List`1[{_OBJECT_ARG}]", "System.Object"]
    info = InvocationInfo(
        MyCommand=command_name,
        BoundParameters=parameters,
        UnboundArguments=unbound,
        ScriptLineNumber=0,
        OffsetInLine=0,
        HistoryId=1,
        ScriptName="",
        Line="",
        PositionMessage="",
        PSScriptRoot="",
        PSCommandPath=None,
        InvocationName=command_name,
        PipelineLength=pipeline_length,
        PipelinePosition=pipeline_position,
        ExpectingInput=expecting_input,
        CommandOrigin=CommandOrigin.Runspace,
        DisplayScriptPosition=None,
    )
    info.PSObject.to_string = "System.Management.Automation.InvocationInfo"
    return info
