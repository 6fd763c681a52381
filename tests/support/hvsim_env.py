"""Test helpers for hvsim: build a lab config on loopback with free ports, run an `Emulator` in a temporary
state directory, and get ready-to-use pypsrp connection arguments.

    from tests.support.hvsim_env import host, lab_config, running_lab, wsman_kwargs

    config = lab_config(host("hv1.contoso.com", "127.20.0.11", vms=["web01"]))
    with running_lab(config) as emu:
        with WSMan(**wsman_kwargs(emu, "hv1.contoso.com")) as wsman, RunspacePool(wsman) as pool:
            ...
"""

from __future__ import annotations

import contextlib
import json
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from subprocess import Popen
from typing import Any

from pypsrp.messages import EndOfPipelineInput
from pypsrp.powershell import PowerShell, RunspacePool

from hvreplica_provider.remoting import HostConnection
from hvsim.config import SimConfig, parse_config
from hvsim.server import Emulator
from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_USER = "Administrator"
DEFAULT_PASSWORD = "P@ssw0rd!"


def host(
    fqdn: str,
    address: str,
    *,
    vms: Sequence[str] = (),
    users: dict[str, str] | None = None,
    http: bool = False,
    os: str = "Windows Server 2022",
) -> dict[str, Any]:
    """One `[[host]]` entry with free ports on `address` (an HTTP NTLM listener too when `http`)."""
    entry: dict[str, Any] = {
        "fqdn": fqdn,
        "address": address,
        "winrm_port": free_port(address),
        "users": dict(users or {DEFAULT_USER: DEFAULT_PASSWORD}),
        "vms": list(vms),
        "os": os,
    }
    if http:
        entry["winrm_http_port"] = free_port(address)
    return entry


def lab_config_dict(
    *hosts: dict[str, Any],
    domains: Sequence[dict[str, Any]] = (),
    admin_address: str | None = None,
    time_scale: float = 60.0,
) -> dict[str, Any]:
    """The raw TOML structure of a lab (admin endpoint on `admin_address` with a free port, if given)."""
    settings: dict[str, Any] = {"time_scale": time_scale}
    if admin_address is not None:
        settings["admin"] = f"{admin_address}:{free_port(admin_address)}"
    return {"settings": settings, "domain": list(domains), "host": list(hosts)}


def lab_config(*hosts: dict[str, Any], **kwargs: Any) -> SimConfig:
    return parse_config(lab_config_dict(*hosts, **kwargs))


def to_toml(raw: dict[str, Any]) -> str:
    """TOML text for a `lab_config_dict()` structure (for `python -m hvsim serve --config`)."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(str(v))

    lines = ["[settings]"] + [f"{k} = {value(v)}" for k, v in raw.get("settings", {}).items()]
    for table in ("domain", "host"):
        for entry in raw.get(table, []):
            lines += ["", f"[[{table}]]"] + [f"{k} = {value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def serve_process(
    config_path: Path, state_dir: Path, *args: str, timeout: float = 60
) -> tuple[Popen[str], str]:
    """`python -m hvsim serve` as a subprocess (repo root as cwd) once it printed its `hvsim ready` line.

    Returns the process and that line; stop it with SIGTERM/SIGINT and `communicate()`."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hvsim",
            "serve",
            "--config",
            str(config_path),
            "--state-dir",
            str(state_dir),
            *args,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = process.stdout.readline() if selector.select(timeout) else ""
    if not ready.startswith("hvsim ready"):
        process.kill()
        _, err = process.communicate(timeout=30)
        raise RuntimeError(f"hvsim serve did not become ready: {ready!r} {err}")
    return process, ready


@contextlib.contextmanager
def running_lab(
    config: SimConfig, state_dir: str | Path | None = None, time_scale: float | None = None
) -> Iterator[Emulator]:
    """A started Emulator (in a fresh temporary state directory unless one is given), stopped on exit."""
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="hvsim-"))
        emulator = stack.enter_context(Emulator(config, state_dir, time_scale=time_scale))
        yield emulator


def wsman_kwargs(
    emulator: Emulator,
    fqdn: str,
    *,
    auth: str = "basic",
    username: str = DEFAULT_USER,
    password: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """`pypsrp.wsman.WSMan(**kwargs)` for one host: HTTPS for basic/certificate (verified against the state
    CA), the HTTP listener with message encryption for ntlm/negotiate."""
    config = next(h for h in emulator.config.hosts if h.fqdn == fqdn.lower())
    if password is None:
        password = config.users.get(username, DEFAULT_PASSWORD)
    kwargs: dict[str, Any] = {"server": config.address, "auth": auth, "reconnection_retries": 0}
    if auth in ("ntlm", "negotiate"):
        kwargs.update(
            port=emulator.listener_port(fqdn, "http"), ssl=False, username=username, password=password
        )
    else:
        kwargs.update(
            port=emulator.listener_port(fqdn, "https"), ssl=True, cert_validation=str(emulator.ca_pem_path)
        )
        if auth == "basic":
            kwargs.update(username=username, password=password)
    kwargs.update(extra)
    return kwargs


def basic_connection(emulator: Emulator, entry: dict[str, Any], **overrides: Any) -> HostConnection:
    """The provider's connection to a lab host (`entry` from `host`): HTTPS + basic on its configured port,
    verified against the state CA (the port is used even when no listener is there)."""
    return HostConnection(
        host=entry["address"],
        port=entry["winrm_port"],
        auth="basic",
        username=DEFAULT_USER,
        password=DEFAULT_PASSWORD,
        ca_cert_pem=emulator.ca_pem_path.read_text(),
        **overrides,
    )


def held_pipeline(pool: RunspacePool) -> PowerShell:
    """A running `Get-VM -Name web01` that waits for input the client has not finished sending (no
    EndOfPipelineInput yet): its Receives time out until `end_input()`."""

    def no_input_yet() -> Iterator[None]:
        yield None

    ps = PowerShell(pool)
    ps.add_cmdlet("Get-VM").add_parameter("Name", "web01")
    ps.begin_invoke(input=no_input_yet())
    return ps


def end_input(ps: PowerShell) -> None:
    """Send the EndOfPipelineInput that `held_pipeline()` withheld, so the pipeline runs and completes."""
    pool = ps.runspace_pool
    for fragment in pool._fragmenter.fragment(EndOfPipelineInput(), pool.id, ps.id):
        pool.shell.send("stdin", fragment, command_id=ps._command_id)
