"""ReplicationRelationship: one VM replicated from a primary host to a replica server.

Create resolves the VM's name to its id on the primary (once; an ambiguous name is refused), then runs
Enable-VMReplication, the initial replication and a read-back in ONE invocation. The id is an output, and
every later read, update and delete addresses the VM by it on both hosts (`Get-VM -Id` piped to the Hyper-V
cmdlet): names are not unique on a Hyper-V host, and a replica VM keeps its primary's id. Settings
Set-VMReplication can change update in place; the VM, the replica server name and the excluded disks replace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, get_args

import pulumi
from pulumi.dynamic import (
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from hvreplica_provider import clock, pki
from hvreplica_provider import hyperv as hv
from hvreplica_provider import windows as win
from hvreplica_provider.inputs import (
    HostConnectionArgs,
    InitialReplicationMode,
    RelationshipAuthentication,
    ReplicationFrequency,
)
from hvreplica_provider.remoting import (
    CONNECTION_SECRET_FIELDS,
    HostConnection,
    InvalidState,
    NotFound,
    RemoteError,
    Session,
    cmd,
)
from hvreplica_provider.resources.base import (
    CheckFailures,
    args_props,
    check_connection,
    contains_unknown,
    is_unknown,
    secret_inputs,
    user_properties,
)

INITIAL_MODES: tuple[str, ...] = get_args(InitialReplicationMode)
FREQUENCIES: tuple[int, ...] = get_args(ReplicationFrequency)
DEFAULT_WAIT_TIMEOUT_SEC = 1800
POLL_INTERVAL_SEC = 2.0
SECRET_INPUTS = tuple(
    f"{side}.{name}" for side in ("primary", "replica") for name in CONNECTION_SECRET_FIELDS
)
REPLACE_KEYS = ("vm_name", "replica_server_fqdn", "excluded_vhd_paths", "extended")
# Settings Set-VMReplication changes in place (the names of ReplicationSettings).
SETTING_KEYS = (
    "authentication",
    "certificate_thumbprint",
    "replica_port",
    "frequency_sec",
    "recovery_history",
    "vss_snapshot_frequency_hour",
    "compression",
    "replicate_host_kvp_items",
    "auto_resynchronize",
    "auto_resynchronize_start",
    "auto_resynchronize_end",
    "bypass_proxy_server",
)
# Inputs that only this provider reads: a change touches no host.
LOCAL_KEYS = (
    "primary",
    "replica",
    "initial_replication",
    "initial_replication_start_time",
    "initial_replication_destination_path",
    "wait_for_initial_replication",
    "initial_replication_timeout_sec",
    "delete_replica_vm_on_destroy",
    "resynchronize",
    "on_direction_change",
    "start_vm_after_failover",
)
RESYNCHRONIZE_CHOICES = ("when_required", "never")
DIRECTION_CHOICES = ("refuse", "planned_failover")
COMPUTED_KEYS = (
    "vm_id", "state", "health", "mode", "primary_server", "replica_server", "last_replication_time",
    "statistics",
)
_DEFAULTS: dict[str, Any] = {
    "authentication": "Certificate",
    "replica_port": 443,
    "frequency_sec": 300,
    "recovery_history": 0,
    "vss_snapshot_frequency_hour": 0,
    "compression": True,
    "replicate_host_kvp_items": True,
    "auto_resynchronize": True,
    "bypass_proxy_server": False,
    "initial_replication": "network",
    "wait_for_initial_replication": False,
    "initial_replication_timeout_sec": DEFAULT_WAIT_TIMEOUT_SEC,
    "delete_replica_vm_on_destroy": False,
    "suspended": False,
    "resynchronize": "when_required",
    "on_direction_change": "refuse",
    "start_vm_after_failover": True,
    "extended": False,
}
# Extended replication (hyperv-replica reference §2.3, §3.4 flow 6): 5 or 15 minutes, no VSS, no disk
# selection; the leg may not be more frequent than the one it extends (the host refuses that at create).
EXTENDED_FREQUENCIES = (300, 900)


def settings_from(inputs: Mapping[str, Any]) -> hv.ReplicationSettings:
    values = {k: inputs.get(k, _DEFAULTS.get(k)) for k in SETTING_KEYS}
    values["certificate_thumbprint"] = pki.normalise_thumbprint(values["certificate_thumbprint"] or "")
    return hv.ReplicationSettings(replica_server_fqdn=inputs["replica_server_fqdn"], **values)


def initial_from(inputs: Mapping[str, Any]) -> hv.InitialReplication:
    return hv.InitialReplication(
        mode=inputs.get("initial_replication") or "network",
        start_time=inputs.get("initial_replication_start_time"),
        destination_path=inputs.get("initial_replication_destination_path"),
    )


def observed(inputs: Mapping[str, Any], info: hv.VMReplicationInfo) -> dict[str, Any]:
    """Outputs: the inputs as the host shows them (same property names) plus state, health and statistics.
    A suspended or resynchronization-required leg reads as `suspended` true, so a refresh shows it as drift
    that `pulumi up` resumes; the observed values themselves are outputs only (never inputs)."""
    applied = asdict(info.settings)
    if info.settings.authentication == "Kerberos":
        applied["certificate_thumbprint"] = inputs.get("certificate_thumbprint")
    if not info.settings.auto_resynchronize or inputs.get("auto_resynchronize_start") is None:
        # The window is only ours to compare when one was asked for.
        applied["auto_resynchronize_start"] = inputs.get("auto_resynchronize_start")
        applied["auto_resynchronize_end"] = inputs.get("auto_resynchronize_end")
    return {
        **inputs,
        **applied,
        "suspended": info.state in hv.SUSPENDED_STATES,
        "vm_id": info.vm_id,
        "state": info.state,
        "health": info.health,
        "mode": info.mode,
        "primary_server": info.primary_server,
        "replica_server": info.replica_server,
        "last_replication_time": info.last_replication_time,
        "statistics": _statistics(info.statistics),
    }


def _statistics(statistics: hv.ReplicationStatistics | None) -> dict[str, Any] | None:
    if statistics is None:
        return None
    return {**asdict(statistics), "health_details": list(statistics.health_details)}


def relationship_id(inputs: Mapping[str, Any]) -> str:
    host = HostConnection.from_input(inputs["primary"]).host.lower()
    return f"{host}/{inputs['vm_name']}->{inputs['replica_server_fqdn'].lower()}"


class ReplicationRelationshipProvider(ResourceProvider):
    """Dynamic provider of `ReplicationRelationship` (stateless, pickled by reference)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checked = CheckFailures(news, secret_keys=("primary", "replica"))
        for key in ("primary", "replica"):
            check_connection(checked, key, "ReplicationRelationship")
        checked.string("vm_name", required=True, problem=hv.vm_name_problem)
        checked.string("replica_server_fqdn", required=True, problem=pki.dns_name_problem)
        auth = checked.choice("authentication", hv.VM_AUTHENTICATIONS, default="Certificate")
        _check_thumbprint(checked, auth)
        checked.integer("replica_port", default=443, minimum=1, maximum=65535)
        checked.integer("frequency_sec", default=300, allowed=FREQUENCIES)
        history = checked.integer("recovery_history", default=0, minimum=0, maximum=24)
        vss = checked.integer("vss_snapshot_frequency_hour", default=0, minimum=0, maximum=12)
        if vss and history == 0:
            checked.add(
                "vss_snapshot_frequency_hour",
                "vss_snapshot_frequency_hour needs recovery_history of at least 1 (VSS copies are kept as "
                "recovery points); raise recovery_history or set the frequency to 0",
            )
        for key in (
            "compression",
            "replicate_host_kvp_items",
            "auto_resynchronize",
            "bypass_proxy_server",
            "wait_for_initial_replication",
            "delete_replica_vm_on_destroy",
            "suspended",
            "start_vm_after_failover",
            "extended",
        ):
            checked.boolean(key, default=_DEFAULTS[key])
        checked.choice("resynchronize", RESYNCHRONIZE_CHOICES, default="when_required")
        direction = checked.choice("on_direction_change", DIRECTION_CHOICES, default="refuse")
        if checked.inputs.get("extended") is True:
            _check_extended(checked)
        if direction == "refuse" and not checked.failures and swapped(_olds, checked.inputs):
            checked.add("on_direction_change", _swap_refusal(checked.inputs))
        _check_window(checked)
        checked.string_list("excluded_vhd_paths", problem=win.path_problem)
        _check_initial(checked)
        checked.integer("initial_replication_timeout_sec", default=DEFAULT_WAIT_TIMEOUT_SEC, minimum=1)
        return checked.result()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        if news.get("on_direction_change") == "planned_failover" and swapped(olds, news):
            return DiffResult(changes=True, replaces=[], delete_before_replace=True)  # a failover, no replace
        replaces = [
            k for k in REPLACE_KEYS if contains_unknown(news.get(k)) or _norm(olds, k) != _norm(news, k)
        ]
        if contains_unknown(news.get("primary")) or _identity(olds["primary"]) != _identity(news["primary"]):
            replaces.append("primary")
        changed = [
            k
            for k in (*SETTING_KEYS, *LOCAL_KEYS, "suspended")
            if contains_unknown(news.get(k)) or _norm(olds, k) != _norm(news, k)
        ]
        return DiffResult(changes=bool(replaces or changed), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = user_properties(props)
        session = _session(inputs, "primary")
        # The only lookup by name: an extended relationship starts from the middle host's replica VM.
        vm_id = hv.resolve_vm(session, inputs["vm_name"], replica=_extended(inputs)).vm_id
        initial = initial_from(inputs)
        excluded = hv.stored_disk_paths(session, vm_id, inputs.get("excluded_vhd_paths") or ())
        try:
            result = session.run(*hv.enable_cmds(vm_id, settings_from(inputs), initial, excluded))
            result.raise_errors()
            infos = hv.parse_replications(result.output)
        except RemoteError as refused:
            # Refused ("already enabled", or VMMS failed the job): a re-run after a failure half-way adopts
            # the existing leg when it points where we want; otherwise the refusal is explained.
            if not hv.refused_by(refused, "EnableVMReplication"):
                raise
            infos = _adopt(session, inputs, vm_id, initial, refused)
        info = _primary_leg(infos, vm_id, session.host, _extended(inputs))
        if inputs.get("suspended"):
            info = _set_suspended(session, inputs, info)
        elif inputs.get("wait_for_initial_replication"):
            info = wait_until_replicating(session, inputs, info)
        return CreateResult(relationship_id(inputs), observed(inputs, info))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outputs = user_properties(props)
        if "primary" not in outputs:
            raise ValueError(f"ReplicationRelationship {id_!r}: import is not supported; declare it instead")
        inputs = {k: v for k, v in outputs.items() if k not in COMPUTED_KEYS}
        session = _session(inputs, "primary")
        try:
            vm_id = _vm_id(outputs, session)
            info = hv.find_sending_leg(hv.vm_replications(session, vm_id), vm_id, _extended(inputs))
        except NotFound as missing:
            # Not "gone": the connection may point at the wrong host; say what to do, keep the state.
            raise NotFound(
                f"VM {inputs['vm_name']!r} (id {outputs.get('vm_id') or 'unknown'}) does not exist on "
                f"{session.host}; if it was deleted, remove this ReplicationRelationship from the program "
                "(its delete succeeds), otherwise check primary.host",
                cmdlet=missing.cmdlet,
                fq_error_id=missing.fq_error_id,
                category=missing.category,
                host=session.host,
            ) from None
        if info is None:
            return ReadResult("", {})
        fresh = observed(inputs, info)
        return ReadResult(id_, fresh, {k: v for k, v in fresh.items() if k not in COMPUTED_KEYS})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = user_properties(news)
        if swapped(olds, inputs):
            return UpdateResult(PlannedFailover(olds, inputs).run())
        changed = {k for k in SETTING_KEYS if _norm(olds, k) != _norm(inputs, k)}
        suspension = _norm(olds, "suspended") != _norm(inputs, "suspended")
        if not changed and not suspension:
            # Connection or provider-side options only: no host is touched.
            return UpdateResult({**inputs, **{k: olds.get(k) for k in COMPUTED_KEYS}})
        session = _session(inputs, "primary")
        vm_id = _vm_id(olds, session)
        statements = [hv.set_replication_cmd(vm_id, settings_from(inputs), changed)] if changed else []
        result = session.run(*statements, *hv.relationship_read_cmds(vm_id))
        result.raise_errors()
        leg = _primary_leg(hv.parse_replications(result.output), vm_id, session.host, _extended(inputs))
        if suspension:
            leg = _set_suspended(session, inputs, leg)
        return UpdateResult(observed(inputs, leg))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        outputs = user_properties(props)
        primary, replica = _session(outputs, "primary"), _session(outputs, "replica")
        try:
            vm_id = _vm_id(outputs, primary)
        except NotFound:
            # State from before ids were recorded, and the primary VM is gone: nothing can be addressed safely
            # on the replica host by name, so nothing is touched there.
            pulumi.log.warn(
                f"ReplicationRelationship: VM {outputs['vm_name']!r} is gone from {primary.host} and its id "
                f"was never recorded; its replica on {replica.host}, if any, is left as it is"
            )
            return
        # Remove-VMReplication affects only the host it runs on, so both legs go at once.
        with ThreadPoolExecutor(max_workers=1) as background:
            # An extended relationship removes only the middle host's extended leg, never the first one.
            remove = hv.remove_extended_replication if _extended(outputs) else hv.remove_replication
            primary_removed = background.submit(remove, primary, vm_id)
            replica_vm = hv.remove_replication(replica, vm_id)
            primary_removed.result()
        # The replica VM goes only on request, and only once it has no replication left (an extended
        # replication of it would lose its source).
        unreplicated = replica_vm is not None and replica_vm.replication_mode == "None"
        if outputs.get("delete_replica_vm_on_destroy") and unreplicated:
            hv.remove_vm(replica, vm_id)


def swapped(olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
    """Whether `news` exchange the hosts of `olds` for the same VM: the old replica host is the new primary
    and the old primary the new replica."""
    keys = ("primary", "replica")
    if not all(isinstance(olds.get(k), Mapping) and isinstance(news.get(k), Mapping) for k in keys):
        return False  # no old state (create), or connections still unknown at preview
    if contains_unknown(news.get("primary")) or contains_unknown(news.get("replica")):
        return False
    old_primary, old_replica = _identity(olds["primary"]), _identity(olds["replica"])
    return (
        old_primary != old_replica  # one connection for both roles swaps nothing
        and olds.get("vm_name") == news.get("vm_name")
        and _identity(news["primary"]) == old_replica
        and _identity(news["replica"]) == old_primary
    )


def _swap_refusal(inputs: Mapping[str, Any]) -> str:
    new_primary = HostConnection.from_input(inputs["primary"]).host
    old_primary = HostConnection.from_input(inputs["replica"]).host
    return (
        f"primary and replica of VM {inputs['vm_name']!r} are swapped: with on_direction_change 'refuse' "
        "(the default) that would replace the relationship, i.e. delete it and start a new full initial "
        "replication in the other direction. Set on_direction_change to 'planned_failover' to fail over "
        f"instead: the VM is shut down on {old_primary} (it is off until it starts on {new_primary}), "
        f"Start-VMFailover -Prepare runs there, Start-VMFailover on {new_primary}, Set-VMReplication "
        f"-Reverse to {old_primary}, and the VM starts on {new_primary} (start_vm_after_failover); no new "
        "initial replication"
    )


class PlannedFailover:
    """The planned failover of one relationship to its old replica host, as Windows requires it (§3.4 flow
    4). Each step runs only when the hosts' states say it is still to do, so a re-run after a failure
    half-way continues where it stopped; a failure says which steps are done and how to go back."""

    def __init__(self, olds: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
        self.inputs = inputs
        self.old_primary, self.new_primary = _session(olds, "primary"), _session(inputs, "primary")
        self.vm_id = _vm_id(olds, self.old_primary)
        self.label = f"planned failover of VM {inputs['vm_name']!r} (id {self.vm_id})"
        self.done: list[str] = []

    def run(self) -> dict[str, Any]:
        old, new, vm_id = self.old_primary, self.new_primary, self.vm_id
        step = f"reading the VM's replication on {old.host} and {new.host}"
        try:
            old_leg = hv.find_replication(hv.vm_replications(old, vm_id), vm_id, "Primary")
            new_legs = hv.vm_replications(new, vm_id)
            if hv.find_replication(new_legs, vm_id, "Primary") is None:
                new_leg = hv.find_replication(new_legs, vm_id, "Replica")
                if new_leg is None or new_leg.state not in hv.FAILED_OVER_STATES:
                    if old_leg is None or old_leg.state != "PreparedForFailover":
                        step = f"shutting the VM down on {old.host} and Start-VMFailover -Prepare"
                        self._run(old, *hv.prepare_failover_cmds(vm_id))
                    step = f"Start-VMFailover on {new.host}"
                    self._run(new, hv.failover_cmd(vm_id))
                step = f"Set-VMReplication -Reverse on {new.host}"
                self._run(new, hv.reverse_cmd(vm_id, settings_from(self.inputs)))
            if self.inputs.get("start_vm_after_failover", True):
                vm = hv.find_vm(new, vm_id)
                if vm is not None and vm.state != "Running":
                    step = f"Start-VM on {new.host}"
                    self._run(new, [hv.vm_by_id(vm_id), cmd("Start-VM", ErrorAction="Stop")])
            step = f"reading the reversed replication on {new.host}"
            leg = _primary_leg(hv.vm_replications(new, vm_id), vm_id, new.host)
            if self.inputs.get("wait_for_initial_replication"):
                step = f"waiting for Replicating on {new.host}"
                leg = wait_until_replicating(new, self.inputs, leg)
        except RemoteError as failed:
            raise self._stopped(step, failed) from failed
        return observed(self.inputs, leg)

    def _run(self, session: Session, *statements: Sequence[Any]) -> None:
        session.run(*statements).raise_errors()
        self.done.append(" | ".join(c.name for st in statements for c in st if c.name != "Get-VM"))

    def _stopped(self, step: str, failed: RemoteError) -> RemoteError:
        old, new = self.old_primary.host, self.new_primary.host
        done = "; ".join(self.done) or "nothing"
        back = (
            f"to go back instead, run `Get-VM -Id {self.vm_id} | Stop-VMFailover` on {new} (if it failed "
            f"over) and on {old} (if it was prepared), then `Start-VM` there, and restore primary/replica in "
            "the program"
        )
        return type(failed)(
            f"{self.label} stopped at: {step}: {failed.remote_message}. Done before: {done}. The VM is off "
            f"until the failover completes. Run `pulumi up` again to continue from this step; {back}",
            cmdlet=failed.cmdlet,
            fq_error_id=failed.fq_error_id,
            category=failed.category,
            host=failed.host,
        )


def _set_suspended(
    session: Session, inputs: Mapping[str, Any], leg: hv.VMReplicationInfo
) -> hv.VMReplicationInfo:
    """Suspend or resume the primary leg as `suspended` says, judged by the state the host reports now. A leg
    that needs a resynchronization resumes with -Resynchronize unless `resynchronize` is "never"."""
    want = bool(inputs.get("suspended"))
    if want == (leg.state in hv.SUSPENDED_STATES):
        return leg
    if want:
        statement = hv.suspend_cmd(leg.vm_id, extended=_extended(inputs))
    elif leg.state in hv.RESYNC_STATES and inputs.get("resynchronize") == "never":
        raise InvalidState(
            f"VM {leg.vm_name!r} needs a resynchronization (state {leg.state}) and resynchronize is 'never': "
            f"run `Resume-VMReplication -VMName '{leg.vm_name}' -Resynchronize` on {session.host} when it "
            "suits (it compares both copies block by block and deletes the replica's recovery points), or "
            "set resynchronize to 'when_required'",
            cmdlet="Resume-VMReplication",
            host=session.host,
        )
    else:
        resync = leg.state in hv.RESYNC_STATES
        statement = hv.resume_cmd(leg.vm_id, resynchronize=resync, extended=_extended(inputs))
    result = session.run(statement, *hv.relationship_read_cmds(leg.vm_id))
    result.raise_errors()
    return _primary_leg(hv.parse_replications(result.output), leg.vm_id, session.host, _extended(inputs))


def _vm_id(outputs: Mapping[str, Any], primary: Session) -> str:
    """The VM's id from the stored outputs. State written before ids were recorded resolves it once, by name,
    on the primary (where the name must be unambiguous); the next read stores it."""
    return outputs.get("vm_id") or hv.resolve_vm(primary, outputs["vm_name"]).vm_id


def _adopt(
    session: Session,
    inputs: Mapping[str, Any],
    vm_id: str,
    initial: hv.InitialReplication,
    refused: RemoteError,
) -> list[hv.VMReplicationInfo]:
    """The VM's primary leg when the refused enable found it already replicating to our replica."""
    infos = hv.vm_replications(session, vm_id)
    leg = hv.find_sending_leg(infos, vm_id, _extended(inputs))
    if leg is None:
        raise _explained(inputs, vm_id, refused)
    if leg.settings.replica_server_fqdn.lower() != inputs["replica_server_fqdn"].lower():
        raise InvalidState(
            f"VM {inputs['vm_name']!r} already replicates to {leg.settings.replica_server_fqdn}; remove that "
            "replication first (Remove-VMReplication) or point replica_server_fqdn at it",
            cmdlet="Enable-VMReplication",
            host=session.host,
        ) from refused
    if leg.state == "ReadyForInitialReplication" and initial.mode != "none":
        result = session.run(*hv.initial_replication_cmds(vm_id, initial), *hv.relationship_read_cmds(vm_id))
        result.raise_errors()
        infos = hv.parse_replications(result.output)
    return infos


def _explained(inputs: Mapping[str, Any], vm_id: str, refused: RemoteError) -> RemoteError:
    """The refusal, with the likely cause when the replica host holds the VM's replica (same id) without
    replication: a replica VM kept by an earlier delete (a replace deletes first) blocks enabling afresh."""
    replica = _session(inputs, "replica")
    try:
        if hv.vm_replications(replica, vm_id):
            return refused
    except RemoteError:  # no such VM there, or the replica cannot say: the refusal stands as it is
        return refused
    return InvalidState(
        f"{refused.remote_message}; {replica.host} still holds the replica VM {inputs['vm_name']!r} "
        f"(id {vm_id}) without replication, probably kept by an earlier delete of this relationship (a "
        "replace deletes first): remove it there (Remove-VM) to replicate afresh, or set "
        "delete_replica_vm_on_destroy before a change that replaces",
        cmdlet=refused.cmdlet,
        fq_error_id=refused.fq_error_id,
        category=refused.category,
        host=refused.host,
    )


def _extended(inputs: Mapping[str, Any]) -> bool:
    return inputs.get("extended") is True


def _primary_leg(
    infos: Sequence[hv.VMReplicationInfo], vm_id: str, host: str, extended: bool = False
) -> hv.VMReplicationInfo:
    """The leg the relationship manages (its primary leg, or the extended one), which must be there."""
    info = hv.find_sending_leg(infos, vm_id, extended)
    if info is None:
        raise RemoteError(f"replication of VM {vm_id} is not visible after enabling it", host=host)
    return info


def wait_until_replicating(
    session: Session,
    inputs: Mapping[str, Any],
    info: hv.VMReplicationInfo,
    *,
    sleep: Callable[[float], None] = time.sleep,
    poll_sec: float | None = None,
) -> hv.VMReplicationInfo:
    """Poll until the primary leg is Replicating, printing progress; time out with a clear error."""
    label = f"ReplicationRelationship {info.vm_name!r} ({session.host} -> {inputs['replica_server_fqdn']})"
    timeout = float(inputs.get("initial_replication_timeout_sec") or DEFAULT_WAIT_TIMEOUT_SEC)
    first = {info.vm_id: info}

    def poll() -> dict[str, hv.VMReplicationInfo]:
        if first:
            return {info.vm_id: first.pop(info.vm_id)}  # the leg just read: no second query for it
        legs = hv.vm_replications(session, info.vm_id)
        return {info.vm_id: _primary_leg(legs, info.vm_id, session.host, _extended(inputs))}

    legs = wait_all_replicating(session.host, label, poll, timeout, sleep=sleep, poll_sec=poll_sec)
    return legs[info.vm_id]


# States an initial replication does not leave on its own.
STOPPED_STATES = ("Error", "Disabled", "WaitingForStartResynchronize")


def _by_name(leg: hv.VMReplicationInfo) -> str:
    return leg.vm_name


def wait_all_replicating(
    host: str,
    label: str,
    poll: Callable[[], dict[str, hv.VMReplicationInfo]],
    timeout: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    poll_sec: float | None = None,
) -> dict[str, hv.VMReplicationInfo]:
    """Call `poll` (the primary legs of the awaited VMs by id, from one query) until every leg is
    Replicating, printing progress; a leg that stopped, or the timeout, is a clear error."""
    poll_sec = POLL_INTERVAL_SEC if poll_sec is None else poll_sec
    started = time.monotonic()
    while True:
        legs = poll()
        elapsed = time.monotonic() - started
        waiting = sorted((leg for leg in legs.values() if leg.state != "Replicating"), key=_by_name)
        if not waiting:
            health = sorted({leg.health for leg in legs.values()})
            print(f"{label}: Replicating, health {', '.join(health)}", flush=True)
            return legs
        shown = ", ".join(f"{leg.vm_name} {leg.state}" for leg in waiting[:5])
        print(
            f"{label}: initial replication {len(legs) - len(waiting)}/{len(legs)} done; waiting for {shown}"
            f"{' ...' if len(waiting) > 5 else ''}, {elapsed:.0f}s elapsed",
            flush=True,
        )
        stopped = [leg for leg in waiting if leg.state in STOPPED_STATES]
        if stopped:
            leg = stopped[0]
            raise InvalidState(
                f"initial replication of VM {leg.vm_name!r} stopped in state {leg.state} "
                f"(health {leg.health}); check Measure-VMReplication on the primary",
                cmdlet="Start-VMInitialReplication",
                host=host,
            )
        if elapsed + poll_sec > timeout:
            raise InvalidState(
                f"initial replication of VM {waiting[0].vm_name!r} is still {waiting[0].state} after "
                f"{timeout:.0f}s; raise initial_replication_timeout_sec or set wait_for_initial_replication "
                "to false",
                cmdlet="Get-VMReplication",
                host=host,
            )
        sleep(poll_sec)


def _session(inputs: Mapping[str, Any], key: str) -> Session:
    return Session(HostConnection.from_input(inputs[key]))


def _identity(conn: Any) -> tuple[str, int]:
    c = HostConnection.from_input(conn)
    return c.host.lower(), c.effective_port


def _norm(values: Mapping[str, Any], key: str) -> Any:
    value = values.get(key, _DEFAULTS.get(key))
    if key == "certificate_thumbprint":
        return pki.normalise_thumbprint(value or "")
    if key == "replica_server_fqdn":
        return (value or "").lower()
    if key == "excluded_vhd_paths":
        return sorted(v.lower() for v in value or [])
    return value


def _check_extended(checked: CheckFailures) -> None:
    """Windows' rules for an extended leg, and what this provider does not do with one."""
    frequency = checked.inputs.get("frequency_sec")
    known = not checked.failed("frequency_sec") and not is_unknown(frequency)
    if known and frequency not in EXTENDED_FREQUENCIES:
        checked.add(
            "frequency_sec",
            "extended replication runs every 300 or 900 seconds (and not more often than the replication it "
            "extends); set frequency_sec to 300 or 900",
        )
    if checked.inputs.get("vss_snapshot_frequency_hour"):
        checked.add("vss_snapshot_frequency_hour", "extended replication keeps no VSS copies; set it to 0")
    if checked.inputs.get("excluded_vhd_paths"):
        checked.add("excluded_vhd_paths", "extended replication sends the replica VM's disks; remove it")
    if checked.inputs.get("on_direction_change") == "planned_failover":
        checked.add(
            "on_direction_change",
            "a planned failover of an extended replication is not supported; fail over the first leg",
        )


def _check_thumbprint(checked: CheckFailures, auth: str | None) -> None:
    raw = checked.inputs.get("certificate_thumbprint")
    if is_unknown(raw) or auth is None:
        return
    if raw is not None and not isinstance(raw, str):
        checked.add("certificate_thumbprint", "certificate_thumbprint must be a string (40 hex characters)")
        return
    if auth == "Kerberos":
        if raw:
            checked.add(
                "certificate_thumbprint", "certificate_thumbprint must be empty with Kerberos authentication"
            )
        return
    thumb = pki.normalise_thumbprint(raw or "")
    if len(thumb) != 40:
        checked.add(
            "certificate_thumbprint",
            "certificate authentication needs certificate_thumbprint: the primary's certificate thumbprint "
            "(40 hex characters, e.g. the primary's HostCertificate.thumbprint)",
        )
        return
    checked.inputs["certificate_thumbprint"] = thumb


# ASCII digits only: str.isdigit() also takes other scripts' digits, which Hyper-V never echoes back.
_TIME_OF_DAY = re.compile(r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})")


def _timespan_problem(value: str) -> str | None:
    match = _TIME_OF_DAY.fullmatch(value)
    if match is None:
        return "use hh:mm:ss, e.g. 18:30:00"
    h, m, s = (int(p) for p in match.groups())
    if h > 23 or m > 59 or s > 59:
        return "it must be a time of day between 00:00:00 and 23:59:59"
    return None


def _check_window(checked: CheckFailures) -> None:
    """Both ends or neither, stored as hh:mm:ss (how Hyper-V reads them back, so diffs come back clean)."""
    ends = ("auto_resynchronize_start", "auto_resynchronize_end")
    values = [checked.string(key, problem=_timespan_problem) for key in ends]
    for key, value in zip(ends, values, strict=True):
        if value is not None:
            checked.inputs[key] = ":".join(f"{int(p):02d}" for p in value.split(":"))
    given = [not checked.missing(key) for key in ends]
    if given[0] != given[1]:
        checked.add(ends[given[0]], "give both auto_resynchronize_start and auto_resynchronize_end")


def _check_initial(checked: CheckFailures) -> None:
    mode = checked.choice("initial_replication", INITIAL_MODES, default="network")
    start = checked.string("initial_replication_start_time")
    destination = checked.string("initial_replication_destination_path", problem=win.path_problem)
    if mode == "scheduled":
        if start is None:
            if checked.missing("initial_replication_start_time"):
                checked.add(
                    "initial_replication_start_time",
                    "scheduled initial replication needs "
                    "initial_replication_start_time (ISO-8601, within the next 7 days)",
                )
        else:
            try:
                moment = pki.parse_iso_utc(start)
            except ValueError as exc:
                checked.add("initial_replication_start_time", str(exc))
            else:
                if datetime.fromisoformat(start.strip()).tzinfo is None:
                    # The host binds a time without offset as ITS local time: another moment on each host.
                    checked.add(
                        "initial_replication_start_time",
                        f"initial_replication_start_time {start!r} has no UTC offset, so the host would read "
                        "it in its own time zone; add one, e.g. 2026-11-28T01:15:00Z or +01:00",
                    )
                now = clock.now()
                if not now < moment <= now + timedelta(days=7):
                    checked.add(
                        "initial_replication_start_time",
                        "initial_replication_start_time must be in the future and at most 7 days ahead",
                    )
    elif start is not None:
        checked.add(
            "initial_replication_start_time",
            "initial_replication_start_time needs initial_replication 'scheduled'",
        )
    if mode == "export" and destination is None and checked.missing("initial_replication_destination_path"):
        checked.add(
            "initial_replication_destination_path",
            "export initial replication needs "
            "initial_replication_destination_path (where the primary writes the initial copy)",
        )
    if mode == "none" and checked.inputs.get("wait_for_initial_replication") is True:
        checked.add(
            "wait_for_initial_replication",
            "with initial_replication 'none' nothing starts the initial "
            "copy; do not wait for it, or pick another initial_replication mode",
        )
    if mode == "export" and checked.inputs.get("wait_for_initial_replication") is True:
        # The exported copy completes only when someone carries it to the replica and imports it there.
        checked.add(
            "wait_for_initial_replication",
            "with initial_replication 'export' the initial copy completes only after it is carried to "
            "the replica server and imported there (Import-VMInitialReplication), which no `pulumi up` "
            "waits for; set wait_for_initial_replication to false",
        )


@dataclass
class ReplicationRelationshipArgs:
    """Inputs of `ReplicationRelationship`: Hyper-V Replica of one VM from `primary` to the replica
    server `replica_server_fqdn`."""

    primary: pulumi.Input[HostConnectionArgs]
    """WinRM connection to the host that runs the VM."""
    replica: pulumi.Input[HostConnectionArgs]
    """WinRM connection to the replica server."""
    vm_name: pulumi.Input[str]
    """The VM's name on the primary (no `*`, `?`, `[`, `]`: the cmdlets treat them as wildcards)."""
    replica_server_fqdn: pulumi.Input[str]
    """The replica server's DNS name as the primary resolves it (never an IP address)."""
    authentication: pulumi.Input[RelationshipAuthentication] | None = None
    """`Certificate` (default) or `Kerberos`."""
    certificate_thumbprint: pulumi.Input[str] | None = None
    """Thumbprint of the primary's own certificate (required for `Certificate`)."""
    replica_port: pulumi.Input[int] | None = None
    """The replica server's listener port (default 443)."""
    frequency_sec: pulumi.Input[ReplicationFrequency] | None = None
    """Seconds between replication cycles: 30, 300 (default) or 900."""
    recovery_history: pulumi.Input[int] | None = None
    """Additional recovery points kept on the replica, 0..24 (default 0)."""
    vss_snapshot_frequency_hour: pulumi.Input[int] | None = None
    """Hours between application-consistent (VSS) points, 1..12; 0 (default) is off. Needs
    `recovery_history` >= 1."""
    compression: pulumi.Input[bool] | None = None
    """Compress replication traffic (default true)."""
    replicate_host_kvp_items: pulumi.Input[bool] | None = None
    """Replicate the host's KVP items (default true)."""
    auto_resynchronize: pulumi.Input[bool] | None = None
    """Resynchronise automatically when required (default true)."""
    auto_resynchronize_start: pulumi.Input[str] | None = None
    """Start of the automatic resynchronisation window, `hh:mm:ss`."""
    auto_resynchronize_end: pulumi.Input[str] | None = None
    """End of the automatic resynchronisation window, `hh:mm:ss`."""
    excluded_vhd_paths: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """Virtual disks not replicated (paths on the primary); a change replaces the relationship."""
    bypass_proxy_server: pulumi.Input[bool] | None = None
    """Connect to the replica server without the primary's proxy (default false)."""
    initial_replication: pulumi.Input[InitialReplicationMode] | None = None
    """`network` (default), `scheduled` (at `initial_replication_start_time`), `export` (to
    `initial_replication_destination_path`, then `Import-VMInitialReplication` on the replica) or
    `none`."""
    initial_replication_start_time: pulumi.Input[str] | None = None
    """ISO-8601 UTC start for `scheduled`, in the future and at most 7 days ahead."""
    initial_replication_destination_path: pulumi.Input[str] | None = None
    """Where the primary writes the initial copy for `export` (a path or share it can write)."""
    wait_for_initial_replication: pulumi.Input[bool] | None = None
    """Wait until the initial copy is done and the state is Replicating (default false); refused with
    `export` and `none`, where nothing completes it unattended."""
    initial_replication_timeout_sec: pulumi.Input[int] | None = None
    """How long to wait for the initial copy (default 1800)."""
    delete_replica_vm_on_destroy: pulumi.Input[bool] | None = None
    """Also delete the replica VM when the relationship is destroyed (default false: data is kept)."""
    suspended: pulumi.Input[bool] | None = None
    """Pause replication (Suspend-VMReplication; default false). A refresh shows a leg paused or needing a
    resynchronization on the host as true, so `pulumi up` resumes it."""
    resynchronize: pulumi.Input[str] | None = None
    """`when_required` (default): resume a leg that needs it with `Resume-VMReplication -Resynchronize`;
    `never`: refuse, with the command to run at a time that suits."""
    on_direction_change: pulumi.Input[str] | None = None
    """What swapping `primary` and `replica` (same VM) does: `refuse` (default; check fails, since it would
    be a replace with a new full initial replication) or `planned_failover` (an update: shut the VM down on
    the old primary, fail over to the old replica and reverse replication; the VM is off in between)."""
    start_vm_after_failover: pulumi.Input[bool] | None = None
    """Start the VM on the new primary after a planned failover (default true)."""
    extended: pulumi.Input[bool] | None = None
    """Extended replication (default false): `primary` is then the host that holds the REPLICA VM (the
    middle hop) and `replica` a third host; 300 or 900 s, no VSS, no excluded disks. Delete removes only the
    middle host's extended leg."""


class ReplicationRelationship(Resource, module="hvreplica", name="ReplicationRelationship"):
    """Hyper-V Replica of one VM from `primary` to `replica_server_fqdn`."""

    vm_id: pulumi.Output[str]
    state: pulumi.Output[str]
    health: pulumi.Output[str]
    mode: pulumi.Output[str]
    primary_server: pulumi.Output[str]
    replica_server: pulumi.Output[str]
    last_replication_time: pulumi.Output[str]
    statistics: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        resource_name: str,
        args: ReplicationRelationshipArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            ReplicationRelationshipProvider(),
            resource_name,
            secret_inputs(args_props(args, COMPUTED_KEYS), SECRET_INPUTS),
            opts,
        )
