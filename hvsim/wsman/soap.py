"""WS-Management SOAP envelopes: parsing requests and building replies and faults the way WinRM does."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_MS_WSMAN = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_POWERSHELL = "http://schemas.microsoft.com/powershell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
NS_CONFIG = "http://schemas.microsoft.com/wbem/wsman/1/config"

ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

ACTION_CREATE = f"{NS_TRANSFER}/Create"
ACTION_DELETE = f"{NS_TRANSFER}/Delete"
ACTION_GET = f"{NS_TRANSFER}/Get"
ACTION_COMMAND = f"{NS_SHELL}/Command"
ACTION_SEND = f"{NS_SHELL}/Send"
ACTION_RECEIVE = f"{NS_SHELL}/Receive"
ACTION_SIGNAL = f"{NS_SHELL}/Signal"

# The prefixes WinRM itself uses in its replies.
_REPLY_NAMESPACES = (
    f'xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDRESSING}" xmlns:x="{NS_TRANSFER}" xmlns:w="{NS_WSMAN}" '
    f'xmlns:rsp="{NS_SHELL}" xmlns:p="{NS_MS_WSMAN}"'
)

_DEFAULT_MAX_ENVELOPE = 153600
_DEFAULT_OPERATION_TIMEOUT = 60.0
MAX_OPERATION_TIMEOUT = 60.0  # winrm/config MaxTimeoutms: longer requested timeouts are capped
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class WSManFault(Exception):
    """A WS-Management fault, sent to the client as HTTP 500 (pypsrp only parses faults on non-2xx)."""

    def __init__(
        self,
        code: int,
        subcode: str,
        message: str,
        value: str = "s:Receiver",
        *,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode
        self.message = message
        self.value = value
        self.reason = reason if reason is not None else message  # s:Reason text; WinRM often keeps it generic
        self.detail = detail  # w:FaultDetail URI, as WinRM adds for selector and value faults


_INVALID_SELECTORS_REASON = (
    "The WS-Management service cannot process the request because the request contained invalid selectors "
    "for the resource."
)
_UNEXPECTED_SELECTORS = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"


# Fault codes and messages as a Windows WinRM service sends them (recorded replies end with a space, and the
# TimedOut text with two).
def timed_out() -> WSManFault:
    return WSManFault(
        2150858793,
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified in "
        "OperationTimeout. ",
    )


def shell_not_found(shell_id: str) -> WSManFault:
    return WSManFault(
        2150858843,
        "w:InvalidSelectors",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not "
        "found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer "
        "exists on the server. Provide the correct ShellId or create a new shell and retry the operation.",
        value="s:Sender",
        reason=_INVALID_SELECTORS_REASON,
        detail=_UNEXPECTED_SELECTORS,
    )


def command_not_found() -> WSManFault:
    return WSManFault(
        2150858843,
        "w:InvalidSelectors",
        "The Windows Remote Shell received a request to perform an operation on a command identifier that "
        "does not exist. Either the command has completed execution or the client specified an invalid "
        "command identifier.",
        value="s:Sender",
        reason=_INVALID_SELECTORS_REASON,
        detail=_UNEXPECTED_SELECTORS,
    )


def action_not_supported(action: str) -> WSManFault:
    return WSManFault(
        2150858771,
        "a:ActionNotSupported",
        f"The WS-Management service cannot process the request because the action {action} is not supported.",
        value="s:Sender",
    )


def internal_error(detail: str) -> WSManFault:
    return WSManFault(
        1359,  # ERROR_INTERNAL_ERROR
        "w:InternalError",
        f"The WS-Management service cannot process the request: {detail}",
    )


def invalid_parameter(message: str) -> WSManFault:
    return WSManFault(2150858770, "w:InvalidParameter", message, value="s:Sender")


def quota_max_shells(limit: int) -> WSManFault:
    return WSManFault(
        2150859173,
        "w:QuotaLimit",
        "The WS-Management service cannot process the request. This user is allowed a maximum number of "
        f"{limit} concurrent shells, which has been exceeded. Close existing shells or raise the quota for "
        "this user.",
    )


@dataclass
class Request:
    """The parts of a WS-Management request envelope the server acts on."""

    action: str
    message_id: str
    resource_uri: str
    to: str
    max_envelope_size: int
    operation_timeout: float
    locale: str
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    body: ET.Element | None = None
    client_ip: str = ""  # the peer address, reported back in rsp:Shell/rsp:ClientIP

    @property
    def shell_id(self) -> str | None:
        return self.selectors.get("ShellId")


def parse_duration(text: str | None, default: float) -> float:
    """xs:duration as WinRM's OperationTimeout uses it (PT20S, PT60.000S, P0DT0H1M0S) in seconds."""
    match = _DURATION.match((text or "").strip())
    if not match or not any(match.groups()):
        return default
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_request(data: bytes) -> Request:
    """Parse a SOAP request; a malformed envelope is a client-side (Sender) fault."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise WSManFault(
            2150858817,
            "w:SchemaValidationError",
            f"The SOAP XML in the message is not valid: {exc}",
            "s:Sender",
        ) from None
    header = root.find(f"{{{NS_SOAP}}}Header")
    body = root.find(f"{{{NS_SOAP}}}Body")
    if header is None or body is None:
        raise WSManFault(
            2150858817, "w:SchemaValidationError", "The SOAP envelope has no Header or Body.", "s:Sender"
        )

    def text(ns: str, name: str) -> str:
        el = header.find(f"{{{ns}}}{name}")
        return (el.text or "").strip() if el is not None else ""

    locale_el = header.find(f"{{{NS_WSMAN}}}Locale")
    locale = (
        locale_el.get("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
        if locale_el is not None
        else "en-US"
    )
    selectors = {
        s.get("Name", ""): (s.text or "")
        for s in header.iterfind(f"{{{NS_WSMAN}}}SelectorSet/{{{NS_WSMAN}}}Selector")
    }
    options = {
        o.get("Name", ""): (o.text or "")
        for o in header.iterfind(f"{{{NS_WSMAN}}}OptionSet/{{{NS_WSMAN}}}Option")
    }
    try:
        max_env = int(text(NS_WSMAN, "MaxEnvelopeSize") or _DEFAULT_MAX_ENVELOPE)
    except ValueError:
        max_env = _DEFAULT_MAX_ENVELOPE
    return Request(
        action=text(NS_ADDRESSING, "Action"),
        message_id=text(NS_ADDRESSING, "MessageID"),
        resource_uri=text(NS_WSMAN, "ResourceURI"),
        to=text(NS_ADDRESSING, "To"),
        max_envelope_size=max_env,
        operation_timeout=min(
            parse_duration(text(NS_WSMAN, "OperationTimeout"), _DEFAULT_OPERATION_TIMEOUT),
            MAX_OPERATION_TIMEOUT,
        ),
        locale=locale,
        selectors=selectors,
        options=options,
        body=body[0] if len(body) else None,
    )


def envelope(action: str, relates_to: str, body: str) -> bytes:
    """A reply envelope; RelatesTo repeats the request's MessageID exactly (pypsrp compares it verbatim).

    Header order and the ETW ActivityId (a bare upper-case GUID) are as Windows Server 2016+ sends them.
    """
    return (
        f'<s:Envelope xml:lang="en-US" {_REPLY_NAMESPACES}><s:Header>'
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<p:ActivityId>{str(uuid.uuid4()).upper()}</p:ActivityId>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault_envelope(fault: WSManFault, relates_to: str, machine: str) -> bytes:
    message = escape(fault.message + " ")
    detail = element("w:FaultDetail", fault.detail) if fault.detail else ""
    body = (
        f"<s:Fault><s:Code><s:Value>{fault.value}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value>"
        f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escape(fault.reason + " ")}</s:Text>'
        f"</s:Reason><s:Detail>{detail}"
        f'<f:WSManFault xmlns:f="{NS_FAULT}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{message}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return envelope(FAULT_ACTION, relates_to, body)


def element(tag: str, text: str = "", **attrs: str) -> str:
    """A small escaped XML element for reply bodies."""
    attr = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<{tag}{attr}>{escape(text)}</{tag}>"
