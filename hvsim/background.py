"""`hvsim start` / `hvsim stop`: a lab served in the background, its pid and log in the state directory.

The files are the ones `scripts/demo.sh` uses (`<state-dir>/hvsim.pid`, `<state-dir>/hvsim.log`), so
`make lab` and `make demo` reuse a lab the other one started. Whether a lab runs is judged by its pid file
AND its first WinRM listener accepting connections, which works the same on every platform and never
mistakes a recycled pid for hvsim.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hvsim.config import load_config

PID_FILE = "hvsim.pid"
LOG_FILE = "hvsim.log"
READY_PREFIX = "hvsim ready"
STOPPED_LINE = "hvsim stopped"


class BackgroundError(RuntimeError):
    """The background lab could not be started or stopped; the message says why and where to look."""


@dataclass(frozen=True)
class Started:
    pid: int
    log: Path
    ready: str  # the server's ready line, or "" when a running lab was reused
    reused: bool


def _listening(config: Path) -> bool:
    first = load_config(config).hosts[0]
    try:
        socket.create_connection((first.address, first.listeners[0][1]), timeout=1).close()
    except OSError:
        return False
    return True


def running_pid(config: Path, state_dir: Path) -> int | None:
    """The pid of the lab serving `config` from `state_dir`, or None when none runs."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _listening(config) else None


def start(config: Path, state_dir: Path, timeout: float = 60.0) -> Started:
    """Serve `config` in a background process of its own (it outlives this one), or reuse a running one."""
    log = state_dir / LOG_FILE
    pid = running_pid(config, state_dir)
    if pid is not None:
        return Started(pid, log, "", reused=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    command = [sys.executable, "-u", "-m", "hvsim", "serve", "--config", str(config)]
    command += ["--state-dir", str(state_dir)]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session (POSIX) or process group (Windows): Ctrl-C in this terminal does not reach it.
            start_new_session=True,
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    (state_dir / PID_FILE).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _log_lines(log, offset)
        ready = next((line for line in lines if line.startswith(READY_PREFIX)), None)
        if ready is not None:
            return Started(process.pid, log, ready, reused=False)
        if process.poll() is not None:
            tail = "\n".join(lines[-20:])
            raise BackgroundError(f"hvsim exited before it was ready; its log {log} ends with:\n{tail}")
        time.sleep(0.1)
    process.terminate()
    raise BackgroundError(f"hvsim was not ready within {timeout:.0f} s; see {log}")


def stop(config: Path, state_dir: Path, timeout: float = 30.0) -> int | None:
    """Stop the lab `start` (or `make demo`) started and wait for its "hvsim stopped" line: SIGTERM makes
    it close its listeners and save the lab state. (On Windows os.kill terminates the process at once; the
    state was saved after its last change.) Returns its pid, None if none ran."""
    pid = running_pid(config, state_dir)
    if pid is None:
        return None
    log = state_dir / LOG_FILE
    offset = log.stat().st_size if log.exists() else 0
    os.kill(pid, signal.SIGTERM)
    # The log, not the listener: probing the listener would keep its shutdown waiting for the probes.
    deadline = time.monotonic() + timeout
    while os.name != "nt" and STOPPED_LINE not in _log_lines(log, offset):
        if time.monotonic() > deadline:
            raise BackgroundError(f"hvsim (pid {pid}) did not stop {timeout:.0f} s after SIGTERM; see {log}")
        time.sleep(0.1)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return pid


def _log_lines(log: Path, offset: int) -> list[str]:
    with open(log, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace").splitlines()
