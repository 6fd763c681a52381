"""Plain values as the Pulumi engine delivers them, shared by every layer.

The engine's wire format (protobuf `Struct`) has only one number type, so integers arrive as
floats at any depth: in resource inputs and in the connection objects nested in them alike. This
module sits below `remoting.py` and `resources/` so both can turn them back into ints without
importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

# A schema of where integers live: `int` for a number, a mapping for an object's keys, a one-item
# list for "every element".
IntShape = Union[type[int], Mapping[str, "IntShape"], list["IntShape"]]  # noqa: UP007 (recursive alias)


def whole_number(value: object) -> int | None:
    """`value` as an int when it is an int or an integral float (2048.0), else None. Booleans are
    not numbers here, although Python treats them as ints."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def normalise_ints(value: Any, shape: IntShape) -> Any:
    """Turn integral floats into ints wherever `shape` says an int lives, at any depth.

    Values that do not fit (strings, fractions, unknowns) are left alone for `check` to report.
    Returns a new structure; the input is not modified.
    """
    if shape is int:
        number = whole_number(value)
        return value if number is None else number
    if isinstance(shape, list) and isinstance(value, list):
        return [normalise_ints(item, shape[0]) for item in value]
    if isinstance(shape, Mapping) and isinstance(value, Mapping):
        return {k: normalise_ints(v, shape[k]) if k in shape else v for k, v in value.items()}
    return value
