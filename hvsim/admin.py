"""The admin endpoint: a small JSON-over-HTTP API on a loopback address, for tests and the CLI.

Every call is `POST /admin` with a JSON object `{"op": ..., "host": <fqdn>, ...}`; the reply is
`{"ok": true, "result": ...}` or, with HTTP 400/404, `{"ok": false, "error": "<what to change>"}`.

    op            extra fields          result
    add-vm        name                  what was done (a sentence)
    remove-vm     name                  what was done
    stop-vm       name                  what was done
    start-vm      name                  what was done
    dump          section (optional)    the host's state (JSON), or one section of it (DUMP_SECTIONS)
    fault         kind, value           what was done (kind: latency | drop-nth | http500 | restart-vmms)
    clear-faults                        what was done
    counters                            {"http_requests": n, "pipelines": n, "pools_opened": n}
"""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from hvsim.http_server import QuietHTTPServer

OPS = ("add-vm", "remove-vm", "stop-vm", "start-vm", "dump", "fault", "clear-faults", "counters")
# The parts of a host `dump --section` shows on their own; `hosts` is the hosts file's text.
DUMP_SECTIONS = ("vms", "replication", "certificates", "registry", "firewall", "hosts")


class Emulator(Protocol):
    """The operations the endpoint serves. `hvsim.server.Emulator` provides them; it sits above this
    module (it starts the endpoint), so this module names only what it calls."""

    def add_vm(self, fqdn: str, name: str) -> None: ...

    def remove_vm(self, fqdn: str, name: str) -> None: ...

    def stop_vm(self, fqdn: str, name: str) -> None: ...

    def start_vm(self, fqdn: str, name: str) -> None: ...

    def dump_host(self, fqdn: str) -> dict[str, Any]: ...

    def inject_fault(self, fqdn: str, kind: str, value: int | None = None) -> None: ...

    def restart_vmms(self, fqdn: str) -> int: ...

    def clear_faults(self, fqdn: str) -> None: ...

    def counters(self, fqdn: str) -> dict[str, int]: ...


class AdminError(RuntimeError):
    """The admin endpoint refused an operation or could not be reached; the message says why."""


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise AdminError(f"admin address {address!r} must look like 127.0.0.1:5990")
    if not ipaddress.ip_address(host).is_loopback:
        raise AdminError(f"admin address {address!r} must be on loopback (127.0.0.0/8)")
    return host, int(port)


def perform(emulator: Emulator, request: dict[str, Any]) -> Any:
    """Run one admin operation against an in-process emulator."""
    op, host = request.get("op"), request.get("host")
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}: use one of {', '.join(OPS)}")
    if not isinstance(host, str) or not host:
        raise ValueError("field 'host' (the host's fqdn) is required")
    if op in ("add-vm", "remove-vm", "stop-vm", "start-vm"):
        name = request.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{op} needs field 'name' (the VM name)")
        method, done = {
            "add-vm": (emulator.add_vm, f"added VM {name!r} to {host}, running"),
            "remove-vm": (emulator.remove_vm, f"removed VM {name!r} from {host}"),
            "stop-vm": (emulator.stop_vm, f"turned off VM {name!r} on {host}"),
            "start-vm": (emulator.start_vm, f"started VM {name!r} on {host}"),
        }[op]
        method(host, name)
        return done
    if op == "dump":
        return _dump(emulator.dump_host(host), request.get("section"))
    if op == "fault":
        return _fault(emulator, host, request.get("kind"), request.get("value"))
    if op == "clear-faults":
        emulator.clear_faults(host)
        return f"{host}: every injected fault removed (latency, drop-nth, http500)"
    return emulator.counters(host)


def _dump(state: dict[str, Any], section: object) -> Any:
    if section is None:
        return state
    if section not in DUMP_SECTIONS:
        raise ValueError(f"unknown dump section {section!r}: use one of {', '.join(DUMP_SECTIONS)}")
    hyperv = state["hyperv"]
    if section == "vms":
        return [{k: v for k, v in vm.items() if k != "replication"} for vm in hyperv["vms"]]
    if section == "replication":
        return {
            "server": hyperv["server"],
            "authorization_entries": hyperv["authorization_entries"],
            "vms": {vm["name"]: vm["replication"] for vm in hyperv["vms"] if vm.get("replication")},
        }
    if section == "hosts":
        return state["hosts_file"]
    return state[section]


def _fault(emulator: Emulator, host: str, kind: object, value: object) -> str:
    if kind == "restart-vmms":
        dropped = emulator.restart_vmms(host)
        return f"{host}: Virtual Machine Management service restarted, {dropped} runspace pool(s) dropped"
    number = None if value is None else int(str(value))
    emulator.inject_fault(host, str(kind), number)
    return {
        "latency": f"{host}: every WinRM request now waits {number} ms first",
        "drop-nth": f"{host}: WinRM request number {number} from now will be dropped without an answer",
        "http500": f"{host}: the next {number} WinRM request(s) get an HTTP 500 WSMan fault",
    }[str(kind)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _AdminHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.path != "/admin":
            self._send(404, {"ok": False, "error": "POST /admin is the only endpoint"})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if not isinstance(request, dict):
                raise ValueError("the request body must be a JSON object")
            result = perform(self.server.emulator, request)
        except KeyError as exc:
            self._send(404, {"ok": False, "error": str(exc)})
        except (ValueError, TypeError) as exc:
            self._send(400, {"ok": False, "error": str(exc)})
        else:
            self._send(200, {"ok": True, "result": result})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _AdminHTTPServer(QuietHTTPServer):
    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class AdminServer:
    """The admin endpoint of a running emulator."""

    def __init__(self, address: str, emulator: Emulator) -> None:
        self._bind = split_address(address)
        self._emulator = emulator
        self._server: _AdminHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2] if self._server else self._bind
        return f"{host}:{port}"

    def start(self) -> None:
        self._server = _AdminHTTPServer(self._bind, self._emulator)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="hvsim-admin", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def call(address: str, op: str, host: str, timeout: float = 30.0, **fields: Any) -> Any:
    """Client side: run `op` on the emulator whose admin endpoint is `address`; returns the result."""
    host_part, port = split_address(address)
    body = json.dumps({"op": op, "host": host, **fields}).encode()
    request = urllib.request.Request(
        f"http://{host_part}:{port}/admin",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        payload = json.loads(exc.read() or b"{}")
        raise AdminError(payload.get("error") or f"admin endpoint answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AdminError(f"cannot reach the hvsim admin endpoint at {address}: {exc}") from None
    return payload["result"]
