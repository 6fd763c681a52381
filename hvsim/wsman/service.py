"""The WS-Management service of one emulated host: dispatches SOAP actions to its PSRP shells."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

from hvsim.wsman import soap
from hvsim.wsman.psrp import Executor, Shell, ShellTable
from hvsim.wsman.soap import NS_POWERSHELL, NS_SHELL, Request, WSManFault, element

_log = logging.getLogger(__name__)

POWERSHELL_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
CMD_SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
MAX_ENVELOPE_SIZE_KB = 500  # observed default on Server 2012 R2 and later
_SIGNAL_TERMINATE = "signal/terminate"
_SIGNAL_CTRL_C = ("powershell/signal/crtl_c", "powershell/signal/ctrl_c")  # PowerShell spells it "crtl_c"


class WSManService:
    """Handles authenticated SOAP requests for one host."""

    def __init__(
        self,
        machine: str,
        executor: Executor,
        on_pipeline: Callable[[], None],
        on_pool_opened: Callable[[], None],
    ) -> None:
        self.machine = machine
        self.shells = ShellTable()
        self._executor = executor
        self._on_pipeline = on_pipeline
        self._on_pool_opened = on_pool_opened

    def handle(self, request: Request, user: str) -> bytes:
        """The reply envelope for `request`; faults are rendered as fault envelopes (sent with HTTP 500)."""
        handler = self._handlers().get(request.action)
        if handler is None:
            raise soap.action_not_supported(request.action)
        try:
            body = handler(request, user)
        except WSManFault:
            raise
        except Exception as exc:  # malformed PSRP data or an emulator bug: answer, never hang up
            _log.debug("%s failed", request.action, exc_info=True)
            raise soap.internal_error(f"{type(exc).__name__}: {exc}") from None
        return soap.envelope(request.action + "Response", request.message_id, body)

    def _handlers(self) -> dict[str, Callable[[Request, str], str]]:
        return {
            soap.ACTION_CREATE: self._create,
            soap.ACTION_DELETE: self._delete,
            soap.ACTION_GET: self._get,
            soap.ACTION_COMMAND: self._command,
            soap.ACTION_SEND: self._send,
            soap.ACTION_RECEIVE: self._receive,
            soap.ACTION_SIGNAL: self._signal,
        }

    # --- WS-Transfer ---
    def _create(self, request: Request, user: str) -> str:
        if request.resource_uri.lower() == CMD_SHELL_URI:
            raise soap.invalid_parameter(
                "The WS-Management service cannot process the request: this host does not allow the cmd "
                "shell (winrs). hvsim executes PowerShell cmdlets over PSRP only."
            )
        if not request.resource_uri.startswith(POWERSHELL_URI_PREFIX):
            raise soap.invalid_parameter(
                "The WS-Management service cannot process the request. The resource URI "
                f"{request.resource_uri} was not found in the WS-Management catalog."
            )
        body = request.body
        if body is None or body.tag != f"{{{NS_SHELL}}}Shell":
            raise soap.invalid_parameter("The Create request must carry an rsp:Shell element.")
        creation = body.find(f"{{{NS_POWERSHELL}}}creationXml")
        shell_id = (body.get("ShellId") or str(uuid.uuid4())).upper()
        shell = Shell(shell_id, user, self._executor, self._on_pipeline)
        self.shells.add(shell)
        try:
            shell.open(_b64(creation.text if creation is not None else ""))
        except WSManFault:
            self.shells.remove(shell_id)
            raise
        except Exception as exc:
            self.shells.remove(shell_id)
            raise soap.invalid_parameter(
                f"The shell's creationXml is not a PSRP negotiation: {exc}"
            ) from None
        self._on_pool_opened()
        return (
            "<x:ResourceCreated>"
            + element("a:Address", request.to)
            + "<a:ReferenceParameters>"
            + element("w:ResourceURI", request.resource_uri)
            + "<w:SelectorSet>"
            + element("w:Selector", shell_id, Name="ShellId")
            + "</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
            + _shell_info(shell, request)
        )

    def _delete(self, request: Request, user: str) -> str:
        self.shells.remove(request.shell_id or "")
        return ""

    def _get(self, request: Request, user: str) -> str:
        if request.resource_uri.lower().startswith(CONFIG_URI):
            # pypsrp's update_max_payload_size() reads MaxEnvelopeSizekb from here.
            return (
                f'<cfg:Config xmlns:cfg="{soap.NS_CONFIG}">'
                + element("cfg:MaxEnvelopeSizekb", str(MAX_ENVELOPE_SIZE_KB))
                + element("cfg:MaxTimeoutms", "60000")
                + element("cfg:MaxBatchItems", "32000")
                + "</cfg:Config>"
            )
        return _shell_info(self.shells.get(request.shell_id), request)

    # --- shell actions ---
    def _command(self, request: Request, user: str) -> str:
        shell = self.shells.get(request.shell_id)
        line = request.body
        if line is None or line.tag != f"{{{NS_SHELL}}}CommandLine":
            raise soap.invalid_parameter("The Command request must carry an rsp:CommandLine element.")
        command_id = (line.get("CommandId") or str(uuid.uuid4())).upper()
        arguments = line.find(f"{{{NS_SHELL}}}Arguments")
        shell.command(command_id, _b64(arguments.text if arguments is not None else ""))
        return "<rsp:CommandResponse>" + element("rsp:CommandId", command_id) + "</rsp:CommandResponse>"

    def _send(self, request: Request, user: str) -> str:
        shell = self.shells.get(request.shell_id)
        body = _require(request.body, "Send")
        for stream in body.iterfind(f"{{{NS_SHELL}}}Stream"):
            shell.send(_b64(stream.text), stream.get("CommandId"), stream.get("Name") == "pr")
        return "<rsp:SendResponse/>"

    def _receive(self, request: Request, user: str) -> str:
        shell = self.shells.get(request.shell_id)
        desired = _require(request.body, "Receive").find(f"{{{NS_SHELL}}}DesiredStream")
        command_id = desired.get("CommandId") if desired is not None else None
        result = shell.receive(command_id, request.max_envelope_size, request.operation_timeout)
        attrs = {"CommandId": command_id} if command_id else {}
        parts = ["<rsp:ReceiveResponse>"]
        parts += [
            element("rsp:Stream", base64.b64encode(f).decode(), Name="stdout", **attrs)
            for f in result.fragments
        ]
        if command_id:
            state = "Done" if result.done else "Running"
            parts.append(
                f'<rsp:CommandState CommandId="{command_id}" State="{NS_SHELL}/CommandState/{state}">'
                + (element("rsp:ExitCode", "0") if result.done else "")
                + "</rsp:CommandState>"
            )
        parts.append("</rsp:ReceiveResponse>")
        return "".join(parts)

    def _signal(self, request: Request, user: str) -> str:
        shell = self.shells.get(request.shell_id)
        body = _require(request.body, "Signal")
        command_id = body.get("CommandId")
        code_el = body.find(f"{{{NS_SHELL}}}Code")
        code = (code_el.text or "").strip().lower() if code_el is not None else ""
        if not command_id:
            raise soap.invalid_parameter("The Signal request must name a CommandId.")
        if code.endswith(_SIGNAL_CTRL_C):
            shell.signal_stop(command_id)
        elif code.endswith(_SIGNAL_TERMINATE):
            shell.signal_terminate(command_id)
        else:
            raise soap.invalid_parameter(f"The signal code {code} is not supported by this shell.")
        return "<rsp:SignalResponse/>"


def _require(body: ET.Element | None, action: str) -> ET.Element:
    if body is None:
        raise soap.invalid_parameter(f"The {action} request has an empty body.")
    return body


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode((text or "").strip(), validate=True)
    except binascii.Error:
        raise soap.invalid_parameter("The stream data is not valid base64.") from None


def _shell_info(shell: Shell, request: Request) -> str:
    return (
        f'<rsp:Shell xmlns:rsp="{NS_SHELL}">'
        + element("rsp:ShellId", shell.id)
        + element("rsp:ResourceUri", request.resource_uri)
        + element("rsp:Owner", shell.owner)
        + element("rsp:IdleTimeOut", "PT7200.000S")
        + element("rsp:InputStreams", "stdin pr")
        + element("rsp:OutputStreams", "stdout")
        + element("rsp:MaxIdleTimeOut", "PT2147483.647S")
        + element("rsp:Locale", request.locale)
        + element("rsp:DataLocale", request.locale)
        + element("rsp:CompressionMode", "NoCompression")
        + element("rsp:ProfileLoaded", "Yes")
        + element("rsp:Encoding", "UTF8")
        + element("rsp:BufferMode", "Block")
        + element("rsp:State", "Connected")
        + "</rsp:Shell>"
    )
