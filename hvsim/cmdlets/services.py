"""Service cmdlets: Get-Service and Restart-Service, for the services a Hyper-V host's clients look at (the
Virtual Machine Management service `vmms`, and `WinRM`). Restarting vmms moves its start time, as a real
restart does; WinRM sessions are a different service and stay open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psrpcore.types import ErrorCategory, ErrorRecord

from hvsim.cmdlets.base import FORCE, PASSTHRU, STRINGS, BoundArguments, CmdletContext, Param, cmdlet
from hvsim.cmdlets.errors import register_exception
from hvsim.cmdlets.hyperv_common import wildcard_match
from hvsim.cmdlets.objects import define_enum, dotnet_object, i32

COMMANDS = "Microsoft.PowerShell.Commands"
SERVICE_EXCEPTION = f"{COMMANDS}.ServiceCommandException"
register_exception(SERVICE_EXCEPTION, "System.SystemException")
SERVICE_TN = (
    "System.ServiceProcess.ServiceController",
    "System.ComponentModel.Component",
    "System.MarshalByRefObject",
)
ServiceControllerStatus = define_enum(
    "System.ServiceProcess.ServiceControllerStatus",
    {"Stopped": 1, "StartPending": 2, "StopPending": 3, "Running": 4},
)
ServiceStartMode = define_enum(
    "System.ServiceProcess.ServiceStartMode", {"Boot": 0, "System": 1, "Automatic": 2, "Manual": 3}
)


@dataclass(frozen=True)
class Service:
    name: str
    display_name: str


SERVICES = (
    Service("vmms", "Hyper-V Virtual Machine Management"),
    Service("WinRM", "Windows Remote Management (WS-Management)"),
)


def service_object(service: Service) -> Any:
    props = {
        "Name": service.name,
        "ServiceName": service.name,
        "DisplayName": service.display_name,
        "Status": ServiceControllerStatus["Running"],
        "StartType": ServiceStartMode["Automatic"],
        "CanStop": True,
        "ServiceType": i32(16),  # Win32OwnProcess
        "MachineName": ".",
    }
    return dotnet_object(SERVICE_TN, props, to_string="System.ServiceProcess.ServiceController")


def _select(ctx: CmdletContext, names: list[str]) -> list[Service]:
    """Services by name or display name (wildcards, ignoring case); a plain name matching nothing writes
    the NoServiceFoundForGivenName error (non-terminating)."""
    found: list[Service] = []
    for name in names:
        matches = [
            s for s in SERVICES if wildcard_match(name, s.name) or wildcard_match(name, s.display_name)
        ]
        if not matches and not any(c in name for c in "*?["):
            ctx.write_error(_not_found(ctx, name))
        found += [s for s in matches if s not in found]
    return found


def _not_found(ctx: CmdletContext, name: str) -> ErrorRecord:
    return ctx.error(
        SERVICE_EXCEPTION,
        f"Cannot find any service with service name '{name}'.",
        "NoServiceFoundForGivenName",
        ErrorCategory.ObjectNotFound,
        name,
    )


@cmdlet(
    "Get-Service",
    f"{COMMANDS}.GetServiceCommand",
    [Param("Name", STRINGS, aliases=("ServiceName",), position=0, from_pipeline=True)],
)
def get_service(ctx: CmdletContext, args: BoundArguments) -> None:
    for service in _select(ctx, args.get("Name") or ["*"]):
        ctx.write_output(service_object(service))


@cmdlet(
    "Restart-Service",
    f"{COMMANDS}.RestartServiceCommand",
    [Param("Name", STRINGS, aliases=("ServiceName",), position=0, mandatory=True), FORCE, PASSTHRU],
    supports_should_process=True,
)
def restart_service(ctx: CmdletContext, args: BoundArguments) -> None:
    for service in _select(ctx, args["Name"]):
        if not ctx.should_process(f"{service.display_name} ({service.name})", "Restart-Service"):
            continue
        if service.name == "vmms":
            ctx.lab.restart_vmms(ctx.host.fqdn)
        if args.get("PassThru"):
            ctx.write_output(service_object(service))
