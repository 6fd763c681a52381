"""NetSecurity firewall cmdlets (CDXML over MSFT_NetFirewallRule): Get-, New-, Remove-, Enable- and
Disable-NetFirewallRule.

CDXML cmdlets report errors with the cmdlet name as the FullyQualifiedErrorId suffix, and their objects are
CIM instances: the raw CIM properties adapted, the module's type data adding enum-typed script properties
(Enabled is the enum whose values are named 'True' and 'False') and PSComputerName extended.
"""

from __future__ import annotations

import fnmatch
import uuid
from typing import Any

from psrpcore.types import ErrorCategory, PSUInt16

from hvsim.cmdlets.base import (
    PASSTHRU,
    STRING,
    STRINGS,
    SWITCH,
    BoundArguments,
    CmdletContext,
    Param,
    cmdlet,
    enum_type,
)
from hvsim.cmdlets.cim import CIM_EXCEPTION
from hvsim.cmdlets.errors import register_exception
from hvsim.cmdlets.objects import cim_type_chain, define_enum, dotnet_object, string_array
from hvsim.windows import FirewallRule

_GENERATED = "Microsoft.PowerShell.Cmdletization.GeneratedTypes.NetSecurity"
# MSFT_NetFirewallRule derives from CIM_PolicyRule (its CIM properties below follow that hierarchy's order).
FIREWALL_RULE_TN = tuple(
    cim_type_chain(
        "root/standardcimv2",
        "MSFT_NetFirewallRule",
        "CIM_PolicyRule",
        "CIM_PolicySet",
        "CIM_Policy",
        "CIM_ManagedElement",
    )
)
CIM_JOB_EXCEPTION = "Microsoft.PowerShell.Cmdletization.Cim.CimJobException"
register_exception(CIM_JOB_EXCEPTION, "System.SystemException")

Enabled = define_enum(f"{_GENERATED}.Enabled", {"True": 1, "False": 2})
Direction = define_enum(f"{_GENERATED}.Direction", {"Inbound": 1, "Outbound": 2})
Action = define_enum(f"{_GENERATED}.Action", {"NotConfigured": 0, "Allow": 2, "Block": 4})
EdgeTraversal = define_enum(
    f"{_GENERATED}.EdgeTraversal", {"Block": 0, "Allow": 1, "DeferToUser": 2, "DeferToApp": 3}
)
PrimaryStatus = define_enum(f"{_GENERATED}.PrimaryStatus", {"Unknown": 0, "OK": 1, "Inactive": 2, "Error": 3})
PolicyStoreType = define_enum(
    f"{_GENERATED}.PolicyStoreType", {"None": 0, "Local": 1, "GroupPolicy": 2, "Dynamic": 3, "Generated": 4}
)
_PROFILE_BITS = {"Any": 0, "Domain": 1, "Private": 2, "Public": 4}
# Win32 errors the firewall store reports: a Name already taken; ports on a protocol that has none.
_ERROR_ALREADY_EXISTS = 183
_ERROR_INVALID_PARAMETER = 87


def _profile_value(profile: str) -> int:
    return sum(_PROFILE_BITS.get(p.strip(), 0) for p in profile.split(","))


def rule_object(rule: FirewallRule) -> Any:
    """MSFT_NetFirewallRule as Get-NetFirewallRule writes it."""
    adapted = {
        "Caption": None,
        "Description": rule.description,
        "ElementName": rule.display_name,
        "InstanceID": rule.name,
        "CommonName": None,
        "PolicyKeywords": None,
        "Enabled": PSUInt16(Enabled["True" if rule.enabled else "False"].value),
        "PolicyDecisionStrategy": PSUInt16(2),
        "PolicyRoles": None,
        "ConditionListType": PSUInt16(3),
        "CreationClassName": f"MSFT|FW|FirewallRule|{rule.name}",
        "ExecutionStrategy": PSUInt16(2),
        "Mandatory": None,
        "PolicyRuleName": "",
        "Priority": None,
        "RuleUsage": "",
        "SequencedActions": PSUInt16(3),
        "SystemCreationClassName": "",
        "SystemName": "",
        "Action": PSUInt16(Action[rule.action].value),
        "Direction": PSUInt16(Direction[rule.direction].value),
        "DisplayGroup": rule.display_group,
        "DisplayName": rule.display_name,
        "EdgeTraversalPolicy": PSUInt16(0),
        "EnforcementStatus": string_array(["NotApplicable"]),
        "Group": rule.group,
        "LocalOnlyMapping": False,
        "LooseSourceMapping": False,
        "Owner": None,
        "Platforms": string_array([]),
        "PolicyStoreSource": "PersistentStore",
        "PolicyStoreSourceType": PSUInt16(1),
        "PrimaryStatus": PSUInt16(1),
        "Profiles": PSUInt16(_profile_value(rule.profile)),
        "RuleGroup": rule.group,
        "Status": "The rule was parsed successfully from the store. (65536)",
        "StatusCode": 65536,
    }
    extended = {
        "Name": rule.name,
        "ID": rule.name,
        "Platform": string_array([]),
        "Enabled": Enabled["True" if rule.enabled else "False"],
        "Profile": rule.profile,
        "Direction": Direction[rule.direction],
        "Action": Action[rule.action],
        "EdgeTraversalPolicy": EdgeTraversal["Block"],
        "PrimaryStatus": PrimaryStatus["OK"],
        "EnforcementStatus": "NotApplicable",
        "PolicyStoreSourceType": PolicyStoreType["Local"],
        # A CIM session on the local machine (what a remote runspace uses) leaves it empty.
        "PSComputerName": None,
    }
    return dotnet_object(FIREWALL_RULE_TN, adapted, extended, to_string=rule.name)


def _select(ctx: CmdletContext, args: BoundArguments) -> list[FirewallRule]:
    """The rules -Name / -DisplayName select (wildcards allowed); each plain name that matches nothing gets
    the CDXML not-found error, as Windows writes it."""
    rules = ctx.host.firewall.rules
    if "Name" in args:
        field, wanted = "Name", list(args["Name"])
    elif "DisplayName" in args:
        field, wanted = "DisplayName", list(args["DisplayName"])
    else:
        return list(rules)
    attribute = "name" if field == "Name" else "display_name"
    selected: list[FirewallRule] = []
    for pattern in wanted:
        matches = [r for r in rules if fnmatch.fnmatchcase(getattr(r, attribute).lower(), pattern.lower())]
        if not matches and not any(c in pattern for c in "*?["):
            ctx.write_error(
                ctx.error(
                    CIM_JOB_EXCEPTION,
                    f"No MSFT_NetFirewallRule objects found with property '{field}' equal to '{pattern}'.  "
                    "Verify the value of the property and retry.",
                    f"CmdletizationQuery_NotFound_{field}",
                    ErrorCategory.ObjectNotFound,
                    pattern,
                )
            )
        selected.extend(r for r in matches if r not in selected)
    return selected


_SELECTORS = [
    Param(
        "Name",
        STRINGS,
        aliases=("ID",),
        mandatory=True,
        position=0,
        sets=("ByName",),
        from_pipeline_by_property=True,
    ),
    Param("DisplayName", STRINGS, mandatory=True, sets=("ByDisplayName",), from_pipeline_by_property=True),
]


@cmdlet(
    "Get-NetFirewallRule",
    "Get-NetFirewallRule",
    [*_SELECTORS, Param("All", SWITCH, sets=("GetAll",))],
    default_set="GetAll",
)
def get_net_firewall_rule(ctx: CmdletContext, args: BoundArguments) -> None:
    for rule in _select(ctx, args):
        ctx.write_output(rule_object(rule))


def _set_enabled(ctx: CmdletContext, args: BoundArguments, enabled: bool) -> None:
    for rule in _select(ctx, args):
        if not ctx.should_process(rule.name, "Enable" if enabled else "Disable"):
            continue
        rule.enabled = enabled
        if args["PassThru"]:
            ctx.write_output(rule_object(rule))


@cmdlet(
    "Enable-NetFirewallRule",
    "Enable-NetFirewallRule",
    [*_SELECTORS, PASSTHRU],
    default_set="ByName",
    supports_should_process=True,
)
def enable_net_firewall_rule(ctx: CmdletContext, args: BoundArguments) -> None:
    _set_enabled(ctx, args, True)


@cmdlet(
    "Disable-NetFirewallRule",
    "Disable-NetFirewallRule",
    [*_SELECTORS, PASSTHRU],
    default_set="ByName",
    supports_should_process=True,
)
def disable_net_firewall_rule(ctx: CmdletContext, args: BoundArguments) -> None:
    _set_enabled(ctx, args, False)


@cmdlet(
    "New-NetFirewallRule",
    "New-NetFirewallRule",
    [
        Param("Name", STRING, aliases=("ID",), not_null_or_empty=True),
        Param("DisplayName", STRING, mandatory=True, not_null_or_empty=True),
        Param("Description", STRING),
        Param("Group", STRING),
        Param("Enabled", enum_type(Enabled)),
        Param("Profile", STRING, choices=tuple(_PROFILE_BITS)),
        Param("Direction", enum_type(Direction)),
        Param("Action", enum_type(Action)),
        Param("Protocol", STRING, choices=("TCP", "UDP", "Any")),
        Param("LocalPort", STRINGS),
    ],
    supports_should_process=True,
)
def new_net_firewall_rule(ctx: CmdletContext, args: BoundArguments) -> None:
    # Without -Name the store names the rule with a fresh GUID, as Windows does.
    name = args["Name"] if "Name" in args else "{" + str(uuid.uuid4()) + "}"
    firewall = ctx.host.firewall
    if firewall.rule(name) is not None:
        ctx.write_error(
            ctx.error(
                CIM_EXCEPTION,
                "Cannot create a file when that file already exists.",
                f"Windows System Error {_ERROR_ALREADY_EXISTS}",
                ErrorCategory.ResourceExists,
                "MSFT_NetFirewallRule",
                hresult=-2147024713,
            )
        )
        return
    protocol = args["Protocol"].upper() if "Protocol" in args else "Any"
    if "LocalPort" in args and protocol == "Any":
        ctx.write_error(
            ctx.error(
                CIM_EXCEPTION,
                "The parameter is incorrect.",
                f"Windows System Error {_ERROR_INVALID_PARAMETER}",
                ErrorCategory.InvalidArgument,
                "MSFT_NetFirewallRule",
                hresult=-2147024809,
            )
        )
        return
    if not ctx.should_process(name, "Create"):
        return
    group = args.get("Group") or ""
    rule = FirewallRule(
        name=name,
        display_name=args["DisplayName"],
        group=group,
        display_group=group,
        description=args.get("Description") or "",
        enabled=args["Enabled"].name == "True" if "Enabled" in args else True,
        direction=args["Direction"].name if "Direction" in args else "Inbound",
        action=args["Action"].name if "Action" in args else "Allow",
        profile=args.get("Profile") or "Any",
        protocol=protocol,
        local_port=", ".join(args["LocalPort"]) if "LocalPort" in args else "Any",
    )
    firewall.rules.append(rule)
    ctx.write_output(rule_object(rule))


@cmdlet(
    "Remove-NetFirewallRule",
    "Remove-NetFirewallRule",
    # Windows also accepts no selector at all and then deletes every rule; hvsim requires one.
    _SELECTORS,
    default_set="ByName",
    supports_should_process=True,
)
def remove_net_firewall_rule(ctx: CmdletContext, args: BoundArguments) -> None:
    for rule in _select(ctx, args):
        if ctx.should_process(rule.name, "Delete"):
            ctx.host.firewall.rules.remove(rule)
