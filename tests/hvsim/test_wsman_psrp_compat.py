"""Pins the psrpcore 0.3.1 private APIs and quirks hvsim depends on (hvsim/wsman/psrp_compat.py), so an
upgrade that changes them fails here first."""

from __future__ import annotations

import uuid

from psrpcore import PSRPEvent, ServerPipeline, ServerRunspacePool, SetMaxRunspacesEvent, SetMinRunspacesEvent
from psrpcore._payload import unpack_fragment, unpack_message
from psrpcore.types import (
    ErrorCategory,
    PSInvocationState,
    PSObject,
    PSRPMessageType,
    add_note_property,
    deserialize_clixml,
    serialize_clixml,
)

from hvsim.cmdlets.errors import error_record
from hvsim.wsman import psrp_compat


def test_pinned_versions() -> None:
    from importlib.metadata import version

    assert version("psrpcore") == "0.3.1"
    assert version("pypsrp") == "0.9.1"


def _event(cls: type[PSRPEvent], message_type: PSRPMessageType, **members: int) -> PSRPEvent:
    obj = PSObject()
    for name, value in members.items():
        add_note_property(obj, name, value)
    return cls(message_type, obj, uuid.uuid4(), None)


def test_call_id_accepted_in_both_spellings() -> None:
    psrp_compat.install()
    upper = _event(SetMaxRunspacesEvent, PSRPMessageType.SetMaxRunspaces, CI=7, MaxRunspaces=3)
    lower = _event(SetMinRunspacesEvent, PSRPMessageType.SetMinRunspaces, ci=8, MinRunspaces=1)
    assert upper.ci == 7 and upper.count == 3
    assert lower.ci == 8


def _queued(pool: ServerRunspacePool) -> list[tuple[PSRPMessageType, bytes]]:
    messages = []
    while (payload := pool.data_to_send()) is not None:
        data = bytearray(payload.data)
        while data:
            fragment = unpack_fragment(data)
            message = unpack_message(bytearray(fragment.data))
            messages.append((message.message_type, bytes(message.data)))
            del data[: 21 + len(fragment.data)]
    return messages


def test_start_would_emit_running_but_mark_running_does_not() -> None:
    pool = ServerRunspacePool()
    upstream = ServerPipeline(pool, uuid.uuid4())
    upstream.start()
    assert [t for t, _ in _queued(pool)] == [PSRPMessageType.PipelineState]  # why mark_running exists

    pipeline = ServerPipeline(pool, uuid.uuid4())
    psrp_compat.mark_running(pipeline)
    assert pipeline.state == PSInvocationState.Running
    assert _queued(pool) == []


def test_fail_emits_failed_state_with_the_error_record() -> None:
    pool = ServerRunspacePool()
    pipeline = ServerPipeline(pool, uuid.uuid4())
    psrp_compat.mark_running(pipeline)
    record = error_record(
        exception_type="System.Management.Automation.RuntimeException",
        message="boom",
        error_id="Boom",
        category=ErrorCategory.InvalidOperation,
    )
    psrp_compat.fail(pipeline, record)
    assert pipeline.state == PSInvocationState.Failed
    [(message_type, data)] = _queued(pool)
    assert message_type == PSRPMessageType.PipelineState
    assert b'<I32 N="PipelineState">5</I32>' in data
    assert b"ExceptionAsErrorRecord" in data and b"boom" in data


def test_to_string_is_written_verbatim_so_hvsim_encodes_it() -> None:
    # psrpcore escapes <S> values but not <ToString>; PowerShell encodes both (CR LF as _x000D__x000A_).
    obj = PSObject()
    obj.PSObject.to_string = "a\r\nb_x"
    assert "<ToString>a\r\nb_x</ToString>" in serialize_clixml(obj, None)
    obj.PSObject.to_string = psrp_compat.clixml_text("a\r\nb_x")
    xml = serialize_clixml(obj, None)
    assert "<ToString>a_x000D__x000A_b_x005F_x</ToString>" in xml
    assert str(deserialize_clixml(xml, None)[0]) == "a\r\nb_x"  # the receiving side decodes it back
