"""Plain pypsrp helpers for checking hosts directly, never through the provider's remoting layer."""

from __future__ import annotations

from typing import Any

from pypsrp.powershell import PowerShell, RunspacePool


class CmdletFailed(AssertionError):
    """A cmdlet run by a test or benchmark wrote errors; the message lists them."""


def run_cmdlet(pool: RunspacePool, cmdlet: str, **params: Any) -> list[Any]:
    """One cmdlet with named parameters on `pool`; its output, or CmdletFailed when it wrote errors."""
    ps = PowerShell(pool)
    ps.add_cmdlet(cmdlet)
    for name, value in params.items():
        ps.add_parameter(name, value)
    output = ps.invoke()
    if ps.had_errors:
        raise CmdletFailed(f"{cmdlet} failed: {[str(e) for e in ps.streams.error]}")
    return output


def prop(obj: Any, name: str) -> Any:
    """A property of a deserialised PSObject, adapted or extended; None when it has none of that name."""
    for attr in ("adapted_properties", "extended_properties"):
        values = getattr(obj, attr, None) or {}
        if name in values:
            return values[name]
    return None
