"""The Registry provider (HKLM:\\ only) and the item-property cmdlets.

Gotchas kept from Windows: `New-Item -Force` on an existing key deletes and recreates
it empty; without -Force an existing key is a non-terminating error; New-ItemProperty -Force overwrites a
value; Set-ItemProperty needs the key to exist.
"""

from __future__ import annotations

import re
from typing import Any

from psrpcore.types import ErrorCategory, PSByteArray

from hvsim.cmdlets.base import (
    FORCE,
    OBJECT,
    PASSTHRU,
    STRING,
    STRINGS,
    BoundArguments,
    CmdletContext,
    ConversionError,
    Param,
    array_of,
    cmdlet,
)
from hvsim.cmdlets.files import (
    LITERAL_PATH,
    ItemPath,
    item_properties,
    not_found,
    path_arguments,
    register_provider,
    resolve_existing,
)
from hvsim.cmdlets.objects import custom_object, define_enum, dotnet_object, i32, i64, string_array
from hvsim.windows import VALUE_KINDS, Host, RegistryKey, RegistryValue, split_key_path

_CORE = "Microsoft.PowerShell.Commands"
_REGISTRY_KEY_TN = ("Microsoft.Win32.RegistryKey", "System.MarshalByRefObject")
RegistryView = define_enum(
    "Microsoft.Win32.RegistryView", {"Default": 0, "Registry64": 256, "Registry32": 512}
)


class RegistryProvider:
    name = "Microsoft.PowerShell.Core\\Registry"
    drive = "HKLM"

    def normalize(self, inner: str) -> str:
        return "\\".join(split_key_path(inner))

    def exists(self, host: Host, inner: str) -> bool:
        return host.registry.key(inner) is not None

    def is_container(self, host: Host, inner: str) -> bool:
        return True

    def get_item(self, ctx: CmdletContext, inner: str) -> Any:
        key = ctx.host.registry.key(inner)
        assert key is not None  # callers check exists() first
        return key_object(canonical_key(ctx.host, inner), key)

    def children(self, ctx: CmdletContext, inner: str) -> list[tuple[str, Any]]:
        key = ctx.host.registry.key(inner)
        base = canonical_key(ctx.host, inner)
        return [
            (
                f"{base}\\{sub.name}" if base else sub.name,
                key_object(f"{base}\\{sub.name}" if base else sub.name, sub),
            )
            for sub in sorted((key.subkeys.values() if key else []), key=lambda k: k.name.lower())
        ]

    def remove(self, ctx: CmdletContext, inner: str) -> None:
        ctx.host.registry.delete_key(inner)

    def new_item(self, ctx: CmdletContext, inner: str, item_type: str | None, value: Any, force: bool) -> Any:
        registry = ctx.host.registry
        shown = f"HKEY_LOCAL_MACHINE\\{inner}"
        if registry.key(inner) is not None and not force:
            ctx.write_error(
                ctx.error(
                    "System.IO.IOException",
                    "A key at this path already exists.",
                    "System.IO.IOException",
                    ErrorCategory.ResourceExists,
                    shown,
                )
            )
            return None
        parent = "\\".join(split_key_path(inner)[:-1])
        if registry.key(parent) is None and not force:
            ctx.write_error(not_found(ctx, f"HKLM:\\{parent}"))
            return None
        # The real gotcha: -Force on an existing key deletes it and creates it again, empty.
        key = registry.create_key(inner, replace=force)
        if value is not None:
            registry.set_value(inner, "", "String", str(value))
        return key_object(canonical_key(ctx.host, inner), key)


def canonical_key(host: Host, inner: str) -> str:
    """The key path with the case it was created with."""
    node: RegistryKey | None = host.registry.root
    names = []
    for part in split_key_path(inner):
        node = node.child(part) if node else None
        names.append(node.name if node else part)
    return "\\".join(names)


REGISTRY = RegistryProvider()
register_provider(REGISTRY, "registry", "hkey_local_machine")


def key_object(inner: str, key: RegistryKey) -> Any:
    """Microsoft.Win32.RegistryKey as Get-Item/New-Item return it (Property is the list of value names)."""
    name = f"HKEY_LOCAL_MACHINE\\{inner}" if inner else "HKEY_LOCAL_MACHINE"
    adapted = {
        "Name": name,
        "SubKeyCount": i32(len(key.subkeys)),
        "ValueCount": i32(len(key.values)),
        "View": RegistryView["Default"],
        "Handle": "Microsoft.Win32.SafeHandles.SafeRegistryHandle",
    }
    extended = {
        **item_properties(REGISTRY, inner, True),
        "Property": string_array(v.name for v in key.values.values()),
    }
    return dotnet_object(_REGISTRY_KEY_TN, adapted, extended, to_string=name)


def value_for_output(value: RegistryValue) -> Any:
    """A registry value as Get-ItemProperty returns it: DWord Int32 (two's complement), QWord Int64, expanded
    ExpandString, String[] for MultiString, byte[] for Binary."""
    if value.kind == "DWord":
        number = int(value.data) & 0xFFFFFFFF
        return i32(number - (1 << 32) if number >= 1 << 31 else number)
    if value.kind == "QWord":
        number = int(value.data) & 0xFFFFFFFFFFFFFFFF
        return i64(number - (1 << 64) if number >= 1 << 63 else number)
    if value.kind == "ExpandString":
        return _expand(str(value.data))
    if value.kind == "MultiString":
        return string_array(value.data)
    if value.kind == "Binary":
        return PSByteArray(bytes(value.data))
    return str(value.data)


def _expand(text: str) -> str:
    variables = {
        "systemroot": "C:\\Windows",
        "windir": "C:\\Windows",
        "programdata": "C:\\ProgramData",
        "systemdrive": "C:",
    }
    return re.sub(r"%([^%]+)%", lambda m: variables.get(m.group(1).lower(), m.group(0)), text)


def property_object(key_inner: str, values: list[RegistryValue]) -> Any:
    """The PSCustomObject Get-/New-/Set-ItemProperty -PassThru write: the values plus the PS* notes."""
    props: dict[str, Any] = {v.name or "(default)": value_for_output(v) for v in values}
    notes = item_properties(REGISTRY, key_inner, True)
    notes.pop("PSIsContainer")
    return custom_object({**props, **notes})


# --- value conversion ---------------------------------------------------------------------------------


def _to_int(value: Any, bits: int) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            raise ConversionError(
                f'Cannot convert value "{value}" to type "System.{"Int32" if bits == 32 else "Int64"}". '
                'Error: "Input string was not in a correct format."'
            ) from None
    limit = 1 << bits
    if not -(limit >> 1) <= number < limit:
        raise ConversionError(
            f"The value {number} is out of range for a {'DWord' if bits == 32 else 'QWord'}."
        )
    return number & (limit - 1)


def coerce_value(kind: str, value: Any) -> Any:
    """The data stored for `value` written as `kind` (what RegistryKey.SetValue converts)."""
    if kind == "DWord":
        return _to_int(value, 32)
    if kind == "QWord":
        return _to_int(value, 64)
    if kind == "MultiString":
        items = value if isinstance(value, list | tuple) else [value]
        return [str(v) for v in items]
    if kind == "Binary":
        if isinstance(value, bytes):
            return bytes(value)
        items = value if isinstance(value, list | tuple) else [value]
        return bytes(_to_int(v, 8) & 0xFF for v in items)
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def infer_kind(value: Any) -> str:
    """The kind Set-ItemProperty picks for a new value from its .NET type."""
    if isinstance(value, bool):
        return "String"
    if isinstance(value, int):
        return "DWord" if -(1 << 31) <= value < (1 << 31) else "QWord"
    if isinstance(value, bytes):
        return "Binary"
    if isinstance(value, list | tuple):
        return "MultiString"
    return "String"


# --- cmdlets -----------------------------------------------------------------------------------------

_PATH = Param("Path", STRINGS, mandatory=True, position=0, sets=("Path",), from_pipeline_by_property=True)
_KIND_NAMES = (*VALUE_KINDS, "Unknown", "None")


def _key_paths(ctx: CmdletContext, args: BoundArguments) -> list[ItemPath]:
    """Resolve -Path/-LiteralPath to existing registry keys, writing PathNotFound for the others."""
    found = []
    for item in (i for path, literal in path_arguments(args) for i in resolve_existing(ctx, path, literal)):
        if item.provider is not REGISTRY:
            ctx.write_error(
                ctx.error(
                    "System.Management.Automation.PSArgumentException",
                    "Cannot use interface. The IPropertyCmdletProvider interface is not supported by this "
                    "provider.",
                    "NotSupported",
                    ErrorCategory.NotImplemented,
                    item.given,
                )
            )
            continue
        found.append(item)
    return found


def _missing_property(ctx: CmdletContext, name: str, inner: str) -> Any:
    return ctx.error(
        "System.Management.Automation.PSArgumentException",
        f"Property {name} does not exist at path HKEY_LOCAL_MACHINE\\{inner}.",
        "System.Management.Automation.PSArgumentException",
        ErrorCategory.InvalidArgument,
        name,
    )


def _kind_of(raw: str | None) -> str | None:
    if raw is None:
        return None
    kind = next((k for k in _KIND_NAMES if k.lower() == raw.lower()), "String")
    return "String" if kind in ("Unknown", "None") else kind


@cmdlet(
    "Get-ItemProperty",
    f"{_CORE}.GetItemPropertyCommand",
    [_PATH, LITERAL_PATH, Param("Name", STRINGS, aliases=("PSProperty",), position=1)],
    default_set="Path",
)
def get_item_property(ctx: CmdletContext, args: BoundArguments) -> None:
    for item in _key_paths(ctx, args):
        key = ctx.host.registry.key(item.inner)
        assert key is not None
        if args["Name"] is None:
            ctx.write_output(property_object(canonical_key(ctx.host, item.inner), list(key.values.values())))
            continue
        values = []
        for name in args["Name"]:
            value = key.values.get(name.lower())
            if value is None:
                ctx.write_error(_missing_property(ctx, name, canonical_key(ctx.host, item.inner)))
            else:
                values.append(value)
        if values:
            ctx.write_output(property_object(canonical_key(ctx.host, item.inner), values))


@cmdlet(
    "New-ItemProperty",
    f"{_CORE}.NewItemPropertyCommand",
    [
        _PATH,
        LITERAL_PATH,
        Param("Name", STRING, aliases=("PSProperty",), mandatory=True, from_pipeline_by_property=True),
        Param("PropertyType", STRING, aliases=("Type",), choices=_KIND_NAMES, from_pipeline_by_property=True),
        Param("Value", OBJECT, from_pipeline_by_property=True),
        FORCE,
    ],
    default_set="Path",
    supports_should_process=True,
)
def new_item_property(ctx: CmdletContext, args: BoundArguments) -> None:
    name = args["Name"]
    kind = _kind_of(args["PropertyType"]) or "String"
    for item in _key_paths(ctx, args):
        registry = ctx.host.registry
        inner = canonical_key(ctx.host, item.inner)
        if registry.get_value(inner, name) is not None and not args["Force"]:
            ctx.write_error(
                ctx.error(
                    "System.IO.IOException",
                    "The property already exists.",
                    "System.IO.IOException",
                    ErrorCategory.ResourceExists,
                    f"HKEY_LOCAL_MACHINE\\{inner}",
                )
            )
            continue
        if not ctx.should_process(f"Item: HKEY_LOCAL_MACHINE\\{inner} Property: {name}", "New Property"):
            continue
        data = _coerce_or_fail(ctx, kind, args["Value"])
        value = registry.set_value(inner, name, kind, data)
        ctx.write_output(property_object(inner, [value]))


def _coerce_or_fail(ctx: CmdletContext, kind: str, raw: Any) -> Any:
    try:
        return coerce_value(kind, raw)
    except ConversionError as exc:
        ctx.throw(
            "System.ArgumentException",
            exc.detail,
            "System.ArgumentException",
            ErrorCategory.InvalidArgument,
            raw,
        )


@cmdlet(
    "Set-ItemProperty",
    f"{_CORE}.SetItemPropertyCommand",
    [
        Param(
            "Path",
            STRINGS,
            mandatory=True,
            position=0,
            sets=("propertyValuePathSet", "propertyPSObjectPathSet"),
            from_pipeline_by_property=True,
        ),
        Param(
            "LiteralPath",
            STRINGS,
            aliases=("PSPath",),
            mandatory=True,
            sets=("propertyValueLiteralPathSet", "propertyPSObjectLiteralPathSet"),
            from_pipeline_by_property=True,
        ),
        Param(
            "Name",
            STRING,
            aliases=("PSProperty",),
            mandatory=True,
            position=1,
            sets=("propertyValuePathSet", "propertyValueLiteralPathSet"),
            from_pipeline_by_property=True,
        ),
        Param(
            "Value",
            OBJECT,
            mandatory=True,
            position=2,
            sets=("propertyValuePathSet", "propertyValueLiteralPathSet"),
            from_pipeline_by_property=True,
        ),
        Param(
            "InputObject",
            OBJECT,
            mandatory=True,
            from_pipeline=True,
            sets=("propertyPSObjectPathSet", "propertyPSObjectLiteralPathSet"),
        ),
        Param("Type", STRING, choices=_KIND_NAMES),
        FORCE,
        PASSTHRU,
    ],
    default_set="propertyValuePathSet",
    supports_should_process=True,
)
def set_item_property(ctx: CmdletContext, args: BoundArguments) -> None:
    name, raw = args["Name"], args["Value"]
    for item in _key_paths(ctx, args):
        registry = ctx.host.registry
        inner = canonical_key(ctx.host, item.inner)
        existing = registry.get_value(inner, name)
        kind = _kind_of(args["Type"]) or (existing.kind if existing else infer_kind(raw))
        if not ctx.should_process(f"Item: HKEY_LOCAL_MACHINE\\{inner} Property: {name}", "Set Property"):
            continue
        value = registry.set_value(inner, name, kind, _coerce_or_fail(ctx, kind, raw))
        if args["PassThru"]:
            ctx.write_output(property_object(inner, [value]))


@cmdlet(
    "Remove-ItemProperty",
    f"{_CORE}.RemoveItemPropertyCommand",
    [
        _PATH,
        LITERAL_PATH,
        Param("Name", array_of(STRING), aliases=("PSProperty",), mandatory=True, position=1),
        FORCE,
    ],
    default_set="Path",
    supports_should_process=True,
)
def remove_item_property(ctx: CmdletContext, args: BoundArguments) -> None:
    for item in _key_paths(ctx, args):
        key = ctx.host.registry.key(item.inner)
        assert key is not None
        inner = canonical_key(ctx.host, item.inner)
        for name in args["Name"]:
            if name.lower() not in key.values:
                ctx.write_error(_missing_property(ctx, name, inner))
                continue
            if ctx.should_process(f"Item: HKEY_LOCAL_MACHINE\\{inner} Property: {name}", "Remove Property"):
                del key.values[name.lower()]
