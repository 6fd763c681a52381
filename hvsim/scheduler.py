"""Emulated time: a time-scaled clock and the background thread that advances replication with it."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from hvsim.hyperv import RecoveryPoint, Replication, ReplicationServer, ReplicationStats, VirtualMachine
from hvsim.network import HostDirectory, ReplicationCheckError, check_connection

if TYPE_CHECKING:
    from hvsim.windows import Host

_log = logging.getLogger(__name__)


class LabState(HostDirectory, Protocol):
    """What a replication tick needs of the lab (`hvsim.lab.Lab`, which sits above this module and owns
    the scheduler): the hosts, the trusts and the lock that guards every piece of model state."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...


# Real seconds between scheduler ticks: short enough that 30 s cycles stay visible at high time scales.
TICK_REAL_SEC = 0.05


class EmulatedClock:
    """Emulated UTC time running `time_scale` emulated seconds per real second.

    It never runs backwards across restarts: a persisted emulated instant later than the real clock resumes.
    """

    def __init__(self, time_scale: float, start: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        now = datetime.now(UTC)
        self._origin = max(now, start) if start is not None else now
        self._real_origin = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            elapsed = time.monotonic() - self._real_origin
            return self._origin + timedelta(seconds=elapsed * self.time_scale)

    def advance(self, seconds: float) -> None:
        """Jump forward (tests use it to reach a future instant without waiting)."""
        with self._lock:
            self._origin += timedelta(seconds=seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now().isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, time_scale: float) -> EmulatedClock:
        start = datetime.fromisoformat(data["now"]) if data and data.get("now") else None
        return cls(time_scale, start)


class Scheduler:
    """Calls `tick(now)` with the emulated time on a daemon thread until stopped.

    `tick` runs outside any lock of ours; the callee takes the Lab lock. An exception in one tick is kept
    (`last_error`) and does not stop the thread, so a model bug shows up in tests instead of freezing time.
    """

    def __init__(self, clock: EmulatedClock, tick: Callable[[datetime], None]) -> None:
        self.clock = clock
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hvsim-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def run_once(self) -> None:
        try:
            self._tick(self.clock.now())
        except Exception as exc:  # kept for inspection; see class docstring
            self.last_error = exc

    def _run(self) -> None:
        while not self._stop.wait(TICK_REAL_SEC):
            self.run_once()


# --- replication driven by emulated time --------------------------------------------------------------------

# Emulated replication link: what initial replication and each cycle's delta cost in emulated time.
LINK_BYTES_PER_SEC = 100 * 1024**2
ERROR_RETRY = timedelta(minutes=5)  # Hyper-V retries a failed transfer every 5 minutes
RECOVERY_POINT_INTERVAL = timedelta(hours=1)
HEALTH_SYNC_LIMIT = timedelta(hours=1)  # §3.6
HEALTH_MISSED_RATIO = 0.2
HEALTH_LATENCY_LIMIT_SEC = 300.0
ERROR_NOT_FOUND = 0x80070490
ERROR_INVALID_STATE = 0x8007139F


def advance_replication(lab: LabState, now: datetime) -> None:
    """One scheduler tick: move every primary leg along (scheduled IR, IR completion, cycles, error retries),
    then roll statistics and recompute health on every leg.

    A model bug in one VM is logged and re-raised after the other VMs had their turn, so one broken
    relationship never freezes the rest of the lab (the Scheduler keeps the error in `last_error`)."""
    failure: Exception | None = None
    with lab.lock:
        for host in list(lab.hosts.values()):
            for vm in list(host.hyperv.vms):
                for rep in vm.legs():
                    try:
                        if rep.mode == "Primary":
                            _advance_primary(lab, host, vm, rep, now)
                        roll_statistics(host.hyperv.server, rep, now)
                        refresh_health(rep, now)
                    except Exception as exc:
                        _log.exception("replication tick failed for VM %s on %s", vm.name, host.fqdn)
                        failure = failure or exc
    if failure is not None:
        raise failure


def _advance_primary(lab: LabState, host: Host, vm: VirtualMachine, rep: Replication, now: datetime) -> None:
    try:
        if rep.state == "ReadyForInitialReplication":
            start = rep.initial_replication_start_time
            if start is not None and start <= now:
                begin_initial_replication(lab, host, vm, now, rep)
        elif rep.state == "InitialReplicationInProgress":
            if rep.initial_replication_done_at is not None and rep.initial_replication_done_at <= now:
                _, replica_vm = replica_leg(lab, host, vm, now, rep)
                _finish_initial_replication(rep, vm, replica_vm, now)
            elif rep.initial_replication_done_at is None and _due(rep, now):
                _poll_import(lab, host, vm, rep, now)
        elif rep.state in ("Replicating", "Error") and _due(rep, now):
            if rep.last_replication_time is None:
                begin_initial_replication(lab, host, vm, now, rep)
            else:
                _cycle(lab, host, vm, rep, now)
    except ReplicationCheckError as exc:
        _fail(rep, exc, now)


def replica_leg(
    lab: LabState, host: Host, vm: VirtualMachine, now: datetime, rep: Replication | None = None
) -> tuple[Host, VirtualMachine]:
    """Run the connection check for `vm`'s sending leg `rep` (its primary leg by default; a replica VM's
    extended leg) and find the replica VM it feeds."""
    leg = rep or vm.replication
    assert leg is not None
    s = leg.settings
    target = check_connection(
        lab,
        host,
        s.replica_server_name,
        s.replica_server_port,
        s.authentication_type,
        s.certificate_thumbprint,
        now,
    )
    replica_vm = target.host.hyperv.vm_by_id(vm.id)
    if replica_vm is None or replica_vm.replication_mode not in ("Replica", "ExtendedReplica"):
        raise ReplicationCheckError(
            "replica virtual machine",
            ERROR_NOT_FOUND,
            f"The replica server '{s.replica_server_name}' has no replica virtual machine '{vm.name}' "
            f"({vm.id}) with replication enabled",
        )
    assert replica_vm.replication is not None
    if replica_vm.replication.state in ("FailedOverWaitingCompletion", "FailedOver"):
        # An unplanned failover on the replica: it no longer accepts changes from this primary.
        raise ReplicationCheckError(
            "replica virtual machine",
            ERROR_INVALID_STATE,
            f"The replica virtual machine '{vm.name}' ({vm.id}) on '{s.replica_server_name}' has failed over",
        )
    return target.host, replica_vm


def begin_initial_replication(
    lab: LabState, host: Host, vm: VirtualMachine, now: datetime, leg: Replication | None = None
) -> None:
    """Start sending the VM's disks on its sending leg (§3.2 #3): checked now, done after a size-dependent
    emulated duration."""
    rep = leg or vm.replication
    assert rep is not None
    _, replica_vm = replica_leg(lab, host, vm, now, rep)
    seconds = transfer_seconds(vm.data_bytes(), rep.settings.compression_enabled)
    rep.state, rep.health, rep.last_error = "InitialReplicationInProgress", "Normal", ""
    rep.initial_replication_start_time = None
    rep.initial_replication_done_at = now + timedelta(seconds=seconds)
    rep.stats.pending_bytes = vm.data_bytes()
    replica_rep = replica_vm.replication
    assert replica_rep is not None
    replica_rep.state = "WaitingForInitialReplication"


def _due(rep: Replication, now: datetime) -> bool:
    return rep.next_cycle_at is not None and rep.next_cycle_at <= now


def _finish_initial_replication(
    rep: Replication, vm: VirtualMachine, replica_vm: VirtualMachine, now: datetime
) -> None:
    rep.initial_replication_done_at = None
    rep.stats.pending_bytes = 0
    _record_success(rep, replica_vm, vm.data_bytes(), now, initial=True)


def _poll_import(lab: LabState, host: Host, vm: VirtualMachine, rep: Replication, now: datetime) -> None:
    """An exported initial replication completes once the replica imported it (Import-VMInitialReplication);
    the primary looks at every replication interval."""
    _, replica_vm = replica_leg(lab, host, vm, now, rep)
    if replica_vm.replication is not None and replica_vm.replication.last_replication_time is not None:
        _finish_initial_replication(rep, vm, replica_vm, now)
    else:
        rep.next_cycle_at = now + timedelta(seconds=rep.settings.frequency_sec)


def _cycle(lab: LabState, host: Host, vm: VirtualMachine, rep: Replication, now: datetime) -> None:
    _, replica_vm = replica_leg(lab, host, vm, now, rep)
    replica_rep = replica_vm.replication
    assert replica_rep is not None
    due = rep.next_cycle_at or now
    frequency = timedelta(seconds=rep.settings.frequency_sec)
    rep.stats.missed += int((now - due) / frequency)
    if replica_rep.state == "Suspended":
        # Paused on the replica: the primary keeps logging and this interval counts as missed.
        rep.stats.missed += 1
        rep.next_cycle_at = now + frequency
        return
    _record_success(rep, replica_vm, cycle_bytes(vm, rep.stats.successful), now, initial=False)


def _record_success(
    rep: Replication, replica_vm: VirtualMachine, sent: int, now: datetime, *, initial: bool
) -> None:
    s = rep.settings
    replica_rep = replica_vm.replication
    assert replica_rep is not None
    # Settings changed on the primary reach the replica with the next transfer.
    replica_rep.settings = dataclasses.replace(s, excluded_disks=list(s.excluded_disks))
    point = recovery_point_due(replica_vm, now)
    # Every VSSSnapshotFrequencyHour-th hourly point is application-consistent.
    vss = (
        point
        and not initial
        and s.vss_frequency_hour > 0
        and (
            rep.stats.last_vss_time is None
            or now - rep.stats.last_vss_time >= timedelta(hours=s.vss_frequency_hour)
        )
    )
    latency = transfer_seconds(sent, s.compression_enabled)
    for leg in (rep, replica_rep):
        leg.state, leg.last_error, leg.last_replication_time = "Replicating", "", now
        leg.next_cycle_at = now + timedelta(seconds=s.frequency_sec) if leg is rep else None
        if initial:
            continue
        st = leg.stats
        st.successful += 1
        st.total_bytes += sent
        st.max_bytes = max(st.max_bytes, sent)
        st.total_latency_sec += latency
        st.max_latency_sec = max(st.max_latency_sec, latency)
        st.last_replication_type = "ApplicationConsistent" if vss else "Regular"
        if vss:
            st.last_vss_time = now
    if point:
        add_recovery_point(replica_vm, now, app_consistent=vss)
    elif replica_rep.settings.recovery_history == 0:
        replica_vm.recovery_points.clear()
    refresh_health(rep, now)
    refresh_health(replica_rep, now)


def _fail(rep: Replication, error: ReplicationCheckError, now: datetime) -> None:
    """§3.2 #7: a failed transfer puts the leg in Error/Critical; it is retried every 5 minutes."""
    rep.state, rep.health = "Error", "Critical"
    rep.last_error = str(error)
    rep.stats.errors += 1
    rep.next_cycle_at = now + ERROR_RETRY
    rep.health_details = [f"Replication failed: {error}"]


def transfer_seconds(size: int, compressed: bool) -> float:
    return (size // 2 if compressed else size) / LINK_BYTES_PER_SEC


def cycle_bytes(vm: VirtualMachine, cycle: int) -> int:
    """A deterministic per-cycle change size (4-68 MiB), stable across runs for the same VM and cycle."""
    seed = int(vm.id.replace("-", "")[:8], 16) ^ (cycle * 2654435761)
    return (4 + seed % 65) * 1024**2


def recovery_point_due(replica_vm: VirtualMachine, now: datetime) -> bool:
    """Recovery points are hourly, and only kept at all when RecoveryHistory is at least 1."""
    rep = replica_vm.replication
    if rep is None or rep.settings.recovery_history == 0:
        return False
    latest = max((p.creation_time for p in replica_vm.recovery_points), default=None)
    return latest is None or now - latest >= RECOVERY_POINT_INTERVAL


def add_recovery_point(replica_vm: VirtualMachine, now: datetime, *, app_consistent: bool) -> None:
    """Add a point to the replica VM, keeping the newest RecoveryHistory of them."""
    rep = replica_vm.replication
    assert rep is not None
    kind = "AppConsistentReplica" if app_consistent else "Replica"
    label = "Application-consistent Replica" if app_consistent else "Standard Replica"
    points = replica_vm.recovery_points
    points.append(
        RecoveryPoint(
            id=str(uuid.uuid4()),
            name=f"{replica_vm.name} - {label} - ({windows_timestamp(now)})",
            snapshot_type=kind,
            creation_time=now,
        )
    )
    points.sort(key=lambda p: p.creation_time)
    del points[: max(len(points) - rep.settings.recovery_history, 0)]


def windows_timestamp(value: datetime) -> str:
    """en-US short date and long time, as recovery point names show them: 11/28/2026 - 1:05:09 PM."""
    hour = value.hour % 12 or 12
    suffix = "AM" if value.hour < 12 else "PM"
    return f"{value.month}/{value.day}/{value.year} - {hour}:{value.minute:02d}:{value.second:02d} {suffix}"


def roll_statistics(server: ReplicationServer, rep: Replication, now: datetime) -> None:
    """Statistics cover one monitoring interval of the replication server, then restart."""
    if now - rep.stats.monitoring_start >= server.monitoring_interval:
        rep.stats = ReplicationStats(monitoring_start=now, last_vss_time=rep.stats.last_vss_time)


def refresh_health(rep: Replication, now: datetime) -> None:
    """§3.6 health rules for one leg; ReplicationHealthDetails gets one line per finding."""
    findings: list[str] = []
    if rep.state == "Error":
        return  # _fail set Critical and its detail
    if rep.state == "Suspended":
        findings.append("Replication is paused.")
        health = "Critical" if rep.mode == "Replica" else "Warning"
    elif rep.state in ("ReadyForInitialReplication", "WaitingForInitialReplication"):
        findings.append("Initial replication is not complete.")
        health = "Warning"
    elif rep.state in ("InitialReplicationInProgress", "PreparedForFailover"):
        health = "Normal"
    elif rep.state == "WaitingForStartResynchronize":
        findings.append("Resynchronization is required.")
        health = "Critical"
    elif rep.state in ("FailedOverWaitingCompletion", "FailedOver"):
        findings.append("The virtual machine has failed over and replication has not been reversed.")
        health = "Warning"
    else:
        st = rep.stats
        attempts = st.successful + st.missed
        if attempts and st.missed / attempts > HEALTH_MISSED_RATIO:
            findings.append(f"{st.missed} of {attempts} replication cycles were missed.")
        if rep.last_replication_time is None or now - rep.last_replication_time > HEALTH_SYNC_LIMIT:
            findings.append("More than an hour has passed since the last successful replication.")
        if st.successful and st.total_latency_sec / st.successful > HEALTH_LATENCY_LIMIT_SEC:
            findings.append("The average replication latency exceeds 5 minutes.")
        health = "Warning" if findings else "Normal"
    rep.health, rep.health_details = health, findings
