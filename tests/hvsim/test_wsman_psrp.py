"""PSRP over hvsim's WinRM with the real pypsrp client: pools, pipelines, statements, input, stop, timeouts,
concurrency, reaping, the shell quota, envelope sizes and the rejection rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pypsrp.complex_objects import ObjectMeta, PSInvocationState
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.server import Emulator
from tests.support.certs import make_host_cert
from tests.support.hvsim_env import end_input, held_pipeline, host, lab_config, running_lab, wsman_kwargs

HV = "hv1.contoso.com"
VMS = ["web01", "web02", "sql01"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running_lab(lab_config(host(HV, "127.32.0.11", vms=VMS, http=True))) as emulator:
        yield emulator


@pytest.fixture
def pool(emu: Emulator) -> Iterator[RunspacePool]:
    with WSMan(**wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as runspace_pool:
        yield runspace_pool


def _names(objects: list) -> list[str]:
    return [str(o.adapted_properties["Name"]) for o in objects]


def test_pool_open_invoke_close(emu: Emulator) -> None:
    before = emu.counters(HV)
    with WSMan(**wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
        assert pool.is_alive()
        assert emu.sessions(HV)["shells"] >= 1
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", "web01")
        out = ps.invoke()
        assert not ps.had_errors
        assert _names(out) == ["web01"]
        assert out[0].types[0] == "Microsoft.HyperV.PowerShell.VirtualMachine"
    after = emu.counters(HV)
    assert after["pools_opened"] == before["pools_opened"] + 1
    assert after["pipelines"] == before["pipelines"] + 1


def test_several_statements_in_one_invocation(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01").add_statement()
    ps.add_cmdlet("Get-VM").add_parameter("Name", "sql01").add_statement()
    ps.add_cmdlet("Stop-VM").add_parameter("Name", "web02").add_parameter("TurnOff", True)
    ps.add_parameter("PassThru", True)
    out = ps.invoke()
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    assert _names(out) == ["web01", "sql01", "web02"]
    assert str(out[2].adapted_properties["State"]) == "Off"
    start = PowerShell(pool)
    start.add_cmdlet("Start-VM").add_parameter("Name", "web02")
    start.invoke()
    assert not start.had_errors


def test_several_commands_in_one_statement(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web02").add_cmdlet("Stop-VM").add_parameter(
        "TurnOff", True
    )
    ps.add_parameter("PassThru", True)
    out = ps.invoke()
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    assert _names(out) == ["web02"] and str(out[0].adapted_properties["State"]) == "Off"
    start = PowerShell(pool)
    start.add_cmdlet("Start-VM").add_parameter("Name", "web02")
    start.invoke()
    assert not start.had_errors


def test_non_terminating_error_completes_the_pipeline(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", ["web01", "missing-vm"])
    out = ps.invoke()
    assert _names(out) == ["web01"]
    assert ps.state == PSInvocationState.COMPLETED
    assert not ps.had_errors  # only a Failed pipeline sets had_errors
    assert len(ps.streams.error) == 1


def test_unknown_cmdlet_is_command_not_found(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Unicorn")
    ps.invoke()
    assert ps.had_errors and ps.state == PSInvocationState.FAILED
    record = ps.streams.error[0]
    assert record.fq_error == "CommandNotFoundException"
    assert record.category == 13  # ErrorCategory.ObjectNotFound
    assert record.reason == "CommandNotFoundException"


def test_add_script_rejected_naming_the_rule(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_script("Get-VM | Stop-VM")
    ps.invoke()
    assert ps.had_errors
    assert "hvsim executes cmdlets, not scripts" in str(ps.streams.error[0])
    iex = PowerShell(pool)
    iex.add_cmdlet("Invoke-Expression").add_parameter("Command", "Get-VM")
    iex.invoke()
    assert iex.had_errors and "hvsim executes cmdlets, not scripts" in str(iex.streams.error[0])


def _assert_unreadable_and_pool_usable(emu: Emulator, pool: RunspacePool, ps: PowerShell) -> None:
    assert ps.had_errors and ps.state == PSInvocationState.FAILED
    record = ps.streams.error[0]
    assert record.fq_error == "HvsimDeserializationFailed"
    assert "2147483648" in str(record) and "Int64" in str(record)
    again = PowerShell(pool)
    again.add_cmdlet("Get-VM").add_parameter("Name", "web01")
    assert _names(again.invoke()) == ["web01"] and not again.had_errors
    assert emu.sessions(HV)["pipelines"] == 0


def test_int_beyond_int32_in_a_parameter_fails_the_pipeline_not_the_connection(
    emu: Emulator, pool: RunspacePool
) -> None:
    # pypsrp serialises every Python int as <I32>; 2**31 cannot be read back. Windows' deserializer refuses it
    # too: the client must get a failed pipeline it can report, and the pool stays usable.
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01").add_parameter("ErrorAction", 2**31)
    assert ps.invoke() == []
    _assert_unreadable_and_pool_usable(emu, pool, ps)


def test_int_beyond_int32_in_pipeline_input_fails_the_pipeline(emu: Emulator, pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Test-Path")
    assert ps.invoke(input=["C:\\Windows", 2**31]) == []  # nothing runs on input that was only partly read
    _assert_unreadable_and_pool_usable(emu, pool, ps)


def test_int_beyond_int32_in_a_pool_message_is_a_fault_and_the_pool_lives_on(
    emu: Emulator, pool: RunspacePool
) -> None:
    with pytest.raises(WSManFaultError) as info:
        pool.max_runspaces = 2**31  # SET_MAX_RUNSPACES has no pipeline to fail: the request faults
    assert info.value.code == 1359 and "2147483648" in info.value.reason
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01")
    assert _names(ps.invoke()) == ["web01"]


def test_large_argument_and_output_with_small_envelopes(emu: Emulator) -> None:
    names = [f"no-such-vm-{i:05d}*" for i in range(4000)] + ["web01"]
    bulk = 40  # ~5 KB per serialised VM: ~200 KB of output for 20 KB envelopes
    for i in range(bulk):
        emu.lab.add_vm(HV, f"bulk{i:03d}")  # the model alone: persisting each VM is not under test here
    try:
        with WSMan(max_envelope_size=20480, **wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
            before = emu.counters(HV)["http_requests"]
            ps = PowerShell(pool)
            ps.add_cmdlet("Get-VM").add_parameter("Name", names)
            assert _names(ps.invoke()) == ["web01"]
            sends = emu.counters(HV)["http_requests"] - before
            assert sends > 5  # ~100 KB of arguments in 20 KB envelopes: one Command plus many Sends
            every = PowerShell(pool)
            every.add_cmdlet("Get-VM")
            before = emu.counters(HV)["http_requests"]
            out = every.invoke()
            receives = emu.counters(HV)["http_requests"] - before
            assert len(out) == len(VMS) + bulk
            assert receives > 3  # the output came back in several envelope-sized Receives
    finally:
        for i in range(bulk):
            emu.lab.remove_vm(HV, f"bulk{i:03d}")


def test_large_request_fits_one_default_envelope(emu: Emulator) -> None:
    # pypsrp raises MaxEnvelopeSize to 512000 (protocol >= 2.2): ~300 KB of arguments go in one Command.
    names = [f"no-such-vm-{i:05d}*" for i in range(9000)] + ["web01"]
    with WSMan(**wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
        before = emu.counters(HV)["http_requests"]
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", names)
        assert _names(ps.invoke()) == ["web01"]
        assert emu.counters(HV)["http_requests"] - before == 2  # Command + Receive, no Send
        assert wsman.max_envelope_size == 512000


def test_receive_times_out_and_client_polls_again(emu: Emulator) -> None:
    with WSMan(operation_timeout=1, **wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
        ps = held_pipeline(pool)
        start = time.monotonic()
        ps.poll_invoke()  # the server holds the Receive ~1 s, then TimedOut; pypsrp swallows it
        assert time.monotonic() - start >= 0.9
        assert ps.state == PSInvocationState.RUNNING
        sender = threading.Timer(1.5, end_input, args=(ps,))
        sender.start()
        out = ps.end_invoke()  # keeps polling through further TimedOut faults
        sender.join()
        assert _names(out) == ["web01"]


def test_stop_pipeline_then_reuse_pool(emu: Emulator, pool: RunspacePool) -> None:
    ps = held_pipeline(pool)
    ps.stop()
    assert ps.state == PSInvocationState.STOPPED
    again = PowerShell(pool)
    again.add_cmdlet("Get-VM").add_parameter("Name", "sql01")
    assert _names(again.invoke()) == ["sql01"]
    deadline = time.monotonic() + 5
    while emu.sessions(HV)["pipelines"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.sessions(HV)["pipelines"] == 0


def test_finished_pipelines_are_reaped(emu: Emulator, pool: RunspacePool) -> None:
    for _ in range(20):
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", "web01")
        ps.invoke()
    assert emu.sessions(HV)["pipelines"] == 0


def test_close_pipeline_sends_terminate(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01")
    ps.invoke()
    ps.close()  # Signal Terminate for a pipeline the server already reaped: accepted
    assert ps.id not in pool.pipelines


def test_two_pipelines_in_one_pool_overlap(pool: RunspacePool) -> None:
    pool.max_runspaces = 2
    first, second = held_pipeline(pool), PowerShell(pool)
    second.add_cmdlet("Get-VM").add_parameter("Name", "sql01")
    assert _names(second.invoke()) == ["sql01"]  # runs while the first still waits for input
    end_input(first)
    assert _names(first.end_invoke()) == ["web01"]


def test_pipelines_beyond_max_runspaces_wait_their_turn(emu: Emulator) -> None:
    # pypsrp's default pool has MaxRunspaces 1: like Windows, a second pipeline queues behind the first
    # (which holds the runspace while it waits for input) and runs once the first is done.
    with WSMan(operation_timeout=1, **wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
        first, second = held_pipeline(pool), PowerShell(pool)
        second.add_cmdlet("Get-VM").add_parameter("Name", "sql01")
        second.begin_invoke()
        assert pool.get_available_runspaces() == 0
        second.poll_invoke()  # TimedOut: still queued
        assert second.state == PSInvocationState.RUNNING and second.output == []
        end_input(first)
        assert _names(first.end_invoke()) == ["web01"]
        assert _names(second.end_invoke()) == ["sql01"]
        assert pool.get_available_runspaces() == 1


def test_many_concurrent_pools_and_pipelines(emu: Emulator) -> None:
    errors: list[BaseException] = []
    results: list[list[str]] = []

    def client(vm: str) -> None:
        try:
            with WSMan(**wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
                for _ in range(10):
                    ps = PowerShell(pool)
                    ps.add_cmdlet("Get-VM").add_parameter("Name", vm)
                    results.append(_names(ps.invoke()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(VMS[i % len(VMS)],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 80 and all(len(r) == 1 for r in results)


def test_shell_quota_per_user_answers_like_windows(emu: Emulator) -> None:
    opened: list[tuple[WSMan, RunspacePool]] = []
    try:
        while len(opened) < 30:
            wsman = WSMan(**wsman_kwargs(emu, HV))
            pool = RunspacePool(wsman)
            pool.open()
            opened.append((wsman, pool))
        with WSMan(**wsman_kwargs(emu, HV)) as wsman, pytest.raises(WSManFaultError) as info:
            RunspacePool(wsman).open()
        assert info.value.code == 2150859173
        assert "maximum number of 30 concurrent shells" in info.value.reason
        # Another user is not affected; closing one shell frees a slot.
        wsman0, pool0 = opened.pop()
        pool0.close()
        wsman0.close()
        with WSMan(**wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman):
            pass
    finally:
        for wsman, pool in opened:
            pool.close()
            wsman.close()


def test_set_runspaces_and_availability(pool: RunspacePool) -> None:
    # pypsrp sends the call id as <I64 N="CI">; psrpcore reads "ci" - hvsim accepts both.
    pool.max_runspaces = 4
    pool.min_runspaces = 2
    assert pool.max_runspaces == 4 and pool.min_runspaces == 2
    assert pool.get_available_runspaces() == 4
    pool.reset_runspace_state()


def test_get_command_metadata_is_answered_promptly(pool: RunspacePool) -> None:
    start = time.monotonic()
    with pytest.raises(IndexError):  # pypsrp pops the (absent) count object of the failed reply
        pool.get_command_metadata("Get-VM")
    assert time.monotonic() - start < 5
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01")
    assert _names(ps.invoke()) == ["web01"]


def test_ntlm_encrypted_invocations(emu: Emulator) -> None:
    with WSMan(**wsman_kwargs(emu, HV, auth="ntlm")) as wsman, RunspacePool(wsman) as pool:
        for vm in VMS:
            ps = PowerShell(pool)
            ps.add_cmdlet("Get-VM").add_parameter("Name", vm)
            assert _names(ps.invoke()) == [vm]


def test_pipeline_input(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Test-Path")
    out = ps.invoke(input=["C:\\Windows", "C:\\No\\Such\\Dir", "C:\\Windows\\System32\\drivers\\etc\\hosts"])
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    assert out == [True, False, True]


def test_byte_array_parameter_and_output_in_small_envelopes(emu: Emulator) -> None:
    payload = bytes(range(256)) * 480  # 120 KB: many Send fragments and several Receives at 20 KB
    with WSMan(max_envelope_size=20480, **wsman_kwargs(emu, HV)) as wsman, RunspacePool(wsman) as pool:
        write = PowerShell(pool)
        write.add_cmdlet("Set-Content").add_parameter("Path", "C:\\hvsim-bytes.bin")
        write.add_parameter("Value", payload).add_parameter("Encoding", "Byte")
        write.invoke()
        assert not write.had_errors, [str(e) for e in write.streams.error]
        read = PowerShell(pool)
        read.add_cmdlet("Get-Content").add_parameter("Path", "C:\\hvsim-bytes.bin")
        read.add_parameter("Encoding", "Byte").add_parameter("ReadCount", 0)
        out = read.invoke()
        assert not read.had_errors, [str(e) for e in read.streams.error]
        assert out == [payload]


def test_secure_string_parameter_after_key_exchange(pool: RunspacePool) -> None:
    issued = make_host_cert(None, "hv1.contoso.com")
    pfx = issued.pfx("S3cret!")
    upload = PowerShell(pool)
    upload.add_cmdlet("Set-Content").add_parameter("Path", "C:\\hv1.pfx")
    upload.add_parameter("Value", pfx).add_parameter("Encoding", "Byte")
    upload.invoke()
    assert not upload.had_errors

    pool.exchange_keys()
    ps = PowerShell(pool)
    ps.add_cmdlet("Import-PfxCertificate").add_parameter("FilePath", "C:\\hv1.pfx")
    ps.add_parameter("CertStoreLocation", "Cert:\\LocalMachine\\My")
    ps.add_parameter("Password", pool.serialize("S3cret!", ObjectMeta("SS")))
    out = ps.invoke()
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    assert str(out[0].adapted_properties["Thumbprint"]) == issued.thumbprint
