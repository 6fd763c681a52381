"""Capture what the real pypsrp client receives from hvsim: every reply envelope (faults included), its
structure as indented element names, and the PSRP messages inside its streams.

    wsman = WSMan(...)
    rec = Recorder(wsman)      # wraps this client's transport
    ...                        # drive pypsrp as usual
    rec.of("Receive")[-1].body # ["rsp:ReceiveResponse", "  rsp:Stream [CommandId,Name]", ...]
"""

from __future__ import annotations

import base64
import re
import struct
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from psrpcore.types import PSRPMessageType
from pypsrp.exceptions import WinRMTransportError
from pypsrp.wsman import WSMan

_PREFIXES = {
    "http://www.w3.org/2003/05/soap-envelope": "s",
    "http://schemas.xmlsoap.org/ws/2004/08/addressing": "a",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer": "x",
    "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd": "w",
    "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd": "p",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell": "rsp",
    "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault": "f",
    "http://schemas.microsoft.com/wbem/wsman/1/config": "cfg",
    "http://www.w3.org/XML/1998/namespace": "xml",
}
NS_RSP = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"


@dataclass
class Exchange:
    action: str  # the request's action, last path segment
    reply: ET.Element
    status: int  # 200, or the HTTP status of a fault

    @property
    def body(self) -> list[str]:
        body = self.reply.find("{http://www.w3.org/2003/05/soap-envelope}Body")
        assert body is not None
        return [line for child in body for line in shape(child)]

    @property
    def header(self) -> list[str]:
        header = self.reply.find("{http://www.w3.org/2003/05/soap-envelope}Header")
        assert header is not None
        return shape(header)

    def streams(self) -> list[tuple[dict[str, str], bytes]]:
        return [
            (dict(s.attrib), base64.b64decode(s.text or "")) for s in self.reply.iter(f"{{{NS_RSP}}}Stream")
        ]


def _qname(tag: str) -> str:
    match = re.fullmatch(r"\{(.*)\}(.*)", tag)
    assert match, f"unqualified element {tag}"
    return f"{_PREFIXES.get(match.group(1), match.group(1))}:{match.group(2)}"


def shape(el: ET.Element, depth: int = 0) -> list[str]:
    attrs = ",".join(sorted(_qname(k) if k.startswith("{") else k for k in el.attrib))
    line = "  " * depth + _qname(el.tag) + (f" [{attrs}]" if attrs else "")
    return [line] + [sub for child in el for sub in shape(child, depth + 1)]


class Recorder:
    """Wraps a pypsrp WSMan's transport and keeps every reply it parsed (faults included)."""

    def __init__(self, wsman: WSMan) -> None:
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        send = wsman.transport.send

        def recording_send(message: bytes, **kwargs: Any) -> bytes:
            action = ET.fromstring(message).findtext(
                ".//{http://schemas.xmlsoap.org/ws/2004/08/addressing}Action"
            )
            name = (action or "").rsplit("/", 1)[-1]
            try:
                reply = send(message, **kwargs)
            except WinRMTransportError as err:
                self._add(Exchange(name, ET.fromstring(err.response_text), err.code))
                raise
            self._add(Exchange(name, ET.fromstring(reply), 200))
            return reply

        wsman.transport.send = recording_send  # type: ignore[method-assign]

    def _add(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def of(self, action: str) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.action == action]

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()


def psrp_messages(exchange: Exchange) -> list[tuple[PSRPMessageType, str]]:
    """The complete PSRP messages of one ReceiveResponse (message type and CLIXML body)."""
    pending: dict[int, bytes] = {}
    messages = []
    for _, data in exchange.streams():
        while data:
            object_id, _fragment_id, flags, length = struct.unpack(">QQBI", data[:21])
            pending[object_id] = pending.get(object_id, b"") + data[21 : 21 + length]
            data = data[21 + length :]
            if flags & 0x2:  # end fragment
                message = pending.pop(object_id)
                kind = PSRPMessageType(struct.unpack("<I", message[4:8])[0])
                messages.append((kind, message[40:].decode("utf-8-sig")))
    return messages
