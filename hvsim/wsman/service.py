"""The WS-Management service of one emulated host: dispatches SOAP actions to its PSRP shells."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from hvsim.wsman import soap
from hvsim.wsman.psrp import Executor, Shell, ShellTable
from hvsim.wsman.soap import NS_POWERSHELL, NS_SHELL, Request, WSManFault, element
from hvsim.wsman.winrm_config import config_body

_log = logging.getLogger(__name__)

POWERSHELL_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
CMD_SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
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
        private_data: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.machine = machine
        self.shells = ShellTable()
        self._private_data = private_data
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
        private_data = self._private_data() if self._private_data is not None else None
        shell = Shell(shell_id, user, self._executor, self._on_pipeline, private_data)
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
            + _shell_info(shell, request, with_usage=False)
        )

    def _delete(self, request: Request, user: str) -> str:
        self.shells.remove(request.shell_id or "")
        return ""

    def _get(self, request: Request, user: str) -> str:
        if request.resource_uri.lower().startswith(CONFIG_URI):
            return config_body()  # pypsrp's update_max_payload_size() reads MaxEnvelopeSizekb here
        return _shell_info(self.shells.get(request.shell_id), request, with_usage=True)

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
        if command_id and result.done:
            # Windows reports CommandState only once the pipeline is done (Running appears only around host
            # calls, which hvsim never makes).
            parts.append(
                f'<rsp:CommandState CommandId="{command_id}" State="{NS_SHELL}/CommandState/Done">'
                + element("rsp:ExitCode", "0")
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


def _duration(seconds: float) -> str:
    """xs:duration the way WinRM writes shell times: P0DT0H0M12S."""
    whole = int(seconds)
    return f"P{whole // 86400}DT{whole // 3600 % 24}H{whole // 60 % 60}M{whole % 60}S"


# The process id a Windows host reports is its wsmprovhost.exe; this process plays that part.
_PROVIDER_HOST_PID = str(os.getpid())


def _shell_info(shell: Shell, request: Request, *, with_usage: bool) -> str:
    """rsp:Shell as WinRM describes a PowerShell shell; a Get adds memory and child-process usage."""
    now = time.monotonic()
    usage = (element("rsp:MemoryUsed", "58MB") + element("rsp:ChildProcesses", "0")) if with_usage else ""
    return (
        f'<rsp:Shell xmlns:rsp="{NS_SHELL}">'
        + element("rsp:ShellId", shell.id)
        + element("rsp:ResourceUri", request.resource_uri)
        + element("rsp:Owner", shell.owner)
        + element("rsp:ClientIP", request.client_ip)
        + element("rsp:ProcessId", _PROVIDER_HOST_PID)
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
        + element("rsp:ShellRunTime", _duration(now - shell.created))
        + element("rsp:ShellInactivity", _duration(now - shell.last_used))
        + usage
        + "</rsp:Shell>"
    )
