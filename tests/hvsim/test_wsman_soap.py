"""WS-Management envelope behaviour of hvsim: RelatesTo, faults as HTTP 500 with decimal codes, unsupported
actions, the refused cmd shell, unknown shells and the config resource, seen by pypsrp and on the wire."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import RunspacePool
from pypsrp.shell import WinRS
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan

from hvsim.server import Emulator
from hvsim.wsman.soap import parse_duration
from tests.support.hvsim_env import host, lab_config, running_lab, wsman_kwargs

HV = "hv1.contoso.com"
PS_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running_lab(lab_config(host(HV, "127.36.0.11", vms=["web01"]))) as emulator:
        yield emulator


@pytest.fixture
def wsman(emu: Emulator) -> Iterator[WSMan]:
    with WSMan(**wsman_kwargs(emu, HV)) as client:
        yield client


def _raw_post(emu: Emulator, envelope: str) -> requests.Response:
    url = f"https://127.36.0.11:{emu.listener_port(HV)}/wsman"
    return requests.post(
        url,
        data=envelope.encode(),
        auth=("Administrator", "P@ssw0rd!"),
        verify=str(emu.ca_pem_path),
        headers={"Content-Type": "application/soap+xml;charset=UTF-8"},
        timeout=30,
    )


def _envelope(action: str, message_id: str, selectors: str = "", body: str = "") -> str:
    return (
        f'<s:Envelope xmlns:s="{NAMESPACES["s"]}" xmlns:wsa="{NAMESPACES["wsa"]}" '
        f'xmlns:wsman="{NAMESPACES["wsman"]}"><s:Header>'
        f"<wsa:Action>{action}</wsa:Action><wsa:MessageID>{message_id}</wsa:MessageID>"
        f"<wsman:ResourceURI>{PS_URI}</wsman:ResourceURI><wsman:OperationTimeout>PT5S</wsman:OperationTimeout>"
        f"{selectors}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )


def test_fault_is_http_500_with_decimal_code_and_exact_relates_to(emu: Emulator) -> None:
    message_id = f"uuid:{uuid.uuid4()}".lower()  # not upper-cased by the server: RelatesTo is copied verbatim
    selectors = (
        '<wsman:SelectorSet><wsman:Selector Name="ShellId">0000-NOPE</wsman:Selector></wsman:SelectorSet>'
    )
    reply = _raw_post(emu, _envelope(f"{NAMESPACES['rsp']}/Receive", message_id, selectors))
    assert reply.status_code == 500
    root = ET.fromstring(reply.content)
    assert root.findtext("s:Header/wsa:RelatesTo", namespaces=NAMESPACES) == message_id
    assert root.findtext("s:Header/wsa:Action", namespaces=NAMESPACES) == (
        "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
    )
    fault = root.find("s:Body/s:Fault/s:Detail/wsmanfault:WSManFault", namespaces=NAMESPACES)
    assert fault is not None and fault.get("Code") == "2150858843"
    assert (
        root.findtext("s:Body/s:Fault/s:Code/s:Subcode/s:Value", namespaces=NAMESPACES)
        == "w:InvalidSelectors"
    )


def test_success_reply_headers(emu: Emulator) -> None:
    message_id = f"uuid:{str(uuid.uuid4()).upper()}"
    reply = _raw_post(
        emu,
        _envelope(NAMESPACES["wst"] + "/Get", message_id).replace(
            PS_URI, "http://schemas.microsoft.com/wbem/wsman/1/config"
        ),
    )
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/soap+xml")
    root = ET.fromstring(reply.content)
    assert root.findtext("s:Header/wsa:RelatesTo", namespaces=NAMESPACES) == message_id
    assert root.findtext("s:Header/wsa:Action", namespaces=NAMESPACES) == NAMESPACES["wst"] + "/GetResponse"
    assert root.findtext("s:Header/wsa:To", namespaces=NAMESPACES).endswith("/role/anonymous")


def test_unsupported_action_is_action_not_supported(wsman: WSMan) -> None:
    with pytest.raises(WSManFaultError) as info:
        wsman.enumerate("http://schemas.microsoft.com/wbem/wsman/1/windows/shell", None)
    assert info.value.code == 2150858771


def test_cmd_shell_create_is_refused(wsman: WSMan) -> None:
    with pytest.raises(WSManFaultError) as info:
        WinRS(wsman).open()
    assert info.value.code == 2150858770
    assert "PSRP" in info.value.reason


def test_unknown_shell_is_invalid_selectors(wsman: WSMan) -> None:
    selectors = SelectorSet()
    selectors.add_option("ShellId", str(uuid.uuid4()).upper())
    rsp = NAMESPACES["rsp"]
    body = ET.Element(f"{{{rsp}}}Receive")
    ET.SubElement(body, f"{{{rsp}}}DesiredStream").text = "stdout"
    with pytest.raises(WSManFaultError) as info:
        wsman.receive(PS_URI, body, selector_set=selectors)
    assert info.value.code == 0x8033805B
    assert "shell was not found" in info.value.reason


def test_update_max_payload_size_reads_the_config(wsman: WSMan) -> None:
    wsman.update_max_payload_size()
    assert wsman.max_envelope_size == 500 * 1024


def test_operation_timeout_durations() -> None:
    assert parse_duration("PT20S", 1) == 20
    assert parse_duration("PT60.500S", 1) == 60.5
    assert parse_duration("P0DT0H1M5S", 1) == 65
    assert parse_duration("garbage", 7) == 7


def test_malformed_psrp_data_gets_a_fault_not_a_hang_up(wsman: WSMan) -> None:
    rsp = NAMESPACES["rsp"]
    shell = ET.Element(f"{{{rsp}}}Shell", ShellId=str(uuid.uuid4()).upper())
    ET.SubElement(shell, f"{{{rsp}}}InputStreams").text = "stdin pr"
    ET.SubElement(shell, f"{{{rsp}}}OutputStreams").text = "stdout"
    ET.SubElement(
        shell, "{http://schemas.microsoft.com/powershell}creationXml"
    ).text = "AAAAAAAAAAEAAAAAAAAAAAMAAAAF"
    with pytest.raises(WSManFaultError) as info:
        wsman.create(PS_URI, shell)
    assert info.value.code == 2150858770 and "creationXml" in info.value.reason

    pool = RunspacePool(wsman)
    pool.open()
    line = ET.Element(f"{{{rsp}}}CommandLine", CommandId=str(uuid.uuid4()).upper())
    ET.SubElement(line, f"{{{rsp}}}Command")
    ET.SubElement(line, f"{{{rsp}}}Arguments").text = "AAAAAAAAAAEAAAAAAAAAAAMAAAAF"  # a truncated fragment
    selectors = SelectorSet()
    selectors.add_option("ShellId", pool.id)
    with pytest.raises(WSManFaultError) as info:
        wsman.command(PS_URI, line, selector_set=selectors)
    assert info.value.code == 1359
    pool.close()
