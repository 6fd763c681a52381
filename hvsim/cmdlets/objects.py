"""Builders for output objects with Windows' shape: real <TN> chains, adapted (<Props>) vs extended (<MS>)
properties, enums as real enum objects (<I32> + <ToString>), and explicitly sized integers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from psrpcore.types import (
    PSCustomObject,
    PSDateTime,
    PSDuration,
    PSEnumBase,
    PSGuid,
    PSInt,
    PSInt64,
    PSList,
    PSNoteProperty,
    PSObject,
    PSType,
    PSUInt64,
    add_note_property,
)

from hvsim.wsman.psrp_compat import clixml_text

PS_CUSTOM_OBJECT_TN = ("System.Management.Automation.PSCustomObject", "System.Object")
CIM_INSTANCE = "Microsoft.Management.Infrastructure.CimInstance"


def cim_type_chain(namespace: str, *classes: str) -> list[str]:
    """The TN chain of a CIM instance: each class of its hierarchy, most derived first, namespace-qualified
    and then bare, ending with CimInstance itself."""
    chain = []
    for cls in classes:
        chain += [f"{CIM_INSTANCE}#{namespace}/{cls}", f"{CIM_INSTANCE}#{cls}"]
    return [*chain, CIM_INSTANCE]


def dotnet_object(
    type_names: Iterable[str],
    adapted: Mapping[str, Any],
    extended: Mapping[str, Any] | None = None,
    to_string: str | None = None,
) -> PSObject:
    """A real .NET object as PowerShell serialises it: `adapted` are the type's own properties (<Props>),
    `extended` the ones PowerShell's type system adds (<MS>: PSPath, note properties of type data, ...).

    `type_names` is the full chain, most derived first; System.Object is appended when missing."""
    obj = PSObject()
    names = list(type_names)
    if names[-1] != "System.Object":
        names.append("System.Object")
    obj.PSObject.type_names = names
    obj.PSObject.adapted_properties.extend(PSNoteProperty(k, v) for k, v in adapted.items())
    for key, value in (extended or {}).items():
        # An extended member may shadow an adapted one of the same name (type data re-typing a raw value).
        add_note_property(obj, key, value, force=True)
    if to_string is not None:
        obj.PSObject.to_string = clixml_text(to_string)
    return obj


def custom_object(properties: Mapping[str, Any], type_names: Iterable[str] = ()) -> PSObject:
    """A PSCustomObject (all members are note properties, <MS>), optionally with extra leading type names the
    way PowerShell inserts them for formatted output (e.g. Get-ItemProperty keeps the plain chain)."""
    obj = PSCustomObject()
    obj.PSObject.type_names = [*type_names, *PS_CUSTOM_OBJECT_TN]
    for key, value in properties.items():
        add_note_property(obj, key, value)
    return obj


def define_enum(type_name: str, members: Mapping[str, int]) -> type[PSEnumBase]:
    """A .NET enum type: values serialise as <I32> with the enum's TN chain and the member name as ToString.

    Look members up with `Enum["Name"]` or `Enum(value)`; unnamed values (Windows sometimes stores them, e.g.
    RecoveryAuthenticationType 0) are not representable and must be mapped by the caller."""
    enum_cls = PSEnumBase(type_name.rsplit(".", 1)[-1], dict(members))
    return PSType([type_name])(enum_cls)


def i32(value: int) -> PSInt:
    return PSInt(value)


def i64(value: int) -> PSInt64:
    return PSInt64(value)


def u64(value: int) -> PSUInt64:
    return PSUInt64(value)


def datetime_value(value: dt.datetime) -> PSDateTime:
    """A System.DateTime; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return PSDateTime(value)


def timespan(value: dt.timedelta) -> PSDuration:
    return PSDuration(value)


def guid(value: uuid.UUID | str) -> PSGuid:
    return PSGuid(str(value))


def string_array(values: Iterable[str]) -> PSList:
    """A System.String[] (serialised as <LST> with the array's TN chain, as Windows sends typed arrays)."""
    lst = PSList(str(v) for v in values)
    lst.PSObject.type_names = ["System.String[]", "System.Array", "System.Object"]
    return lst


def object_array(values: Iterable[Any]) -> PSList:
    """A System.Object[] of already-built values."""
    lst = PSList(values)
    lst.PSObject.type_names = ["System.Object[]", "System.Array", "System.Object"]
    return lst
