"""Workarounds for psrpcore 0.3.1 as pypsrp 0.9.1 drives it (both pinned in pyproject.toml).

Every private psrpcore API hvsim relies on is reached through this module only, and
tests/hvsim/test_wsman_psrp_compat.py pins each of them, so an upgrade that breaks one fails loudly.
"""

from __future__ import annotations

from typing import Any

from psrpcore import ServerPipeline, SetMaxRunspacesEvent, SetMinRunspacesEvent
from psrpcore.types import ErrorRecord, PSInvocationState
from psrpcore.types._serializer import _serialize_string


def _call_id(self: Any) -> int:
    # pypsrp writes <I64 N="CI">, PowerShell reads member names case-insensitively, psrpcore reads only "ci".
    obj = self._ps_object
    value = getattr(obj, "ci", None)
    return int(value if value is not None else obj.CI)


def install() -> None:
    """Accept both spellings of the call id on SET_MAX/MIN_RUNSPACES (idempotent)."""
    SetMaxRunspacesEvent.ci = property(_call_id)  # type: ignore[method-assign,assignment]
    SetMinRunspacesEvent.ci = property(_call_id)  # type: ignore[method-assign,assignment]


def mark_running(pipeline: ServerPipeline) -> None:
    """Running without the PipelineState=Running message that ServerPipeline.start() queues.

    Windows never sends Running; sending it costs the client an extra Receive round trip.
    """
    pipeline._change_state(PSInvocationState.Running, emit=False)


def fail(pipeline: ServerPipeline, record: ErrorRecord) -> None:
    """PipelineState=Failed carrying the ErrorRecord (psrpcore has no public fail())."""
    pipeline._change_state(PSInvocationState.Failed, error=record)


def clixml_text(text: str) -> str:
    """`text` encoded for a <ToString> element, as PowerShell writes it (CR, LF, ... as _x000D_, _x000A_).

    psrpcore escapes <S> values but writes an object's ToString verbatim, so XML parsing on the client
    turns CR LF into LF; set ToString to this encoded form instead (pypsrp and PowerShell decode it).
    """
    return _serialize_string(text)
