"""hvsim's PSRP shell driven by psrpcore's real client side, for what a black-box client cannot time:
output a cmdlet writes after ctrl_c is discarded, stopped pipelines are reaped, Receives fit the requester's
envelope."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from psrpcore import ClientPowerShell, ClientRunspacePool, PipelineOutputEvent, PSRPPayload, StreamType
from psrpcore.types import RunspacePoolState

from hvsim.wsman.psrp import Shell, Sink
from hvsim.wsman.soap import WSManFault

SHELL_ID = "0A0B0C0D-0000-4000-8000-000000000001"


def _deliver(client: ClientRunspacePool, fragments: list[bytes], pipeline_id: Any = None) -> list[Any]:
    client.receive_data(PSRPPayload(b"".join(fragments), StreamType.default, pipeline_id))
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


def _opened(executor: Any) -> tuple[ClientRunspacePool, Shell]:
    client = ClientRunspacePool()
    client.open()
    shell = Shell(SHELL_ID, "Administrator", executor, lambda: None)
    shell.open(client.data_to_send().data)
    while client.state != RunspacePoolState.Opened:
        _deliver(client, shell.receive(None, 153600, 1).fragments)
    return client, shell


def _start(client: ClientRunspacePool, shell: Shell, command: str) -> ClientPowerShell:
    ps = ClientPowerShell(client)
    ps.add_command(command)
    ps.start()
    shell.command(str(ps.pipeline_id).upper(), client.data_to_send().data)
    return ps


def test_output_written_after_ctrl_c_is_discarded_and_the_pipeline_reaped() -> None:
    first_written, release, finished = threading.Event(), threading.Event(), threading.Event()
    seen_stopping: list[bool] = []

    def slow_cmdlet(user: str, commands: list[Any], inputs: list[Any], sink: Sink) -> None:
        sink.write_output("first")
        first_written.set()
        release.wait(10)
        seen_stopping.append(sink.stopping.is_set())
        sink.write_output("late")  # after ctrl_c: must never reach the client
        finished.set()

    client, shell = _opened(slow_cmdlet)
    ps = _start(client, shell, "Get-Slow")
    command_id = str(ps.pipeline_id).upper()
    assert first_written.wait(10)
    result = shell.receive(command_id, 153600, 5)
    outputs = [e.data for e in _deliver(client, result.fragments, ps.pipeline_id)]
    assert outputs == ["first"] and not result.done

    shell.signal_stop(command_id)
    release.set()
    assert finished.wait(10)
    assert seen_stopping == [True]
    deadline = time.monotonic() + 5
    while shell.pipeline_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shell.pipeline_count == 0
    assert shell.runspace_pool.pipeline_table == {}
    try:
        shell.receive(command_id, 153600, 0.2)
    except WSManFault as fault:
        assert fault.code == 2150858843
    else:
        raise AssertionError("a reaped pipeline must be unknown to Receive")


def test_receives_fit_the_requesters_envelope() -> None:
    big = "x" * 100_000

    def big_output(user: str, commands: list[Any], inputs: list[Any], sink: Sink) -> None:
        sink.write_output(big)

    client, shell = _opened(big_output)
    ps = _start(client, shell, "Get-Big")
    command_id = str(ps.pipeline_id).upper()
    envelope = 8192
    received: list[Any] = []
    rounds = 0
    while True:
        result = shell.receive(command_id, envelope, 5)
        rounds += 1
        encoded = sum(len(base64.b64encode(f)) for f in result.fragments)
        assert 0 < encoded <= envelope - 2048  # room left for the SOAP envelope around the streams
        received += _deliver(client, result.fragments, ps.pipeline_id)
        if result.done:
            break
    outputs = [e.data for e in received if isinstance(e, PipelineOutputEvent)]
    assert outputs == [big]
    assert rounds > 10
    assert shell.pipeline_count == 0  # delivered in full, then reaped
