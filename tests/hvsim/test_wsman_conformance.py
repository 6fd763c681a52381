"""Wire conformance: the envelopes hvsim sends, as the real pypsrp client receives them, have the structure of
the real-Windows exchanges recorded in pypsrp's test suite (jborean93/pypsrp tests/tests_pypsrp/responses:
test_psrp_open_runspace, _long_running_cmdlet, _key_exchange_timeout, _set_runspaces, _small_msg_size,
_with_input, _error_failed, _receive_failure, _is_alive_*, test_wsman_update_envelope_size_*).

Structure means element names, namespaces, order and attribute names - never GUIDs or timings. The expected
shapes below were transcribed from those recordings; each reply is captured by wrapping the client's own
transport, so it is exactly what pypsrp parsed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from psrpcore.types import PSRPMessageType
from pypsrp.exceptions import InvalidPSRPOperation, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.shell import Process, WinRS
from pypsrp.wsman import SelectorSet, WSMan

from hvsim.server import Emulator
from tests.support.hvsim_env import end_input, held_pipeline, host, lab_config, running_lab, wsman_kwargs
from tests.support.wsman_wire import NS_RSP, NS_SOAP, Recorder, psrp_messages

HV = "hv1.contoso.com"
PS_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
ADDRESS = "127.37.0.11"

# --- shapes transcribed from the recordings -------------------------------------------------------------
HEADER = ["s:Header", "  a:Action", "  a:MessageID", "  p:ActivityId", "  a:To", "  a:RelatesTo"]
SHELL_INFO = [
    "rsp:ShellId",
    "rsp:ResourceUri",
    "rsp:Owner",
    "rsp:ClientIP",
    "rsp:ProcessId",
    "rsp:IdleTimeOut",
    "rsp:InputStreams",
    "rsp:OutputStreams",
    "rsp:MaxIdleTimeOut",
    "rsp:Locale",
    "rsp:DataLocale",
    "rsp:CompressionMode",
    "rsp:ProfileLoaded",
    "rsp:Encoding",
    "rsp:BufferMode",
    "rsp:State",
    "rsp:ShellRunTime",
    "rsp:ShellInactivity",
]
CREATE_BODY = [
    "x:ResourceCreated",
    "  a:Address",
    "  a:ReferenceParameters",
    "    w:ResourceURI",
    "    w:SelectorSet",
    "      w:Selector [Name]",
    "rsp:Shell",
    *(f"  {name}" for name in SHELL_INFO),
]
GET_SHELL_BODY = ["rsp:Shell", *(f"  {n}" for n in SHELL_INFO), "  rsp:MemoryUsed", "  rsp:ChildProcesses"]
FAULT_BODY = [
    "s:Fault",
    "  s:Code",
    "    s:Value",
    "    s:Subcode",
    "      s:Value",
    "  s:Reason",
    "    s:Text [xml:lang]",
    "  s:Detail",
    "    f:WSManFault [Code,Machine]",
    "      f:Message",
]
FAULT_WITH_DETAIL_BODY = [*FAULT_BODY[:8], "    w:FaultDetail", *FAULT_BODY[8:]]
DONE = ["  rsp:CommandState [CommandId,State]", "    rsp:ExitCode"]
_AUTH = ["Basic", "Digest", "Kerberos", "Negotiate", "Certificate", "CredSSP"]
CONFIG_BODY = [
    "cfg:Config",
    *(
        f"  cfg:{n}"
        for n in ("MaxEnvelopeSizekb", "MaxTimeoutms", "MaxBatchItems", "MaxProviderRequests", "Client")
    ),
    *(f"    cfg:{n}" for n in ("NetworkDelayms", "URLPrefix", "AllowUnencrypted", "Auth")),
    *(f"      cfg:{n}" for n in _AUTH),
    "    cfg:DefaultPorts",
    "      cfg:HTTP",
    "      cfg:HTTPS",
    "    cfg:TrustedHosts",
    "  cfg:Service",
    *(
        f"    cfg:{n}"
        for n in (
            "RootSDDL",
            "MaxConcurrentOperations",
            "MaxConcurrentOperationsPerUser",
            "EnumerationTimeoutms",
            "MaxConnections",
            "MaxPacketRetrievalTimeSeconds",
            "AllowUnencrypted",
            "Auth",
        )
    ),
    *(
        f"      cfg:{n}"
        for n in ("Basic", "Kerberos", "Negotiate", "Certificate", "CredSSP", "CbtHardeningLevel")
    ),
    "    cfg:DefaultPorts",
    "      cfg:HTTP",
    "      cfg:HTTPS",
    *(
        f"    cfg:{n}"
        for n in (
            "IPv4Filter",
            "IPv6Filter",
            "EnableCompatibilityHttpListener",
            "EnableCompatibilityHttpsListener",
            "CertificateThumbprint",
            "AllowRemoteAccess",
        )
    ),
    "  cfg:Winrs",
    *(
        f"    cfg:{n}"
        for n in (
            "AllowRemoteShellAccess",
            "IdleTimeout",
            "MaxConcurrentUsers",
            "MaxShellRunTime",
            "MaxProcessesPerShell",
            "MaxMemoryPerShellMB",
            "MaxShellsPerUser",
        )
    ),
]
# PSVersionTable keys of Windows PowerShell 5.1 (test_psrp_open_runspace), with the table's type names.
PS_VERSION_TABLE_KEYS = {
    "PSVersion",
    "PSEdition",
    "PSCompatibleVersions",
    "CLRVersion",
    "BuildVersion",
    "WSManStackVersion",
    "PSRemotingProtocolVersion",
    "SerializationVersion",
}


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running_lab(lab_config(host(HV, ADDRESS, vms=["web01", "sql01"]))) as emulator:
        yield emulator


@pytest.fixture
def wire(emu: Emulator) -> Iterator[tuple[WSMan, Recorder]]:
    with WSMan(**wsman_kwargs(emu, HV, operation_timeout=1)) as wsman:
        yield wsman, Recorder(wsman)


# --- tests -----------------------------------------------------------------------------------------------
def test_open_runspace_and_close(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        (create,) = rec.of("Create")
        assert create.header == HEADER
        assert create.body == CREATE_BODY
        assert create.reply.findtext(f".//{{{NS_RSP}}}ClientIP") == "127.0.0.1"  # where the client came from
        assert create.reply.findtext(f".//{{{NS_RSP}}}IdleTimeOut") == "PT7200.000S"
        receives = rec.of("Receive")
        kinds = [kind for r in receives for kind, _ in psrp_messages(r)]
        assert kinds == [
            PSRPMessageType.SessionCapability,
            PSRPMessageType.ApplicationPrivateData,
            PSRPMessageType.RunspacePoolState,
        ]
        assert all(r.body[0] == "rsp:ReceiveResponse" and r.header == HEADER for r in receives)
        assert {line.strip() for r in receives for line in r.body[1:]} == {"rsp:Stream [Name]"}
        table = pool.application_private_data.data["PSVersionTable"]
        assert set(table) == PS_VERSION_TABLE_KEYS
        assert str(table["PSVersion"]) == "5.1.20348.1" and table["PSEdition"] == "Desktop"
        (private_data,) = [
            body
            for r in receives
            for kind, body in psrp_messages(r)
            if kind == PSRPMessageType.ApplicationPrivateData
        ]
        assert "<T>System.Version[]</T>" in private_data
        assert private_data.count("<T>System.Management.Automation.PSPrimitiveDictionary</T>") == 1
    (delete,) = rec.of("Delete")
    assert delete.header == HEADER and delete.body == []


def test_is_alive_get_then_invalid_selectors_after_close(emu: Emulator, wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    pool = RunspacePool(wsman)
    pool.open()
    assert pool.is_alive()
    (get,) = rec.of("Get")
    assert get.body == GET_SHELL_BODY
    shell_id = pool.id
    pool.close()
    rec.clear()
    with pytest.raises(WSManFaultError) as info:
        wsman.get(PS_URI, None, _shell_selector(shell_id))
    (fault,) = rec.of("Get")
    assert fault.status == 500 and fault.body == FAULT_WITH_DETAIL_BODY
    assert info.value.code == 2150858843
    assert fault.reply.findtext(f".//{{{NS_SOAP}}}Subcode/*") == "w:InvalidSelectors"
    assert fault.reply.findtext(".//{http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd}FaultDetail") == (
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"
    )


def _shell_selector(shell_id: Any) -> SelectorSet:
    selectors = SelectorSet()
    selectors.add_option("ShellId", str(shell_id).upper())
    return selectors


def test_command_and_final_receive(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        rec.clear()
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM")
        assert len(ps.invoke()) == 2
    (command,) = rec.of("Command")
    assert command.header == HEADER and command.body == ["rsp:CommandResponse", "  rsp:CommandId"]
    (receive,) = rec.of("Receive")
    assert receive.body == ["rsp:ReceiveResponse", *["  rsp:Stream [CommandId,Name]"] * 3, *DONE]
    state = receive.reply.find(f".//{{{NS_RSP}}}CommandState")
    assert state is not None and state.get("State", "").endswith("/windows/shell/CommandState/Done")
    assert state.findtext(f"{{{NS_RSP}}}ExitCode") == "0"
    kinds = [kind for kind, _ in psrp_messages(receive)]
    assert kinds == [PSRPMessageType.PipelineOutput] * 2 + [PSRPMessageType.PipelineState]


def test_timed_out_receive_sequence(emu: Emulator, wire: tuple[WSMan, Recorder]) -> None:
    # test_psrp_long_running_cmdlet: Receive -> TimedOut fault (HTTP 500), Receive again -> output and Done.
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        ps = held_pipeline(pool)
        rec.clear()
        ps.poll_invoke()
        (fault,) = rec.of("Receive")
        assert fault.status == 500
        assert fault.header == HEADER and fault.body == FAULT_BODY
        reason = fault.reply.findtext(f".//{{{NS_SOAP}}}Text")
        assert reason == (
            "The WS-Management service cannot complete the operation within the time specified in "
            "OperationTimeout.  "
        )
        code = fault.reply.find(".//{http://schemas.microsoft.com/wbem/wsman/1/wsmanfault}WSManFault")
        assert code is not None and code.get("Code") == "2150858793" and code.get("Machine") == HV
        end_input(ps)
        assert len(ps.end_invoke()) == 1
        final = rec.of("Receive")[-1]
        assert final.status == 200 and final.body[-2:] == DONE


def test_non_final_receives_carry_no_command_state(emu: Emulator) -> None:
    # test_psrp_small_msg_size: with a small envelope, output spans several Receives; only the last says Done.
    with WSMan(**wsman_kwargs(emu, HV, max_envelope_size=8192)) as wsman, RunspacePool(wsman) as pool:
        rec = Recorder(wsman)
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM")
        assert len(ps.invoke()) == 2
        receives = rec.of("Receive")
        assert len(receives) > 1
        for receive in receives[:-1]:
            assert receive.body[0] == "rsp:ReceiveResponse"
            assert set(receive.body[1:]) == {"  rsp:Stream [CommandId,Name]"}
        assert receives[-1].body[-2:] == DONE
        assert all(len(ET.tostring(r.reply)) <= 8192 for r in receives)


def test_update_envelope_size_reads_the_config_tree(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    wsman.update_max_payload_size()
    (get,) = rec.of("Get")
    assert get.header == HEADER and get.body == CONFIG_BODY
    assert wsman.max_envelope_size == 512000
    config = get.reply.find(".//{http://schemas.microsoft.com/wbem/wsman/1/config}Winrs")
    assert config is not None
    assert config.findtext("{http://schemas.microsoft.com/wbem/wsman/1/config}MaxShellsPerUser") == "30"


def test_key_exchange_send_and_receive(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        rec.clear()
        pool.exchange_keys()
        (send,) = rec.of("Send")
        assert send.header == HEADER and send.body == ["rsp:SendResponse"]
        (receive,) = rec.of("Receive")
        assert [k for k, _ in psrp_messages(receive)] == [PSRPMessageType.EncryptedSessionKey]
        assert receive.body == ["rsp:ReceiveResponse", "  rsp:Stream [Name]"]


def test_set_runspaces_answers_like_windows(wire: tuple[WSMan, Recorder]) -> None:
    # test_psrp_set_runspaces: availability is an I32 count, set-min/max a B that is false for invalid values.
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        rec.clear()
        assert pool.get_available_runspaces() == 1
        pool.max_runspaces = 5
        assert pool.get_available_runspaces() == 5
        pool.min_runspaces = 2
        with pytest.raises(InvalidPSRPOperation):
            pool.min_runspaces = -1
        with pytest.raises(InvalidPSRPOperation):
            pool.max_runspaces = -1
        with pytest.raises(InvalidPSRPOperation):
            pool.min_runspaces = 6  # above the maximum
        assert (pool.min_runspaces, pool.max_runspaces) == (2, 5)
        bodies = [body for r in rec.of("Receive") for _, body in psrp_messages(r)]
        assert (
            bodies[0]
            == '<Obj RefId="0"><MS><I32 N="SetMinMaxRunspacesResponse">1</I32><I64 N="ci">0</I64></MS></Obj>'
        )
        assert sum('<B N="SetMinMaxRunspacesResponse">false</B>' in b for b in bodies) == 3


def test_with_input_send_shape(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        rec.clear()
        ps = PowerShell(pool)
        ps.add_cmdlet("Test-Path")
        assert ps.invoke(["C:\\Windows", "C:\\No\\Such"]) == [True, False]
        sends = rec.of("Send")
        assert sends and all(s.body == ["rsp:SendResponse"] for s in sends)


def test_error_failed_state_carries_the_error_record(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        rec.clear()
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", "nope").add_parameter("ErrorAction", "Stop")
        ps.invoke()
        assert ps.had_errors
        (receive,) = rec.of("Receive")
        assert receive.body[-2:] == DONE  # a failed pipeline still ends with CommandState Done, ExitCode 0
        kind, body = psrp_messages(receive)[-1]
        assert kind == PSRPMessageType.PipelineState
        record = ET.fromstring(body).find("./MS/Obj[@N='ExceptionAsErrorRecord']")
        assert record is not None
        assert [t.text for t in record.iterfind("TN/T")] == [
            "System.Management.Automation.ErrorRecord",
            "System.Object",
        ]
        members = [m.get("N") for m in record.find("MS") or []]
        for name in (
            "Exception",
            "TargetObject",
            "FullyQualifiedErrorId",
            "InvocationInfo",
            "ErrorCategory_Category",
            "ErrorCategory_Activity",
            "ErrorCategory_Reason",
            "ErrorCategory_TargetName",
            "ErrorCategory_TargetType",
            "ErrorCategory_Message",
            "SerializeExtendedInfo",
        ):
            assert name in members
        assert record.findtext("ToString") == str(ps.streams.error[0])


def test_receive_for_unknown_command_is_invalid_selectors(wire: tuple[WSMan, Recorder]) -> None:
    # test_psrp_receive_failure: the command id is not (or no longer) known to the shell.
    wsman, rec = wire
    with RunspacePool(wsman) as pool:
        rec.clear()
        with pytest.raises(WSManFaultError) as info:
            pool.shell.receive("stdout", command_id="6F1903CA-E06A-4A8B-BDFC-B44203149D55")
        (fault,) = rec.of("Receive")
        assert fault.status == 500 and fault.body == FAULT_WITH_DETAIL_BODY
        assert info.value.code == 2150858843
        assert info.value.reason.startswith(
            "The Windows Remote Shell received a request to perform an operation on a command identifier"
        )
        soap_reason = fault.reply.findtext(f".//{{{NS_SOAP}}}Text") or ""
        assert soap_reason.startswith("The WS-Management service cannot process the request because")


def test_winrs_cmd_shell_create_is_a_sender_fault(wire: tuple[WSMan, Recorder]) -> None:
    wsman, rec = wire
    with pytest.raises(WSManFaultError) as info, WinRS(wsman) as shell:
        Process(shell, "whoami").invoke()
    assert info.value.code == 2150858770
    (fault,) = rec.of("Create")
    assert fault.status == 500 and fault.header == HEADER and fault.body[0] == "s:Fault"
