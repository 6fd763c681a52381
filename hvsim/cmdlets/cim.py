"""Get-CimInstance for the host facts: Win32_ComputerSystem and Win32_OperatingSystem in root/cimv2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psrpcore.types import ErrorCategory, PSUInt, PSUInt16, PSUInt64

from hvsim.cmdlets.base import STRING, BoundArguments, CmdletContext, Param, cmdlet
from hvsim.cmdlets.errors import register_exception
from hvsim.cmdlets.objects import cim_type_chain, datetime_value, dotnet_object
from hvsim.windows import Host

CIM_EXCEPTION = "Microsoft.Management.Infrastructure.CimException"
register_exception(CIM_EXCEPTION, "System.SystemException")
NAMESPACE = "root/cimv2"


def computer_system(ctx: CmdletContext, host: Host) -> Any:
    facts = host.facts
    props = {
        "Caption": host.computer_name,
        "Description": "AT/AT COMPATIBLE",
        "InstallDate": None,
        "Name": host.computer_name,
        "Status": "OK",
        "CreationClassName": "Win32_ComputerSystem",
        "NameFormat": None,
        "PrimaryOwnerContact": None,
        "PrimaryOwnerName": "Windows User",
        "Roles": None,
        "AdminPasswordStatus": PSUInt16(3),
        "AutomaticManagedPagefile": True,
        "AutomaticResetBootOption": True,
        "AutomaticResetCapability": True,
        "BootupState": "Normal boot",
        "ChassisBootupState": PSUInt16(3),
        "CurrentTimeZone": 0,
        "DaylightInEffect": None,
        "DNSHostName": host.computer_name.lower(),
        "Domain": host.config.domain,
        "DomainRole": PSUInt16(3),  # member server
        "HypervisorPresent": True,
        "Manufacturer": "Microsoft Corporation",
        "Model": "Virtual Machine",
        "NetworkServerModeEnabled": True,
        "NumberOfLogicalProcessors": PSUInt(facts.logical_processors),
        "NumberOfProcessors": PSUInt(facts.processors),
        "PartOfDomain": True,
        "PCSystemType": PSUInt16(1),
        "SystemType": "x64-based PC",
        "ThermalState": PSUInt16(3),
        "TotalPhysicalMemory": PSUInt64(facts.total_memory_bytes),
        "UserName": None,
        "Workgroup": None,
    }
    return _instance(
        "Win32_ComputerSystem",
        (
            "CIM_UnitaryComputerSystem",
            "CIM_ComputerSystem",
            "CIM_System",
            "CIM_LogicalElement",
            "CIM_ManagedSystemElement",
        ),
        props,
    )


def operating_system(ctx: CmdletContext, host: Host) -> Any:
    facts = host.facts
    total_kb = facts.total_memory_bytes // 1024
    props = {
        "Caption": facts.caption,
        "Description": "",
        "InstallDate": datetime_value(facts.install_date),
        "Name": f"{facts.caption}|C:\\Windows|\\Device\\Harddisk0\\Partition2",
        "Status": "OK",
        "CreationClassName": "Win32_OperatingSystem",
        "CSCreationClassName": "Win32_ComputerSystem",
        "CSName": host.computer_name,
        "CurrentTimeZone": 0,
        "Distributed": False,
        "FreePhysicalMemory": PSUInt64(total_kb * 3 // 4),
        "FreeVirtualMemory": PSUInt64(total_kb),
        "LastBootUpTime": datetime_value(facts.last_boot),
        "LocalDateTime": datetime_value(ctx.lab.now()),
        "MaxNumberOfProcesses": PSUInt(0xFFFFFFFF),
        "NumberOfProcesses": PSUInt(120),
        "NumberOfUsers": PSUInt(1),
        "OSType": PSUInt16(18),  # WINNT
        "TotalVisibleMemorySize": PSUInt64(total_kb),
        "Version": facts.version,
        "BootDevice": "\\Device\\HarddiskVolume1",
        "BuildNumber": facts.build_number,
        "BuildType": "Multiprocessor Free",
        "CodeSet": "1252",
        "CountryCode": "1",
        "Locale": "0409",
        "Manufacturer": "Microsoft Corporation",
        "OperatingSystemSKU": PSUInt(8),  # Datacenter
        "Organization": "",
        "OSArchitecture": "64-bit",
        "OSLanguage": PSUInt(1033),
        "ProductType": PSUInt(3),  # server
        "RegisteredUser": "Windows User",
        "SerialNumber": facts.serial_number,
        "ServicePackMajorVersion": PSUInt16(0),
        "ServicePackMinorVersion": PSUInt16(0),
        "SystemDevice": "\\Device\\HarddiskVolume2",
        "SystemDirectory": "C:\\Windows\\system32",
        "SystemDrive": "C:",
        "WindowsDirectory": "C:\\Windows",
    }
    return _instance(
        "Win32_OperatingSystem",
        ("CIM_OperatingSystem", "CIM_LogicalElement", "CIM_ManagedSystemElement"),
        props,
    )


def _instance(cls: str, bases: tuple[str, ...], props: dict[str, Any]) -> Any:
    return dotnet_object(
        cim_type_chain(NAMESPACE, cls, *bases), props, {"PSComputerName": None}, to_string=cls
    )


_CLASSES: dict[str, Callable[[CmdletContext, Host], Any]] = {
    "win32_computersystem": computer_system,
    "win32_operatingsystem": operating_system,
}


@cmdlet(
    "Get-CimInstance",
    "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand",
    [
        Param(
            "ClassName",
            STRING,
            aliases=("Class",),
            mandatory=True,
            position=0,
            sets=("ClassNameComputerSet",),
        ),
        Param("Namespace", STRING, default=NAMESPACE),
    ],
    default_set="ClassNameComputerSet",
)
def get_cim_instance(ctx: CmdletContext, args: BoundArguments) -> None:
    namespace = str(args["Namespace"]).replace("\\", "/").lower()
    cls = args["ClassName"]
    build = _CLASSES.get(cls.lower()) if namespace == NAMESPACE else None
    if build is None:
        ctx.write_error(
            ctx.error(
                CIM_EXCEPTION,
                "Invalid class " if namespace == NAMESPACE else "Invalid namespace ",
                "HRESULT 0x80041010" if namespace == NAMESPACE else "HRESULT 0x8004100e",
                ErrorCategory.MetadataError if namespace == NAMESPACE else ErrorCategory.ObjectNotFound,
                f"{namespace.replace('/', chr(92))}:{cls}",
            )
        )
        return
    ctx.write_output(build(ctx, ctx.host))
