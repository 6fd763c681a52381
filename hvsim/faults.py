"""Per-host fault injection and request counters.

Faults apply to the WS-Management (SOAP) requests a host's listeners receive after authentication:
- latency: every request is delayed by that many milliseconds;
- drop-nth: the Nth request from now is answered by closing the TCP connection without a reply;
- http500: the next N requests are answered with a WSMan fault (HTTP 500);
- restart-vmms is not a transport fault: the emulator restarts the Hyper-V model and drops every shell.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from enum import StrEnum

from hvsim.wsman.soap import WSManFault


class FaultKind(StrEnum):
    LATENCY = "latency"
    DROP_NTH = "drop-nth"
    HTTP500 = "http500"
    RESTART_VMMS = "restart-vmms"


@dataclass
class Counters:
    http_requests: int = 0
    pipelines: int = 0
    pools_opened: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What to do with one SOAP request."""

    delay: float = 0.0
    drop: bool = False
    fault: WSManFault | None = None


def injected_fault() -> WSManFault:
    return WSManFault(
        2147943850,  # 0x800705AA ERROR_NO_SYSTEM_RESOURCES, what an overloaded WinRM service answers
        "w:InternalError",
        "The WS-Management service cannot process the request because of insufficient system resources "
        "(fault injected by hvsim).",
    )


class HostFaults:
    """Fault settings and counters of one host; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = Counters()
        self._latency_ms = 0
        self._drop_in: int | None = None
        self._http500_left = 0

    def set_latency(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("latency must be >= 0 ms")
        with self._lock:
            self._latency_ms = ms

    def drop_nth(self, n: int) -> None:
        if n < 1:
            raise ValueError("drop-nth needs N >= 1 (1 = the next request)")
        with self._lock:
            self._drop_in = n

    def http500(self, count: int) -> None:
        if count < 1:
            raise ValueError("http500 needs a count >= 1")
        with self._lock:
            self._http500_left = count

    def clear(self) -> None:
        with self._lock:
            self._latency_ms, self._drop_in, self._http500_left = 0, None, 0

    def count(self, field: str) -> None:
        with self._lock:
            setattr(self.counters, field, getattr(self.counters, field) + 1)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return self.counters.to_dict()

    def settings(self) -> dict[str, int | None]:
        with self._lock:
            return {
                "latency_ms": self._latency_ms,
                "drop_in": self._drop_in,
                "http500_left": self._http500_left,
            }

    def next_request(self) -> Decision:
        """Consume one SOAP request's worth of the configured faults."""
        with self._lock:
            delay = self._latency_ms / 1000.0
            if self._drop_in is not None:
                self._drop_in -= 1
                if self._drop_in == 0:
                    self._drop_in = None
                    return Decision(delay=delay, drop=True)
            if self._http500_left > 0:
                self._http500_left -= 1
                return Decision(delay=delay, fault=injected_fault())
            return Decision(delay=delay)
