"""The whole emulated world: every host with its Windows and Hyper-V models, the emulated clock and scheduler,
and persistence in `<state_dir>/lab.json`."""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from hvsim.config import SimConfig
from hvsim.hyperv import HyperVHost, VirtualMachine, new_hyperv
from hvsim.scheduler import EmulatedClock, Scheduler, advance_replication, refresh_health
from hvsim.windows import Host

STATE_FILE = "lab.json"
STATE_VERSION = 1

_log = logging.getLogger(__name__)


class LabError(ValueError):
    """An admin operation named something that does not exist (or already exists); the message says which."""


class Lab:
    """All emulated hosts. `lock` guards every piece of model state: cmdlets, the scheduler and admin
    operations take it."""

    def __init__(self, config: SimConfig, state_dir: str | Path, time_scale: float | None = None) -> None:
        self.config = config
        self.state_dir = Path(state_dir)
        self.lock = threading.RLock()
        scale = time_scale if time_scale is not None else config.settings.time_scale
        self.hosts: dict[str, Host] = {}
        # Hosts persisted earlier but no longer in the config: kept as they were so removing a host from the
        # config never destroys its state.
        self._retired: dict[str, Any] = {}
        data = self._read_state()
        self.clock = EmulatedClock.from_dict(data.get("clock"), scale)
        saved = data.get("hosts", {})
        now = self.clock.now()
        for host_config in config.hosts:
            entry = saved.pop(host_config.fqdn, None)
            if entry is None:
                host = Host.fresh(host_config, new_hyperv(host_config), now)
            else:
                host = Host.from_dict(entry, host_config, HyperVHost.from_dict(entry["hyperv"]))
            self.hosts[host_config.fqdn] = host
        self._retired = saved
        self.scheduler = Scheduler(self.clock, lambda at: advance_replication(self, at))

    # --- persistence ------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _read_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {}
        data: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise LabError(
                f"{self.state_path} was written by an incompatible hvsim (state version "
                f"{data.get('version')}, expected {STATE_VERSION}); move it away to start from fresh hosts"
            )
        return data

    def save(self) -> None:
        """Write the state atomically (a crash mid-write leaves the previous file), readable by the owner
        only: the emulated certificate stores hold private keys."""
        with self.lock:
            # Serialised under the lock: the dicts share lists with the live model.
            text = json.dumps(
                {
                    "version": STATE_VERSION,
                    "clock": self.clock.to_dict(),
                    "hosts": {**self._retired, **{fqdn: h.to_dict() for fqdn, h in self.hosts.items()}},
                },
                indent=1,
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{STATE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.state_path)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.save()

    def now(self) -> datetime:
        """Emulated UTC time (validity checks and replication timestamps use it)."""
        return self.clock.now()

    # --- lookups ----------------------------------------------------------------------------------
    def host(self, fqdn: str) -> Host:
        try:
            return self.hosts[fqdn.lower()]
        except KeyError:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise LabError(f"no emulated host {fqdn!r} (configured hosts: {known})") from None

    # --- admin operations -------------------------------------------------------------------------
    def add_vm(self, fqdn: str, name: str) -> None:
        """Create a VM on a host, running, like the VMs listed in the config."""
        with self.lock:
            hyperv = self.host(fqdn).hyperv
            if hyperv.find_vms(name):
                raise LabError(f"host {fqdn} already has a VM named {name!r}")
            vm = hyperv.add_vm(name, now=self.now())
            vm.state = "Running"
            vm.uptime_started = vm.creation_time

    def remove_vm(self, fqdn: str, name: str) -> None:
        with self.lock:
            hyperv = self.host(fqdn).hyperv
            for vm in self._vms(fqdn, name):
                hyperv.remove_vm(vm)

    def set_vm_running(self, fqdn: str, name: str, running: bool) -> None:
        with self.lock:
            for vm in self._vms(fqdn, name):
                vm.state = "Running" if running else "Off"
                vm.uptime_started = self.now() if running else None

    def require_resync(self, fqdn: str, name: str) -> None:
        """What a resynchronization condition does to a primary leg (§3.5: a tracking log over half the VHD,
        a host crash, a reverted VHD): replication stops until Resume-VMReplication -Resynchronize."""
        with self.lock:
            for vm in self._vms(fqdn, name):
                rep = vm.replication
                if rep is None or rep.mode != "Primary":
                    raise LabError(f"VM {name!r} on {fqdn} is not a primary VM")
                rep.state, rep.next_cycle_at = "WaitingForStartResynchronize", None
                refresh_health(rep, self.now())

    def _vms(self, fqdn: str, name: str) -> list[VirtualMachine]:
        vms = self.host(fqdn).hyperv.find_vms(name)
        if not vms:
            raise LabError(f"host {fqdn} has no VM named {name!r}")
        return vms

    def dump_host(self, fqdn: str) -> dict[str, Any]:
        """One host's state as JSON-serialisable data, without private keys."""
        with self.lock:
            data = self.host(fqdn).public_dict()
            data["now"] = self.now().isoformat()
            return data

    def restart_vmms(self, fqdn: str) -> None:
        """Model side of restarting the Virtual Machine Management service (the WSMan layer drops the pools):
        the service start time moves to now."""
        with self.lock:
            host = self.host(fqdn)
            host.facts.vmms_started = self.now().replace(microsecond=0)
        _log.info("VMMS restarted on %s", fqdn)
