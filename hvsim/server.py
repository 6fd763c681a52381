"""`Emulator`: the whole emulated lab in-process - the Lab model, one WinRM listener per host and port, the
optional admin endpoint and the time-scaled scheduler.

    with Emulator("lab.toml", state_dir) as emu:
        ...  # pypsrp against each host's address/port, verifying TLS with emu.ca_pem_path
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from psrpcore.types import PSDict, PSList, PSVersion

from hvsim.admin import AdminServer
from hvsim.cmdlets import invoke
from hvsim.config import HostConfig, SimConfig, load_config
from hvsim.faults import FaultKind, HostFaults
from hvsim.lab import Lab
from hvsim.listener_tls import ensure_ca, ensure_server_certificate, server_context
from hvsim.windows import HostFacts
from hvsim.wsman.auth import write_ntlm_user_file
from hvsim.wsman.listener import Listener, ListenerSetup
from hvsim.wsman.psrp import Sink
from hvsim.wsman.service import WSManService

_NTLM_DIR = "ntlm"
_SAVE_INTERVAL = 0.25  # seconds: a burst of pipelines costs one write of lab.json, not one each


class _Saver:
    """Saves the lab soon after pipelines ran, coalescing bursts (stop() makes the final save)."""

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hvsim-saver", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wanted.wait()
            if self._stopping.wait(_SAVE_INTERVAL):
                return  # Lab.stop() makes the final save
            self._wanted.clear()
            self._lab.save()

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.set()
        self._thread.join(timeout=10)


class UnknownHostError(KeyError):
    def __str__(self) -> str:
        return f"no emulated host {self.args[0]!r}: use one of the fqdns in the config"


@dataclass
class _HostRuntime:
    config: HostConfig
    service: WSManService
    faults: HostFaults
    listeners: list[Listener] = field(default_factory=list)


class Emulator:
    """Starts and stops every host of a config; also offers the admin operations in-process."""

    def __init__(
        self, config: SimConfig | str | Path, state_dir: str | Path, time_scale: float | None = None
    ) -> None:
        self.config = config if isinstance(config, SimConfig) else load_config(config)
        self.state_dir = Path(state_dir)
        self.time_scale = time_scale
        self._lab: Lab | None = None
        self._saver: _Saver | None = None
        self._hosts: dict[str, _HostRuntime] = {}
        self._admin: AdminServer | None = None

    # --- lifecycle ---
    @property
    def ca_pem_path(self) -> Path:
        return self.state_dir / "winrm-ca.pem"

    @property
    def lab(self) -> Lab:
        if self._lab is None:
            raise RuntimeError("the emulator is not started")
        return self._lab

    @property
    def admin_address(self) -> str | None:
        return self._admin.address if self._admin is not None else None

    def start(self) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_ca(self.state_dir)
        self._lab = Lab(self.config, self.state_dir, time_scale=self.time_scale)
        self._saver = _Saver(self._lab)
        try:
            for host in self.config.hosts:
                self._hosts[host.fqdn] = self._start_host(host)
            if self.config.settings.admin:
                self._admin = AdminServer(self.config.settings.admin, self)
                self._admin.start()
            self._lab.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        # Each listener's shutdown waits out its serve loop's poll interval: wait for all of them at once.
        listeners = [listener for runtime in self._hosts.values() for listener in runtime.listeners]
        with ThreadPoolExecutor(max_workers=max(len(listeners), 1)) as executor:
            list(executor.map(Listener.stop, listeners))
        for runtime in self._hosts.values():
            runtime.service.shells.drop_all()
        self._hosts.clear()
        if self._saver is not None:
            self._saver.stop()
            self._saver = None
        if self._lab is not None:
            self._lab.stop()
            self._lab = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_host(self, host: HostConfig) -> _HostRuntime:
        lab, saver = self.lab, self._saver
        assert saver is not None
        faults = HostFaults()

        def execute(user: str, commands: list[Any], inputs: list[Any], sink: Sink) -> None:
            faults.count("pipelines")
            invoke(lab, lab.host(host.fqdn), user, commands, inputs, sink)

        service = WSManService(
            machine=host.fqdn,
            executor=execute,
            on_pipeline=saver.request,  # state is on disk shortly after every pipeline that ran
            on_pool_opened=lambda: faults.count("pools_opened"),
            private_data=lambda: application_private_data(lab.host(host.fqdn).facts),
        )
        runtime = _HostRuntime(host, service, faults)
        if host.https_listener:
            tls_paths = ensure_server_certificate(self.state_dir, host.fqdn, host.address)
            https = ListenerSetup(host, service, faults, server_context(self.state_dir, tls_paths))
            runtime.listeners.append(Listener(host.address, host.winrm_port, https))
        if host.winrm_http_port is not None:
            user_file = self.state_dir / _NTLM_DIR / f"{host.fqdn}.passwd"
            write_ntlm_user_file(host, user_file)
            runtime.listeners.append(
                Listener(
                    host.address, host.winrm_http_port, ListenerSetup(host, service, faults, None, user_file)
                )
            )
        self._hosts[host.fqdn] = runtime  # registered before start so stop() can clean up a partial start
        for listener in runtime.listeners:
            listener.start()
        return runtime

    def _runtime(self, fqdn: str) -> _HostRuntime:
        runtime = self._hosts.get(fqdn.lower())
        if runtime is None:
            raise UnknownHostError(fqdn)
        return runtime

    # --- admin operations (also served by hvsim.admin and the CLI) ---
    def add_vm(self, fqdn: str, name: str) -> None:
        self._runtime(fqdn)
        self.lab.add_vm(fqdn.lower(), name)
        self.lab.save()

    def remove_vm(self, fqdn: str, name: str) -> None:
        self._runtime(fqdn)
        self.lab.remove_vm(fqdn.lower(), name)
        self.lab.save()

    def stop_vm(self, fqdn: str, name: str) -> None:
        self._runtime(fqdn)
        self.lab.set_vm_running(fqdn.lower(), name, False)
        self.lab.save()

    def start_vm(self, fqdn: str, name: str) -> None:
        self._runtime(fqdn)
        self.lab.set_vm_running(fqdn.lower(), name, True)
        self.lab.save()

    def require_resync(self, fqdn: str, name: str) -> None:
        self._runtime(fqdn)
        self.lab.require_resync(fqdn.lower(), name)
        self.lab.save()

    def dump_host(self, fqdn: str) -> dict[str, Any]:
        self._runtime(fqdn)
        return self.lab.dump_host(fqdn.lower())

    def inject_fault(self, fqdn: str, kind: FaultKind | str, value: int | None = None) -> None:
        """latency (value = ms per request), drop-nth (value = N), http500 (value = count), restart-vmms."""
        runtime = self._runtime(fqdn)
        kind = FaultKind(kind)
        if kind is FaultKind.RESTART_VMMS:
            self.restart_vmms(fqdn)
            return
        if value is None:
            raise ValueError(f"fault {kind.value} needs a value")
        {
            FaultKind.LATENCY: runtime.faults.set_latency,
            FaultKind.DROP_NTH: runtime.faults.drop_nth,
            FaultKind.HTTP500: runtime.faults.http500,
        }[kind](int(value))

    def clear_faults(self, fqdn: str) -> None:
        self._runtime(fqdn).faults.clear()

    def counters(self, fqdn: str) -> dict[str, int]:
        return self._runtime(fqdn).faults.snapshot()

    def sessions(self, fqdn: str) -> dict[str, int]:
        """Live WinRM shells (runspace pools) of a host and the pipelines they still hold."""
        shells = self._runtime(fqdn).service.shells
        return {"shells": len(shells), "pipelines": shells.pipelines()}

    def restart_vmms(self, fqdn: str) -> int:
        """Restart the Virtual Machine Management service: every runspace pool of the host is dropped.

        Returns the number of pools dropped; a client's next request on one gets the unknown-shell fault.
        """
        runtime = self._runtime(fqdn)
        dropped = runtime.service.shells.drop_all()
        self.lab.restart_vmms(fqdn.lower())
        return dropped

    def listener_port(self, fqdn: str, scheme: str = "https") -> int:
        """The bound port of a host's listener (useful when the config asked for port 0)."""
        for listener in self._runtime(fqdn).listeners:
            if listener.scheme == scheme:
                return listener.port
        raise KeyError(f"{fqdn} has no {scheme} listener")


def application_private_data(facts: HostFacts) -> dict[str, Any]:
    """What Windows PowerShell 5.1 on this host sends at pool open: its PSVersionTable (RTM revision),
    with the type names Windows gives the table and the version list."""
    ps_version = PSVersion(f"5.1.{facts.build_number}.1")
    compatible = PSList([PSVersion(v) for v in ("1.0", "2.0", "3.0", "4.0", "5.0")] + [ps_version])
    compatible.PSObject.type_names = ["System.Version[]", "System.Array", "System.Object"]
    table = PSDict(
        PSVersion=ps_version,
        PSEdition="Desktop",
        PSCompatibleVersions=compatible,
        CLRVersion=PSVersion("4.0.30319.42000"),
        BuildVersion=PSVersion(f"{facts.version}.1"),
        WSManStackVersion=PSVersion("3.0"),
        PSRemotingProtocolVersion=PSVersion("2.3"),
        SerializationVersion=PSVersion("1.1.0.1"),
    )
    table.PSObject.type_names = [
        "System.Management.Automation.PSPrimitiveDictionary",
        "System.Collections.Hashtable",
        "System.Object",
    ]
    return {"PSVersionTable": table}
