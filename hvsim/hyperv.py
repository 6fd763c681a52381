"""The Hyper-V model of one emulated host: VMs, the replication server, authorization entries, VM replication.

State names are the PowerShell enum names of the Hyper-V module (`ReplicationState` as PowerShell derives it
from the WMI state and the mode), so the cmdlet layer only maps names to enum values. Work across hosts lives
elsewhere: the connection check in hvsim/network.py, time-driven transitions in hvsim/scheduler.py,
enabling in the cmdlets.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvsim.config import HostConfig

GIB = 1024**3
DEFAULT_VM_PATH = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V"
DEFAULT_VHD_DIR = "C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks"
# Bytes of data in a config-made VM's disk: what initial replication has to send.
DEFAULT_DISK_DATA_BYTES = 8 * GIB
DEFAULT_DISK_SIZE_BYTES = 127 * GIB

# The values a freshly installed Hyper-V host reports.
DEFAULT_KERBEROS_PORT = 80
DEFAULT_CERTIFICATE_PORT = 443
DEFAULT_MONITORING_INTERVAL = timedelta(hours=12)
DEFAULT_MONITORING_START = timedelta(hours=9)

# Enable-VMReplication defaults (§2.3); the auto-resync window is Hyper-V Manager's 18:30-06:00.
DEFAULT_FREQUENCY_SEC = 300
DEFAULT_AUTO_RESYNC_START = timedelta(hours=18, minutes=30)
DEFAULT_AUTO_RESYNC_END = timedelta(hours=6)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class HardDisk:
    path: str
    size_bytes: int = DEFAULT_DISK_SIZE_BYTES
    data_bytes: int = DEFAULT_DISK_DATA_BYTES
    controller_type: str = "SCSI"
    controller_number: int = 0
    controller_location: int = 0


@dataclass
class NetworkAdapter:
    """A VM's network adapter; `switch_name` is "" while it is not connected (replica and test VMs)."""

    name: str = "Network Adapter"
    switch_name: str = ""


@dataclass
class VirtualSwitch:
    """A Hyper-V virtual switch (Get-VMSwitch); Private and Internal ones isolate test failovers."""

    name: str
    id: str
    switch_type: str  # Private | Internal | External


@dataclass
class RecoveryPoint:
    """A replica-side recovery point, shown by Get-VMSnapshot as SnapshotType Replica/AppConsistentReplica."""

    id: str
    name: str
    snapshot_type: str
    creation_time: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "creation_time": _iso(self.creation_time)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecoveryPoint:
        return cls(**{**data, "creation_time": _from_iso(data["creation_time"])})


@dataclass
class ReplicationStats:
    """Measure-VMReplication figures, restarted at each monitoring interval."""

    monitoring_start: datetime
    successful: int = 0
    missed: int = 0
    errors: int = 0
    total_bytes: int = 0
    max_bytes: int = 0
    total_latency_sec: float = 0.0
    max_latency_sec: float = 0.0
    pending_bytes: int = 0
    last_replication_type: str = "None"
    last_vss_time: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["monitoring_start"] = _iso(self.monitoring_start)
        data["last_vss_time"] = _iso(self.last_vss_time)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicationStats:
        return cls(
            **{
                **data,
                "monitoring_start": _from_iso(data["monitoring_start"]),
                "last_vss_time": _from_iso(data.get("last_vss_time")),
            }
        )


@dataclass
class ReplicationSettings:
    """What Enable-/Set-VMReplication set (§2.3); both legs carry a copy."""

    replica_server_name: str
    replica_server_port: int
    authentication_type: str  # Kerberos | Certificate
    certificate_thumbprint: str = ""
    frequency_sec: int = DEFAULT_FREQUENCY_SEC
    recovery_history: int = 0
    vss_frequency_hour: int = 0
    compression_enabled: bool = True
    replicate_host_kvp_items: bool = True
    bypass_proxy_server: bool = False
    auto_resynchronize_enabled: bool = False
    auto_resynchronize_start: timedelta = DEFAULT_AUTO_RESYNC_START
    auto_resynchronize_end: timedelta = DEFAULT_AUTO_RESYNC_END
    excluded_disks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["auto_resynchronize_start"] = self.auto_resynchronize_start.total_seconds()
        data["auto_resynchronize_end"] = self.auto_resynchronize_end.total_seconds()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicationSettings:
        return cls(
            **{
                **data,
                "auto_resynchronize_start": timedelta(seconds=data["auto_resynchronize_start"]),
                "auto_resynchronize_end": timedelta(seconds=data["auto_resynchronize_end"]),
            }
        )


@dataclass
class Replication:
    """One leg of a VM's replication relationship as this host sees it."""

    mode: str  # Primary | Replica
    state: str
    health: str
    primary_server_name: str
    settings: ReplicationSettings
    stats: ReplicationStats
    allowed_primary_server: str = ""  # replica side: the entry that authorized the primary
    trust_group: str = ""  # replica side: that entry's trust group
    last_replication_time: datetime | None = None
    initial_replication_start_time: datetime | None = None  # a scheduled IR not yet started
    initial_replication_done_at: datetime | None = None  # when the running IR completes
    next_cycle_at: datetime | None = None
    last_error: str = ""
    health_details: list[str] = field(default_factory=list)
    test_vm_id: str = ""  # replica side: the VM Start-VMFailover -AsTest made, until Stop-VMFailover

    @property
    def replica_server_name(self) -> str:
        return self.settings.replica_server_name

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "state": self.state,
            "health": self.health,
            "primary_server_name": self.primary_server_name,
            "settings": self.settings.to_dict(),
            "stats": self.stats.to_dict(),
            "allowed_primary_server": self.allowed_primary_server,
            "trust_group": self.trust_group,
            "last_replication_time": _iso(self.last_replication_time),
            "initial_replication_start_time": _iso(self.initial_replication_start_time),
            "initial_replication_done_at": _iso(self.initial_replication_done_at),
            "next_cycle_at": _iso(self.next_cycle_at),
            "last_error": self.last_error,
            "health_details": list(self.health_details),
            "test_vm_id": self.test_vm_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Replication:
        return cls(
            mode=data["mode"],
            state=data["state"],
            health=data["health"],
            primary_server_name=data["primary_server_name"],
            settings=ReplicationSettings.from_dict(data["settings"]),
            stats=ReplicationStats.from_dict(data["stats"]),
            allowed_primary_server=data.get("allowed_primary_server", ""),
            trust_group=data.get("trust_group", ""),
            last_replication_time=_from_iso(data.get("last_replication_time")),
            initial_replication_start_time=_from_iso(data.get("initial_replication_start_time")),
            initial_replication_done_at=_from_iso(data.get("initial_replication_done_at")),
            next_cycle_at=_from_iso(data.get("next_cycle_at")),
            last_error=data.get("last_error", ""),
            health_details=list(data.get("health_details", [])),
            test_vm_id=data.get("test_vm_id", ""),
        )


@dataclass
class VirtualMachine:
    name: str
    id: str
    state: str = "Off"  # Running | Off
    generation: int = 2
    memory_startup_bytes: int = GIB
    processor_count: int = 1
    path: str = DEFAULT_VM_PATH
    hard_disks: list[HardDisk] = field(default_factory=list)
    creation_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    replication: Replication | None = None
    recovery_points: list[RecoveryPoint] = field(default_factory=list)
    uptime_started: datetime | None = None
    network_adapters: list[NetworkAdapter] = field(default_factory=lambda: [NetworkAdapter()])
    test_of: str = ""  # a test failover VM: the id of the replica VM it was made from
    # A replica VM's extended leg to a third host (it sends like a primary leg, hence mode "Primary").
    extended: Replication | None = None

    def legs(self) -> list[Replication]:
        """Its replication legs on this host: the simple one, then the extended one."""
        return [leg for leg in (self.replication, self.extended) if leg is not None]

    @property
    def replication_mode(self) -> str:
        if self.test_of:
            return "TestReplica"
        if self.replication is None:
            # Still the source of an extended leg once its first leg is removed here (what Windows shows then
            # is not recorded): never a VM without replication that could be deleted as unused.
            return "Replica" if self.extended else "None"
        return self.replication.mode

    @property
    def replication_state(self) -> str:
        return self.replication.state if self.replication else "Disabled"

    @property
    def replication_health(self) -> str:
        return self.replication.health if self.replication else "NotApplicable"

    def data_bytes(self) -> int:
        excluded = (
            {p.lower() for p in self.replication.settings.excluded_disks} if self.replication else set()
        )
        return sum(d.data_bytes for d in self.hard_disks if d.path.lower() not in excluded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "state": self.state,
            "generation": self.generation,
            "memory_startup_bytes": self.memory_startup_bytes,
            "processor_count": self.processor_count,
            "path": self.path,
            "hard_disks": [asdict(d) for d in self.hard_disks],
            "creation_time": _iso(self.creation_time),
            "replication": self.replication.to_dict() if self.replication else None,
            "recovery_points": [p.to_dict() for p in self.recovery_points],
            "uptime_started": _iso(self.uptime_started),
            "network_adapters": [asdict(a) for a in self.network_adapters],
            "test_of": self.test_of,
            "extended": self.extended.to_dict() if self.extended else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VirtualMachine:
        return cls(
            name=data["name"],
            id=data["id"],
            state=data["state"],
            generation=data["generation"],
            memory_startup_bytes=data["memory_startup_bytes"],
            processor_count=data.get("processor_count", 1),
            path=data["path"],
            hard_disks=[HardDisk(**d) for d in data["hard_disks"]],
            creation_time=_from_iso(data["creation_time"]) or datetime.now(UTC),
            replication=Replication.from_dict(data["replication"]) if data.get("replication") else None,
            recovery_points=[RecoveryPoint.from_dict(p) for p in data.get("recovery_points", [])],
            uptime_started=_from_iso(data.get("uptime_started")),
            network_adapters=[NetworkAdapter(**a) for a in data.get("network_adapters", [{}])],
            test_of=data.get("test_of", ""),
            extended=Replication.from_dict(data["extended"]) if data.get("extended") else None,
        )


@dataclass
class AuthorizationEntry:
    allowed_primary_server: str
    replica_storage_location: str
    trust_group: str

    def matches(self, primary_fqdn: str) -> bool:
        """Exact FQDN, one leading `*.` wildcard (any depth below the suffix) or `*` for any server."""
        pattern, name = self.allowed_primary_server.lower(), primary_fqdn.lower()
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            return name.endswith(pattern[1:])
        return pattern == name


@dataclass
class ReplicationServer:
    """Get-/Set-VMReplicationServer settings; §1.4 gives the fresh-host values used as defaults here."""

    replication_enabled: bool = False
    allowed_authentication_type: int = 0  # RecoveryAuthenticationType: 0 unset, 1 Kerberos, 2 Cert, 3 both
    kerberos_port: int = DEFAULT_KERBEROS_PORT
    certificate_port: int = DEFAULT_CERTIFICATE_PORT
    certificate_thumbprint: str = ""
    monitoring_interval: timedelta = DEFAULT_MONITORING_INTERVAL
    monitoring_start_time: timedelta = DEFAULT_MONITORING_START

    def accepts(self, authentication_type: str) -> bool:
        bit = {"Kerberos": 1, "Certificate": 2}[authentication_type]
        return self.replication_enabled and bool(self.allowed_authentication_type & bit)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["monitoring_interval"] = self.monitoring_interval.total_seconds()
        data["monitoring_start_time"] = self.monitoring_start_time.total_seconds()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicationServer:
        return cls(
            **{
                **data,
                "monitoring_interval": timedelta(seconds=data["monitoring_interval"]),
                "monitoring_start_time": timedelta(seconds=data["monitoring_start_time"]),
            }
        )


ANY_SERVER = "*"
ANY_SERVER_TRUST_GROUP = "DEFAULT"


@dataclass
class HyperVHost:
    """The Hyper-V role of one host (`Host.hyperv`)."""

    computer_name: str
    vms: list[VirtualMachine] = field(default_factory=list)
    server: ReplicationServer = field(default_factory=ReplicationServer)
    authorization_entries: list[AuthorizationEntry] = field(default_factory=list)
    switches: list[VirtualSwitch] = field(default_factory=list)

    # --- VMs -------------------------------------------------------------------------------------------
    def find_vms(self, name: str) -> list[VirtualMachine]:
        return [vm for vm in self.vms if vm.name.lower() == name.lower()]

    def vm_by_id(self, vm_id: str) -> VirtualMachine | None:
        return next((vm for vm in self.vms if vm.id == vm_id.lower()), None)

    def add_vm(
        self,
        name: str,
        *,
        vm_id: str | None = None,
        generation: int = 2,
        memory_startup_bytes: int = GIB,
        path: str = DEFAULT_VM_PATH,
        hard_disks: list[HardDisk] | None = None,
        now: datetime | None = None,
    ) -> VirtualMachine:
        vm = VirtualMachine(
            name=name,
            id=(vm_id or str(uuid.uuid4())).lower(),
            generation=generation,
            memory_startup_bytes=memory_startup_bytes,
            path=path,
            hard_disks=[HardDisk(path=f"{DEFAULT_VHD_DIR}\\{name}.vhdx")]
            if hard_disks is None
            else hard_disks,
            creation_time=now or datetime.now(UTC),
        )
        self.vms.append(vm)
        return vm

    def remove_vm(self, vm: VirtualMachine) -> None:
        self.vms.remove(vm)

    # --- replication server --------------------------------------------------------------------------------
    @property
    def any_server_entry(self) -> AuthorizationEntry | None:
        return next((e for e in self.authorization_entries if e.allowed_primary_server == ANY_SERVER), None)

    def authorizing_entry(self, primary_fqdn: str) -> AuthorizationEntry | None:
        """The entry that lets `primary_fqdn` replicate here: the most specific match wins."""
        matches = [e for e in self.authorization_entries if e.matches(primary_fqdn)]
        return max(matches, key=lambda e: len(e.allowed_primary_server), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "computer_name": self.computer_name,
            "vms": [vm.to_dict() for vm in self.vms],
            "server": self.server.to_dict(),
            "authorization_entries": [asdict(e) for e in self.authorization_entries],
            "switches": [asdict(w) for w in self.switches],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HyperVHost:
        return cls(
            computer_name=data["computer_name"],
            vms=[VirtualMachine.from_dict(v) for v in data["vms"]],
            server=ReplicationServer.from_dict(data["server"]),
            authorization_entries=[AuthorizationEntry(**e) for e in data["authorization_entries"]],
            switches=[VirtualSwitch(**w) for w in data.get("switches", [])],
        )


def new_hyperv(config: HostConfig) -> HyperVHost:
    """A fresh host's Hyper-V role with the VMs listed in its config entry (running, as a lab host's VMs
    are)."""
    hyperv = HyperVHost(computer_name=config.computer_name)
    for name in config.vms:
        vm = hyperv.add_vm(name)
        vm.state = "Running"
        vm.uptime_started = vm.creation_time
    return hyperv
