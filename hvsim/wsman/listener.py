"""The WinRM HTTP(S) listener: a threading HTTP/1.1 keep-alive server in front of a host's WSManService.

Each reply goes out in one send() with Content-Length and TCP_NODELAY: Python's http.server writes headers
and body separately, which with Nagle and delayed ACKs stalls every request by ~45 ms. TLS handshakes run on
the per-connection thread, not the accept loop.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import spnego.exceptions
from pypsrp.encryption import WinRMEncryption

from hvsim.config import HostConfig
from hvsim.faults import HostFaults
from hvsim.http_server import QuietHTTPServer
from hvsim.listener_tls import client_certificate_user
from hvsim.wsman import auth, soap
from hvsim.wsman.psrp import deferred_starts
from hvsim.wsman.service import WSManService

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # far above the 500 KB MaxEnvelopeSize the service advertises
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_IDLE_TIMEOUT = 120.0


@dataclass
class ListenerSetup:
    host: HostConfig
    service: WSManService
    faults: HostFaults
    tls: ssl.SSLContext | None  # None: plain HTTP with Negotiate and message encryption
    ntlm_user_file: Path | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.negotiate: auth.NegotiateAcceptor | None = None
        self.cert_user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._reply(405, b"", {})

    def do_POST(self) -> None:
        setup = self.server.setup
        setup.faults.count("http_requests")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._reply(413, b"", {})
            return
        body = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self._reply(404, b"", {})
            return
        if setup.tls is not None:
            user = self._https_user()
            if user is None:
                self._reply(401, b"", {"WWW-Authenticate": ['Basic realm="WSMAN"']})
                return
            self._serve(user, body, None)
        else:
            self._http_negotiate(body)

    # --- authentication ---
    def _https_user(self) -> str | None:
        setup = self.server.setup
        header = self.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            return auth.check_basic(setup.host, header)
        if header.strip() == auth.MUTUAL_CERTIFICATE_AUTH:
            if self.cert_user is None:
                assert isinstance(self.connection, ssl.SSLSocket)
                der = self.connection.getpeercert(binary_form=True)
                name = client_certificate_user(der) if der else None
                self.cert_user = auth.local_user(setup.host, name) if name else None
            return self.cert_user
        return None

    def _http_negotiate(self, body: bytes) -> None:
        setup = self.server.setup
        token = auth.parse_negotiate_header(self.headers.get("Authorization", ""))
        if token is not None:
            assert setup.ntlm_user_file is not None
            try:
                if self.negotiate is None or self.negotiate.context.complete:
                    self.negotiate = auth.NegotiateAcceptor(setup.host, setup.ntlm_user_file)
                out = self.negotiate.step(token)
            except (spnego.exceptions.SpnegoError, PermissionError):
                self.negotiate = None
                self._reply(401, b"", {"WWW-Authenticate": ["Negotiate"]})
                return
            header = {"WWW-Authenticate": [f"Negotiate {_b64(out)}"]} if out else {}
            if not self.negotiate.complete:
                self._reply(401, b"", header)
                return
            if not body:
                self._reply(200, b"", header)
                return
        if self.negotiate is None or not self.negotiate.complete:
            # A default Windows host offers no Basic on HTTP (AllowUnencrypted=false): Negotiate/Kerberos.
            self._reply(401, b"", {"WWW-Authenticate": ["Negotiate", "Kerberos"]})
            return
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/encrypted"):
            self._reply(400, b"", {})  # AllowUnencrypted=false: plain SOAP over HTTP is refused
            return
        match = _BOUNDARY.search(content_type)
        encryption = WinRMEncryption(self.negotiate.context, WinRMEncryption.SPNEGO)
        try:
            plain = encryption.unwrap_message(body, match.group(1) if match else "Encrypted Boundary")
        except Exception:
            self._reply(400, b"", {})
            return
        assert self.negotiate.user is not None
        self._serve(self.negotiate.user, plain, encryption)

    # --- WS-Management ---
    def _serve(self, user: str, body: bytes, encryption: WinRMEncryption | None) -> None:
        setup = self.server.setup
        decision = setup.faults.next_request()
        if decision.delay:
            time.sleep(decision.delay)
        if decision.drop:
            self._drop()
            return
        message_id = ""
        with deferred_starts() as workers:
            try:
                request = soap.parse_request(body)
                request.client_ip = self.client_address[0]
                message_id = request.message_id
                if decision.fault is not None:
                    raise decision.fault
                status, reply = 200, setup.service.handle(request, user)
            except soap.WSManFault as fault:
                status, reply = 500, soap.fault_envelope(fault, message_id, setup.host.fqdn)
        try:
            if encryption is None:
                self._reply(status, reply, {"Content-Type": ["application/soap+xml;charset=UTF-8"]})
            else:
                content_type, payload = encryption.wrap_message(reply)
                header = f'{content_type};protocol="{encryption.protocol}";boundary="Encrypted Boundary"'
                self._reply(status, payload, {"Content-Type": [header]})
        finally:
            for worker in workers:  # pipelines start once their Command reply is on the wire
                worker.start()

    def _drop(self) -> None:
        """Close the TCP connection without a reply (the client sees a connection error)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _reply(self, status: int, body: bytes, headers: dict[str, list[str]]) -> None:
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Content-Length: {len(body)}",
        ]
        for name, values in headers.items():
            lines += [f"{name}: {v}" for v in values]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _Server(QuietHTTPServer):
    def __init__(self, address: tuple[str, int], setup: ListenerSetup) -> None:
        self.setup = setup
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs on the connection's own thread: the TLS handshake happens here, not on the accept loop.
        if self.setup.tls is not None:
            try:
                request.settimeout(_IDLE_TIMEOUT)
                request = self.setup.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return
        with self._conn_lock:
            self._connections.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Listener:
    """One WinRM listener (address, port) serving one host."""

    def __init__(self, address: str, port: int, setup: ListenerSetup) -> None:
        self.address = address
        self.port = port
        self.setup = setup
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.setup.tls is not None else "http"

    def start(self) -> None:
        try:
            self._server = _Server((self.address, self.port), self.setup)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen on {self.address}:{self.port} for the {self.scheme} WinRM listener of "
                f"{self.setup.host.fqdn}: {exc.strerror}; free the port or change it in the config",
            ) from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"winrm-{self.address}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
