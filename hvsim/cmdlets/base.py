"""The cmdlet framework: registration of emulated cmdlets and PowerShell-like parameter binding.

A cmdlet is a Python function `fn(ctx: CmdletContext, args: BoundArguments) -> None` registered with its
real name, the .NET type that appears in its FullyQualifiedErrorIds and its parameters (`Param`: real names,
aliases, types, mandatory, positions, parameter sets, pipeline binding, validation). The binder reproduces
what the PowerShell engine checks before a cmdlet runs, with the engine's messages and error ids; the cmdlet
then runs once per pipeline input object (once when it has no input), the way ProcessRecord does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from psrpcore.types import ErrorCategory, ErrorRecord, InvocationInfo, PSEnumBase, PSObject, PSSecureString

from hvsim.cmdlets.errors import TerminatingError, error_record, invocation_info, register_exception

if TYPE_CHECKING:
    from hvsim.lab import Lab
    from hvsim.windows import Host

register_exception(
    "System.Management.Automation.ParameterBindingValidationException",
    "System.Management.Automation.ParameterBindingException",
)
register_exception(
    "System.Management.Automation.ParameterBindingArgumentTransformationException",
    "System.Management.Automation.ParameterBindingException",
)
register_exception(
    "System.Management.Automation.ActionPreferenceStopException",
    "System.Management.Automation.RuntimeException",
)


class OutputSink(Protocol):
    """Where a pipeline's streams go (the WSMan layer turns these into PSRP messages)."""

    stopping: threading.Event

    def write_output(self, obj: Any) -> None: ...

    def write_error(self, record: ErrorRecord) -> None: ...

    def write_warning(self, message: str) -> None: ...

    def write_verbose(self, message: str) -> None: ...


# --- parameter types ------------------------------------------------------------------------------


class ConversionError(Exception):
    """A value cannot be converted to a parameter's type; `detail` is the engine's explanation."""

    def __init__(self, detail: str, *, transformation: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        # Argument transformation failures (SecureString, Boolean) have their own message and error id.
        self.transformation = transformation


@dataclass(frozen=True)
class ParamType:
    """A .NET parameter type: its name (for messages), how PowerShell converts an argument to it and which
    values already are of the type (pipeline binding tries those before any conversion)."""

    dotnet_name: str
    convert: Callable[[Any], Any]
    is_switch: bool = False
    is_array: bool = False
    exact: Callable[[Any], bool] = lambda value: False


def _type_name_of(value: Any) -> str:
    if isinstance(value, PSObject) and value.PSObject.type_names and not isinstance(value, str | int | bytes):
        return value.PSObject.type_names[0]
    return {
        str: "System.String",
        bool: "System.Boolean",
        int: "System.Int32",
        float: "System.Double",
        bytes: "System.Byte[]",
        list: "System.Object[]",
        dict: "System.Collections.Hashtable",
    }.get(
        next((t for t in (bool, str, int, float, bytes, list, dict) if isinstance(value, t)), object),
        "System.Object",
    )


def _cannot_convert(value: Any, target: str, reason: str) -> ConversionError:
    return ConversionError(f'Cannot convert value "{_display(value)}" to type "{target}". Error: "{reason}"')


def _not_convertible(value: Any, target: str) -> ConversionError:
    return ConversionError(
        f'Cannot convert the "{_display(value)}" value of type "{_type_name_of(value)}" to type "{target}".'
    )


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return "System.Object[]"
    return str(value)


def _to_string(value: Any) -> str:
    if isinstance(value, PSSecureString):
        return "System.Security.SecureString"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return " ".join(_to_string(v) for v in value)  # PowerShell joins with $OFS (a space)
    return str(value)


def _integer(bits: int, signed: bool, dotnet: str) -> Callable[[Any], int]:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    short = dotnet.rsplit(".", 1)[-1]

    def convert(value: Any) -> int:
        if isinstance(value, int):
            # Plain ints: sized PSInt/PSInt64 (also bools and enums) must not reach cmdlet arithmetic.
            number = int(value)
        elif isinstance(value, float):
            number = round(value)  # banker's rounding, like [int]2.5 -> 2
        elif isinstance(value, str):
            text = value.strip()
            try:
                number = int(text, 16) if text.lower().startswith("0x") else int(text)
            except ValueError:
                try:
                    number = round(float(text))
                except (ValueError, OverflowError):
                    message = "Input string was not in a correct format."
                    raise _cannot_convert(value, dotnet, message) from None
        else:
            raise _not_convertible(value, dotnet)
        if not low <= number <= high:
            message = f"Value was either too large or too small for {_article(short)}."
            raise _cannot_convert(value, dotnet, message)
        return number

    return convert


def _article(short: str) -> str:
    return f"an {short}" if short[0] in "AEIOUaeiou" else f"a {short}"


def _boolean(value: Any) -> bool:
    # Boolean parameters take only Booleans and numbers, never strings (engine rule).
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not isinstance(value, PSEnumBase):
        return value != 0
    raise ConversionError(
        f'Cannot convert value "{_type_name_of(value)}" to type "System.Boolean". Boolean parameters accept '
        "only Boolean values and numbers, such as $True, $False, 1 or 0.",
        transformation=True,
    )


def _switch(value: Any) -> bool:
    if value is None:  # a switch given without an argument: present
        return True
    try:
        return _boolean(value)
    except ConversionError:
        raise ConversionError(
            f'Cannot convert value "{_type_name_of(value)}" to type '
            '"System.Management.Automation.SwitchParameter". Boolean parameters accept only Boolean values '
            "and numbers, such as $True, $False, 1 or 0.",
            transformation=True,
        ) from None


def _secure_string(value: Any) -> str:
    if isinstance(value, PSSecureString):
        return str(value.decrypt())
    # Windows echoes the argument here; hvsim names only its type so a password sent as plain text never
    # lands in an error message.
    raise ConversionError(
        f'Cannot convert the value of type "{_type_name_of(value)}" to type "System.Security.SecureString".',
        transformation=True,
    )


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list | tuple):
        to_byte = _integer(8, False, "System.Byte")
        return bytes(to_byte(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return bytes([_integer(8, False, "System.Byte")(value)])
    raise _not_convertible(value, "System.Byte[]")


def _hashtable(value: Any) -> dict[Any, Any]:
    if isinstance(value, dict):
        return dict(value)
    raise _not_convertible(value, "System.Collections.Hashtable")


def _identity(value: Any) -> Any:
    return value


def array_of(element: ParamType) -> ParamType:
    """`T[]`: a scalar becomes a one-element array, every element is converted to T."""

    def convert(value: Any) -> list[Any]:
        items = list(value) if isinstance(value, list | tuple) else [value]
        return [element.convert(v) for v in items]

    def exact(value: Any) -> bool:
        items = list(value) if isinstance(value, list | tuple) else [value]
        return all(element.exact(v) for v in items)

    return ParamType(f"{element.dotnet_name}[]", convert, is_array=True, exact=exact)


def enum_type(enum_cls: type[PSEnumBase]) -> ParamType:
    """A .NET enum parameter: member names (case-insensitive) or their numeric values."""
    dotnet = enum_cls.PSObject.type_names[0]

    def convert(value: Any) -> PSEnumBase:
        if isinstance(value, enum_cls):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return enum_cls(int(value))
            except ValueError:
                pass
        text = str(value).strip()
        for member in enum_cls:
            if member.name.lower() == text.lower():
                return member
        raise _no_enum_match(value, dotnet, [m.name for m in enum_cls])

    return ParamType(dotnet, convert)


def _no_enum_match(value: Any, dotnet: str, names: Iterable[str]) -> ConversionError:
    return _cannot_convert(
        value,
        dotnet,
        f"Unable to match the identifier name {str(value).strip()} to a valid enumerator name. Specify one "
        f"of the following enumerator names and try again:\n{', '.join(names)}",
    )


def object_type(type_name: str) -> ParamType:
    """A parameter of a .NET object type (e.g. a piped VirtualMachine): accepts only objects whose type-name
    chain holds `type_name`, as the engine does (a deserialised copy from a client is a different type)."""

    def exact(value: Any) -> bool:
        return isinstance(value, PSObject) and type_name in value.PSObject.type_names

    def convert(value: Any) -> Any:
        if exact(value):
            return value
        raise _not_convertible(value, type_name)

    return ParamType(type_name, convert, exact=exact)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool | PSEnumBase)


STRING = ParamType("System.String", _to_string, exact=lambda v: isinstance(v, str))
STRINGS = array_of(STRING)
INT32 = ParamType("System.Int32", _integer(32, True, "System.Int32"), exact=_is_integer)
INT64 = ParamType("System.Int64", _integer(64, True, "System.Int64"), exact=_is_integer)
UINT64 = ParamType("System.UInt64", _integer(64, False, "System.UInt64"), exact=_is_integer)
BOOL = ParamType("System.Boolean", _boolean, exact=lambda v: isinstance(v, bool))
SWITCH = ParamType("System.Management.Automation.SwitchParameter", _switch, is_switch=True)
SECURE_STRING = ParamType("System.Security.SecureString", _secure_string)
BYTES = ParamType("System.Byte[]", _bytes, exact=lambda v: isinstance(v, bytes))
HASHTABLE = ParamType("System.Collections.Hashtable", _hashtable, exact=lambda v: isinstance(v, dict))
OBJECT = ParamType("System.Object", _identity, exact=lambda v: True)
OBJECTS = array_of(OBJECT)


# ----------------------------------------------------------------------------------------------- declarations

ALL_SETS = "__AllParameterSets"


@dataclass(frozen=True)
class Param:
    """One cmdlet parameter as its real declaration has it.

    `mandatory` is True (in every set the parameter belongs to) or the names of the sets where it is
    mandatory. `sets` empty means the parameter belongs to all sets. `choices` is a ValidateSet
    (case-insensitive), `value_range` a ValidateRange, `not_null_or_empty` a ValidateNotNullOrEmpty,
    `allow_empty` AllowNull + AllowEmptyString + AllowEmptyCollection; `validate` is any further check
    returning the engine-style detail text when the value is invalid."""

    name: str
    type: ParamType = STRING
    aliases: tuple[str, ...] = ()
    mandatory: bool | tuple[str, ...] = False
    position: int | None = None
    sets: tuple[str, ...] = ()
    from_pipeline: bool = False
    from_pipeline_by_property: bool = False
    choices: tuple[str, ...] = ()
    value_range: tuple[int, int] | None = None
    not_null_or_empty: bool = False
    allow_empty: bool = False
    validate: Callable[[Any], str | None] | None = None
    default: Any = None

    def in_set(self, set_name: str) -> bool:
        return not self.sets or set_name in self.sets

    def mandatory_in(self, set_name: str) -> bool:
        if isinstance(self.mandatory, bool):
            return self.mandatory and self.in_set(set_name)
        return set_name in self.mandatory

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


FORCE = Param("Force", SWITCH)
PASSTHRU = Param("PassThru", SWITCH)

ACTION_PREFERENCES = ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")
_ACTION_PREFERENCE = ParamType(
    "System.Management.Automation.ActionPreference",
    lambda v: _action_preference(v),
)


def _action_preference(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(ACTION_PREFERENCES):
        return ACTION_PREFERENCES[value]
    for name in ACTION_PREFERENCES:
        if name.lower() == str(value).strip().lower():
            return name
    raise _no_enum_match(value, "System.Management.Automation.ActionPreference", ACTION_PREFERENCES)


COMMON_PARAMETERS: tuple[Param, ...] = (
    Param("Verbose", SWITCH, aliases=("vb",)),
    Param("Debug", SWITCH, aliases=("db",)),
    Param("ErrorAction", _ACTION_PREFERENCE, aliases=("ea",)),
    Param("WarningAction", _ACTION_PREFERENCE, aliases=("wa",)),
    Param("InformationAction", _ACTION_PREFERENCE, aliases=("infa",)),
    Param("ErrorVariable", STRING, aliases=("ev",)),
    Param("WarningVariable", STRING, aliases=("wv",)),
    Param("InformationVariable", STRING, aliases=("iv",)),
    Param("OutVariable", STRING, aliases=("ov",)),
    Param("OutBuffer", INT32, aliases=("ob",)),
    Param("PipelineVariable", STRING, aliases=("pv",)),
)
SHOULD_PROCESS_PARAMETERS: tuple[Param, ...] = (
    Param("WhatIf", SWITCH, aliases=("wi",)),
    Param("Confirm", SWITCH, aliases=("cf",)),
)

CmdletFunction = Callable[["CmdletContext", "BoundArguments"], None]


@dataclass(frozen=True)
class CmdletSpec:
    """A registered cmdlet. `dotnet_type` is what FullyQualifiedErrorIds end with: the cmdlet class for
    compiled cmdlets ("Microsoft.PowerShell.Commands.GetItemCommand"), the cmdlet name itself for CDXML
    ones."""

    name: str
    dotnet_type: str
    function: CmdletFunction
    params: tuple[Param, ...]
    default_set: str = ALL_SETS
    supports_should_process: bool = False
    confirm_impact: str = "Medium"  # Low | Medium | High; prompts when >= $ConfirmPreference (High)

    def all_params(self) -> tuple[Param, ...]:
        extra = SHOULD_PROCESS_PARAMETERS if self.supports_should_process else ()
        return self.params + COMMON_PARAMETERS + extra

    def set_names(self) -> list[str]:
        names: list[str] = []
        for p in self.params:
            for s in p.sets:
                if s not in names:
                    names.append(s)
        return names or [self.default_set]


_REGISTRY: dict[str, CmdletSpec] = {}


def cmdlet(
    name: str,
    dotnet_type: str,
    params: Sequence[Param] = (),
    *,
    default_set: str | None = None,
    supports_should_process: bool = False,
    confirm_impact: str = "Medium",
) -> Callable[[CmdletFunction], CmdletFunction]:
    """Register `fn` as the cmdlet `name` (decorator)."""

    def register(fn: CmdletFunction) -> CmdletFunction:
        key = name.lower()
        if key in _REGISTRY:
            raise ValueError(f"cmdlet {name} is registered twice")
        sets = [s for p in params for s in p.sets]
        _REGISTRY[key] = CmdletSpec(
            name=name,
            dotnet_type=dotnet_type,
            function=fn,
            params=tuple(params),
            default_set=default_set or (sets[0] if sets else ALL_SETS),
            supports_should_process=supports_should_process,
            confirm_impact=confirm_impact,
        )
        return fn

    return register


def lookup(name: str) -> CmdletSpec | None:
    """The cmdlet registered as `name` (case-insensitive; a module qualifier like "Hyper-V\\Get-VM" is
    allowed)."""
    return _REGISTRY.get(name.rsplit("\\", 1)[-1].lower())


# --------------------------------------------------------------------------------------------------- binding


@dataclass
class BoundArguments:
    """The arguments a cmdlet invocation received, by canonical parameter name.

    `args["X"]`/`args.get("X")` give the bound value or the parameter's default; `"X" in args` says whether
    the caller passed it (PowerShell's $PSBoundParameters), which matters where omitting a parameter resets a
    setting."""

    spec: CmdletSpec
    values: dict[str, Any] = field(default_factory=dict)
    parameter_set: str = ALL_SETS
    # Sets still possible before pipeline input is bound (the engine settles the set per input object).
    open_sets: tuple[str, ...] = ()

    def _param(self, name: str) -> Param:
        for p in self.spec.all_params():
            if p.name.lower() == name.lower():
                return p
        raise KeyError(f"{self.spec.name} has no parameter {name}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._param(name).name in self.values

    def __getitem__(self, name: str) -> Any:
        p = self._param(name)
        return self.values.get(p.name, p.default)

    def get(self, name: str, default: Any = None) -> Any:
        p = self._param(name)
        return self.values.get(p.name, default if default is not None else p.default)


class Binder:
    """Binds one command's parameters the way the PowerShell engine does, raising TerminatingError with the
    engine's ParameterBindingException records."""

    def __init__(self, spec: CmdletSpec) -> None:
        self.spec = spec

    # --- errors
    def _fail(
        self,
        error_id: str,
        message: str,
        *,
        category: ErrorCategory = ErrorCategory.InvalidArgument,
        exception: str = "System.Management.Automation.ParameterBindingException",
        target: Any = None,
    ) -> NoReturn:
        raise TerminatingError(
            error_record(
                exception_type=exception,
                message=message,
                error_id=error_id,
                category=category,
                command_name=self.spec.name,
                command_type=self.spec.dotnet_type,
                target=target,
            )
        )

    # --- names
    def resolve(self, given: str) -> Param:
        """Exact name or alias first, then a unique prefix (PowerShell accepts -Comp for -ComputerName)."""
        wanted = given.lstrip("-").lower()
        params = self.spec.all_params()
        for p in params:
            if wanted in (n.lower() for n in p.names()):
                return p
        matches = [p for p in params if p.name.lower().startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            options = " ".join(f"-{p.name}" for p in matches)
            self._fail(
                "AmbiguousParameter",
                f"Parameter cannot be processed because the parameter name '{given}' is ambiguous. "
                f"Possible matches include: {options}.",
            )
        self._fail(
            "NamedParameterNotFound",
            f"A parameter cannot be found that matches parameter name '{given}'.",
        )

    # --- values
    def convert(self, p: Param, value: Any) -> Any:
        if value is None and not p.type.is_switch:
            return self._null_value(p)
        try:
            converted = p.type.convert(value)
        except ConversionError as exc:
            if exc.transformation:
                self._fail(
                    "ParameterArgumentTransformationError",
                    f"Cannot process argument transformation on parameter '{p.name}'. {exc.detail}",
                    category=ErrorCategory.InvalidData,
                    exception="System.Management.Automation.ParameterBindingArgumentTransformationException",
                )
            self._fail("CannotConvertArgumentNoMessage", f"Cannot bind parameter '{p.name}'. {exc.detail}")
        self._validate(p, converted)
        return converted

    def _null_value(self, p: Param) -> None:
        if (p.mandatory and not p.allow_empty) or p.not_null_or_empty:
            self._fail(
                "ParameterArgumentValidationErrorNullNotAllowed",
                f"Cannot bind argument to parameter '{p.name}' because it is null.",
                category=ErrorCategory.InvalidData,
                exception="System.Management.Automation.ParameterBindingValidationException",
            )
        return None

    def _validation_failure(self, p: Param, detail: str) -> NoReturn:
        self._fail(
            "ParameterArgumentValidationError",
            f"Cannot validate argument on parameter '{p.name}'. {detail}",
            category=ErrorCategory.InvalidData,
            exception="System.Management.Automation.ParameterBindingValidationException",
        )

    def _validate(self, p: Param, value: Any) -> None:
        items = value if p.type.is_array else [value]
        if p.mandatory and not p.allow_empty:
            if p.type.is_array and not items:
                self._fail(
                    "ParameterArgumentValidationErrorEmptyArrayNotAllowed",
                    f"Cannot bind argument to parameter '{p.name}' because it is an empty array.",
                    category=ErrorCategory.InvalidData,
                    exception="System.Management.Automation.ParameterBindingValidationException",
                )
            if p.type.dotnet_name in ("System.String", "System.String[]") and "" in items:
                self._fail(
                    "ParameterArgumentValidationErrorEmptyStringNotAllowed",
                    f"Cannot bind argument to parameter '{p.name}' because it is an empty string.",
                    category=ErrorCategory.InvalidData,
                    exception="System.Management.Automation.ParameterBindingValidationException",
                )
        if p.not_null_or_empty and (not items or any(v is None or v == "" for v in items)):
            self._validation_failure(
                p,
                "The argument is null or empty. Provide an argument that is not null or empty, and then try "
                "the command again.",
            )
        for item in items:
            if p.choices and str(item).lower() not in (c.lower() for c in p.choices):
                self._validation_failure(
                    p,
                    f'The argument "{item}" does not belong to the set "{",".join(p.choices)}" specified by '
                    "the ValidateSet attribute. Supply an argument that is in the set and then try the "
                    "command again.",
                )
            if p.value_range is not None:
                low, high = p.value_range
                if item < low:
                    self._validation_failure(
                        p,
                        f"The {item} argument is less than the minimum allowed range of {low}. Supply an "
                        f"argument that is greater than or equal to {low} and then try the command again.",
                    )
                if item > high:
                    self._validation_failure(
                        p,
                        f"The {item} argument is greater than the maximum allowed range of {high}. Supply an "
                        f"argument that is less than or equal to {high} and then try the command again.",
                    )
            if p.validate is not None and (detail := p.validate(item)) is not None:
                self._validation_failure(p, detail)

    # --- the whole command
    def bind(self, parameters: Iterable[tuple[str | None, Any]], has_input: bool) -> BoundArguments:
        values: dict[str, Any] = {}
        positional: list[Any] = []
        for name, value in parameters:
            if name is None:
                positional.append(value)
                continue
            p = self.resolve(name)
            if p.name in values:
                self._fail(
                    "ParameterAlreadyBound",
                    f"Cannot bind parameter because parameter '{p.name}' is specified more than once. To "
                    "provide multiple values to parameters that can accept multiple values, use the array "
                    'syntax. For example, "-parameter value1,value2,value3".',
                )
            if value is None and not p.type.is_switch:
                self._fail(
                    "MissingArgument",
                    f"Missing an argument for parameter '{p.name}'. Specify a parameter of type "
                    f"'{p.type.dotnet_name}' and try again.",
                )
            values[p.name] = self.convert(p, value)
        self._bind_positional(values, positional)
        candidates = self._compatible_sets(self.spec.set_names(), values)
        if not candidates:
            self._ambiguous_set()
        if has_input:
            viable = [s for s in candidates if not self._missing(s, values, pipeline=True)]
            if not viable:
                self._missing_mandatory(self._missing(self._prefer(candidates), values, pipeline=True))
            return BoundArguments(self.spec, values, self._prefer(viable), tuple(viable))
        set_name = self._choose(candidates, values)
        self._missing_mandatory(self._missing(set_name, values, pipeline=False))
        return BoundArguments(self.spec, values, set_name, (set_name,))

    def _missing(self, set_name: str, values: Mapping[str, Any], pipeline: bool) -> list[str]:
        """Mandatory parameters of `set_name` not bound (and, with `pipeline`, not bindable from input)."""
        return [
            p.name
            for p in self.spec.params
            if p.mandatory_in(set_name)
            and p.name not in values
            and not (pipeline and (p.from_pipeline or p.from_pipeline_by_property))
        ]

    def _missing_mandatory(self, missing: list[str]) -> None:
        if missing:
            self._fail(
                "MissingMandatoryParameter",
                "Cannot process command because of one or more missing mandatory parameters: "
                f"{' '.join(missing)}.",
            )

    def _bind_positional(self, values: dict[str, Any], positional: list[Any]) -> None:
        slots = sorted((p for p in self.spec.params if p.position is not None), key=lambda p: p.position or 0)
        for value in positional:
            p = next((s for s in slots if s.name not in values), None)
            if p is None:
                self._fail(
                    "PositionalParameterNotFound",
                    f"A positional parameter cannot be found that accepts argument '{_to_string(value)}'.",
                )
            values[p.name] = self.convert(p, value)

    def _compatible_sets(self, sets: Iterable[str], values: Mapping[str, Any]) -> list[str]:
        """The sets every bound parameter belongs to."""
        bound = [p for p in self.spec.params if p.name in values and p.sets]
        return [s for s in sets if all(p.in_set(s) for p in bound)]

    def _prefer(self, sets: Sequence[str]) -> str:
        return self.spec.default_set if self.spec.default_set in sets else sets[0]

    def _choose(self, candidates: list[str], values: Mapping[str, Any]) -> str:
        if len(candidates) == 1:
            return candidates[0]
        if self.spec.default_set in candidates:
            return self.spec.default_set
        satisfied = [s for s in candidates if not self._missing(s, values, pipeline=False)]
        if len(satisfied) == 1:
            return satisfied[0]
        self._ambiguous_set()

    def _ambiguous_set(self) -> NoReturn:
        self._fail(
            "AmbiguousParameterSet",
            "Parameter set cannot be resolved using the specified named parameters.",
        )

    def bind_pipeline_object(self, bound: BoundArguments, obj: Any) -> BoundArguments | None:
        """Bind one pipeline input object in the engine's order: ValueFromPipeline parameters the object
        already matches, then ValueFromPipelineByPropertyName ones (property named like the parameter or an
        alias), then ValueFromPipeline with conversion. None when the object binds to nothing or leaves
        every open parameter set short of a mandatory parameter."""
        open_sets = bound.open_sets or (bound.parameter_set,)
        eligible = [
            p for p in self.spec.params if p.name not in bound.values and any(p.in_set(s) for s in open_sets)
        ]
        extra = next(
            ({p.name: p.type.convert(obj)} for p in eligible if p.from_pipeline and p.type.exact(obj)), {}
        )
        if not extra and isinstance(obj, PSObject):
            for p in eligible:
                value = (
                    next((v for v in (_property(obj, n) for n in p.names()) if v is not None), None)
                    if p.from_pipeline_by_property
                    else None
                )
                if value is not None and self._compatible_sets(
                    open_sets, {**bound.values, **extra, p.name: 1}
                ):
                    extra[p.name] = self.convert(p, value)
        if not extra:
            for p in (p for p in eligible if p.from_pipeline):
                try:
                    extra = {p.name: p.type.convert(obj)}
                    break
                except ConversionError:
                    continue
        if not extra:
            return None
        for name, value in extra.items():
            self._validate(next(p for p in eligible if p.name == name), value)
        values = {**bound.values, **extra}
        viable = [
            s
            for s in self._compatible_sets(open_sets, values)
            if not self._missing(s, values, pipeline=False)
        ]
        if not viable:
            return None
        chosen = self._prefer(viable)
        return BoundArguments(self.spec, values, chosen, (chosen,))

    def input_not_bound(self, obj: Any, invocation: InvocationInfo | None = None) -> ErrorRecord:
        return error_record(
            exception_type="System.Management.Automation.ParameterBindingException",
            message="The input object cannot be bound to any parameters for the command either because the "
            "command does not take pipeline input or the input and its properties do not match any of the "
            "parameters that take pipeline input.",
            error_id="InputObjectNotBound",
            category=ErrorCategory.InvalidArgument,
            command_name=self.spec.name,
            command_type=self.spec.dotnet_type,
            target=obj,
            invocation=invocation,
        )


def _property(obj: PSObject, name: str) -> Any:
    for prop in (*obj.PSObject.adapted_properties, *obj.PSObject.extended_properties):
        if prop.name.lower() == name.lower():
            return prop.get_value(obj)
    return None


# --------------------------------------------------------------------------------------------------- context


@dataclass
class CommonParameters:
    """The common parameters of one invocation (defaults = Windows' preference variables)."""

    error_action: str = "Continue"
    warning_action: str = "Continue"
    verbose: bool = False
    whatif: bool = False
    confirm: bool | None = None  # None: not given; then ConfirmImpact decides

    @classmethod
    def from_bound(cls, bound: BoundArguments) -> CommonParameters:
        v = bound.values
        return cls(
            error_action=v.get("ErrorAction", "Continue"),
            warning_action=v.get("WarningAction", "Continue"),
            verbose=bool(v.get("Verbose", False)),
            whatif=bool(v.get("WhatIf", False)),
            confirm=v.get("Confirm"),
        )


_IMPACT = {"None": 0, "Low": 1, "Medium": 2, "High": 3}


@dataclass
class CmdletContext:
    """What a cmdlet sees: the lab and host it runs on, the remote user, its common parameters, its streams.

    Stream writes are buffered and handed to the pipeline after each record, outside the lab lock."""

    lab: Lab
    host: Host
    user: str
    spec: CmdletSpec
    common: CommonParameters
    stopping: threading.Event
    events: list[tuple[str, Any]] = field(default_factory=list)
    # Survives from one pipeline record to the next within this command (BeginProcessing state).
    state: dict[str, Any] = field(default_factory=dict)
    # Where the command sits in its statement, and the current record's arguments: the InvocationInfo of
    # the errors it writes.
    pipeline_position: int = 1
    pipeline_length: int = 1
    expecting_input: bool = False
    bound: BoundArguments | None = None

    # --- streams
    def write_output(self, obj: Any) -> None:
        self.events.append(("output", obj))

    def write_error(self, record: ErrorRecord) -> None:
        """A non-terminating error, subject to -ErrorAction (Stop makes it terminating)."""
        action = self.common.error_action
        if action == "Stop":
            raise TerminatingError(record)
        if action in ("SilentlyContinue", "Ignore"):
            return
        self.events.append(("error", record))

    def write_warning(self, message: str) -> None:
        action = self.common.warning_action
        if action == "Stop":
            self.throw(
                "System.Management.Automation.ActionPreferenceStopException",
                'The running command stopped because the preference variable "WarningPreference" or common '
                f"parameter is set to Stop: {message}",
                "ActionPreferenceStop",
                ErrorCategory.OperationStopped,
            )
        if action in ("SilentlyContinue", "Ignore"):
            return
        self.events.append(("warning", message))

    def write_verbose(self, message: str) -> None:
        if self.common.verbose:
            self.events.append(("verbose", message))

    # --- errors of this cmdlet
    def error(
        self,
        exception_type: str,
        message: str,
        error_id: str,
        category: ErrorCategory,
        target: Any = None,
        *,
        target_type: str | None = None,
        hresult: int | None = None,
    ) -> ErrorRecord:
        """An ErrorRecord attributed to this cmdlet (FQID "<error_id>,<cmdlet .NET type>")."""
        return error_record(
            exception_type=exception_type,
            message=message,
            error_id=error_id,
            category=category,
            command_name=self.spec.name,
            command_type=self.spec.dotnet_type,
            target=target,
            target_type=target_type,
            hresult=hresult,
            invocation=self.invocation(),
        )

    def invocation(self) -> InvocationInfo:
        """The InvocationInfo Windows attaches to this command's errors."""
        bound = dict(self.bound.values) if self.bound is not None else {}
        for p in self.spec.all_params():
            if p.name in bound and p.type.dotnet_name == SECURE_STRING.dotnet_name:
                # Bound SecureStrings hold the decrypted text; on the wire they show only their type name.
                bound[p.name] = SECURE_STRING.dotnet_name
        return invocation_info(
            self.spec.name,
            bound,
            pipeline_position=self.pipeline_position,
            pipeline_length=self.pipeline_length,
            expecting_input=self.expecting_input,
        )

    def throw(
        self,
        exception_type: str,
        message: str,
        error_id: str,
        category: ErrorCategory,
        target: Any = None,
        **kwargs: Any,
    ) -> NoReturn:
        """ThrowTerminatingError: fails the pipeline whatever -ErrorAction says."""
        raise TerminatingError(self.error(exception_type, message, error_id, category, target, **kwargs))

    # --- ShouldProcess / ShouldContinue
    def should_process(self, target: str, action: str | None = None) -> bool:
        """False under -WhatIf (nothing may change). A confirmation prompt (-Confirm, or ConfirmImpact High
        without -Confirm:$false) cannot be shown to a remote client without a host UI, so it fails like
        Windows does."""
        if self.common.whatif:
            return False
        wants_prompt = self.common.confirm is True or (
            self.common.confirm is None and _IMPACT[self.spec.confirm_impact] >= _IMPACT["High"]
        )
        if wants_prompt:
            operation = action or self.spec.name
            self._prompt_failure(
                "Are you sure you want to perform this action?\n"
                f'Performing the operation "{operation}" on target "{target}".'
            )
        return True

    def should_continue(self, query: str, force: bool) -> bool:
        """ShouldContinue: only -Force skips this prompt (-Confirm:$false does not)."""
        if force:
            return True
        self._prompt_failure(query)

    def _prompt_failure(self, prompt: str) -> NoReturn:
        self.throw(
            "System.Management.Automation.Host.HostException",
            prompt_failure_message(prompt),
            "HostException",
            ErrorCategory.NotSpecified,
        )


def prompt_failure_message(prompt: str) -> str:
    """What a confirmation prompt raises in a remote runspace whose host cannot prompt."""
    return (
        "A command that prompts the user failed because the host program or the command type does not "
        "support user interaction. The host was attempting to request confirmation with the following "
        f"message: {prompt}"
    )
