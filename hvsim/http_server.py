"""The threading HTTP server under the WinRM listeners and the admin endpoint.

Kept apart from the listeners so the admin CLI client does not import the WinRM stack.
"""

from __future__ import annotations

import logging
import socketserver
from http.server import HTTPServer
from typing import Any

_log = logging.getLogger(__name__)


class QuietHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    """Threading HTTP server for loopback: daemon threads, no reverse DNS at bind, no tracebacks on stderr."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind() does a reverse DNS lookup of the address; not wanted on loopback.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client vanishing mid-request is normal; anything else is visible with debug logging.
        _log.debug("request from %s failed", client_address, exc_info=True)
