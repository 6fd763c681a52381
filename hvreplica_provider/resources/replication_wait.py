"""InitialReplicationWait: one wait per primary host for the initial replications of many VMs.

The dynamic-provider server runs four operations at once. A relationship that waits for its own initial
copy holds one of them for the whole transfer, so forty VMs wait ten rounds of transfers in a row. This
resource waits for all of a host's VMs in ONE operation instead, with one query per poll
(`Get-VMReplication` of every VM on the host, filtered by id here), while the relationships themselves
return as soon as their copies have started. ReplicaTopology declares one per primary host when the
relationship settings ask to wait. Nothing is created on a host: read keeps the outputs, delete does
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

from hvreplica_provider import hyperv as hv
from hvreplica_provider.inputs import HostConnectionArgs
from hvreplica_provider.remoting import CONNECTION_SECRET_FIELDS, HostConnection, NotFound, Session
from hvreplica_provider.resources.base import (
    CheckFailures,
    args_props,
    changed_keys,
    check_connection,
    contains_unknown,
    secret_inputs,
    user_properties,
)
from hvreplica_provider.resources.replication_relationship import (
    DEFAULT_WAIT_TIMEOUT_SEC,
    wait_all_replicating,
)

SECRET_INPUTS = tuple(f"connection.{name}" for name in CONNECTION_SECRET_FIELDS)
COMPUTED_KEYS = ("states",)


class InitialReplicationWaitProvider(ResourceProvider):
    """Dynamic provider of `InitialReplicationWait` (stateless, pickled by reference)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checked = CheckFailures(news, secret_keys=("connection",))
        check_connection(checked, "connection", "InitialReplicationWait")
        vm_ids = checked.string_list("vm_ids", problem=_guid_problem)
        if vm_ids is not None and not contains_unknown(checked.inputs.get("vm_ids")):
            checked.inputs["vm_ids"] = [vm_id.lower() for vm_id in vm_ids]  # as Get-VMReplication has them
        checked.integer("timeout_sec", default=DEFAULT_WAIT_TIMEOUT_SEC, minimum=1)
        return checked.result()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A new VM is waited for by an update; the wait has nothing on a host to replace. Ids still unknown
        # at preview belong to relationships being updated (same VMs): only known ids count, and `up`
        # diffs again with them known.
        keys = ["connection", "timeout_sec"] + ([] if contains_unknown(news.get("vm_ids")) else ["vm_ids"])
        changed = changed_keys(olds, news, keys)
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = user_properties(props)
        host = HostConnection.from_input(inputs["connection"]).host.lower()
        return CreateResult(f"{host}/initial-replication", {**inputs, "states": _wait(inputs)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outputs = user_properties(props)
        return ReadResult(id_, outputs, {k: v for k, v in outputs.items() if k not in COMPUTED_KEYS})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = user_properties(news)
        return UpdateResult({**inputs, "states": _wait(inputs)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to remove: the wait left nothing on the host."""


def _wait(inputs: Mapping[str, Any]) -> dict[str, str]:
    """Until every listed VM's primary leg on the host is Replicating; their states by VM id."""
    session = Session(HostConnection.from_input(inputs["connection"]))
    vm_ids = sorted(set(inputs.get("vm_ids") or []))
    if not vm_ids:
        return {}

    def poll() -> dict[str, hv.VMReplicationInfo]:
        result = session.run(hv.replication_read_cmd())  # every VM of the host in one query
        result.raise_errors()
        legs = {i.vm_id: i for i in hv.parse_replications(result.output) if i.mode == "Primary"}
        missing = [vm_id for vm_id in vm_ids if vm_id not in legs]
        if missing:
            raise NotFound(
                f"VM {missing[0]} has no replication on {session.host}; its ReplicationRelationship makes it",
                cmdlet="Get-VMReplication",
                host=session.host,
            )
        return {vm_id: legs[vm_id] for vm_id in vm_ids}

    label = f"InitialReplicationWait {session.host} ({len(vm_ids)} VMs)"
    timeout = float(inputs.get("timeout_sec") or DEFAULT_WAIT_TIMEOUT_SEC)
    legs = wait_all_replicating(session.host, label, poll, timeout)
    return {vm_id: leg.state for vm_id, leg in legs.items()}


def _guid_problem(value: str) -> str | None:
    if len(value) != 36 or value.count("-") != 4:
        return "use a VM id (a GUID), e.g. a ReplicationRelationship's vm_id"
    return None


@dataclass
class InitialReplicationWaitArgs:
    """Inputs of `InitialReplicationWait`: the primary host and the VMs whose initial copies to wait for."""

    connection: pulumi.Input[HostConnectionArgs]
    """WinRM connection to the primary host."""
    vm_ids: pulumi.Input[list[pulumi.Input[str]]]
    """Ids of the VMs (ReplicationRelationship.vm_id) on that host."""
    timeout_sec: pulumi.Input[int] | None = None
    """How long to wait for all of them (default 1800)."""


class InitialReplicationWait(Resource, module="hvreplica", name="InitialReplicationWait"):
    """Waits once for the initial replications of many VMs of one primary host."""

    states: pulumi.Output[dict[str, str]]

    def __init__(
        self, resource_name: str, args: InitialReplicationWaitArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            InitialReplicationWaitProvider(),
            resource_name,
            secret_inputs(args_props(args, COMPUTED_KEYS), SECRET_INPUTS),
            opts,
        )
