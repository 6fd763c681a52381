"""TestFailover: a DR drill on the host that holds a replica VM.

Create resolves the replica VM's name once (the one VM of that name in Replica mode), then runs
`Start-VMFailover -AsTest` on it by id: Hyper-V makes the test VM "<vm> - Test" with a new id from the named
(or latest) recovery point, with its network adapters unconnected. Optionally the adapters join an isolated
switch and the VM starts. Production replication keeps running. Delete runs `Stop-VMFailover`, which stops
and deletes the test VM; read reports whether the test VM still exists. `pulumi up` starts the drill,
`pulumi destroy` ends it.
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
from hvreplica_provider.remoting import (
    CONNECTION_SECRET_FIELDS,
    HostConnection,
    RemoteError,
    Session,
    cmd,
)
from hvreplica_provider.resources.base import (
    CheckFailures,
    args_props,
    check_connection,
    contains_unknown,
    secret_inputs,
    user_properties,
)

SECRET_INPUTS = tuple(f"replica.{name}" for name in CONNECTION_SECRET_FIELDS)
# A new VM, recovery point or switch is another drill: the test VM is made afresh (one at a time per VM,
# so the old one goes first).
REPLACE_KEYS = ("vm_name", "recovery_point", "switch_name")
COMPUTED_KEYS = ("vm_id", "test_vm_name", "test_vm_id", "state")


def _literal_name_problem(value: str) -> str | None:
    """Recovery point and switch names are passed to -Name parameters that take wildcards."""
    if any(ch in value for ch in hv.WILDCARD_CHARACTERS):
        return "* ? [ ] would be read as wildcards; give the exact name"
    return None


class TestFailoverProvider(ResourceProvider):
    """Dynamic provider of `TestFailover` (stateless, pickled by reference)."""

    __test__ = False  # not a pytest test class, despite its name

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checked = CheckFailures(news, secret_keys=("replica",))
        check_connection(checked, "replica", "TestFailover")
        checked.string("vm_name", required=True, problem=hv.vm_name_problem)
        checked.string("recovery_point", problem=_literal_name_problem)
        checked.string("switch_name", problem=_literal_name_problem)
        checked.boolean("start_vm", default=True)
        return checked.result()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if contains_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        if contains_unknown(news.get("replica")) or _identity(olds["replica"]) != _identity(news["replica"]):
            replaces.append("replica")
        changed = [
            k for k in ("replica", "start_vm") if contains_unknown(news.get(k)) or olds.get(k) != news.get(k)
        ]
        return DiffResult(changes=bool(replaces or changed), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = user_properties(props)
        session = _session(inputs)
        vm_id = hv.resolve_vm(session, inputs["vm_name"], replica=True).vm_id  # the only lookup by name
        switch = inputs.get("switch_name")
        try:
            test_vm = hv.start_test_failover(session, vm_id, inputs.get("recovery_point"), switch)
        except RemoteError as refused:
            if not hv.refused_by(refused, "StartVMFailover"):
                raise
            raise _rephrased(
                refused,
                f"{refused.remote_message}; a test failover needs the replica VM {inputs['vm_name']!r} (id "
                f"{vm_id}) off, replicated at least once, not resynchronising, and without another test VM: "
                f"if '{inputs['vm_name']} - Test' exists (an earlier drill, or an interrupted create), end "
                f"it on {session.host} with `Get-VM -Id {vm_id} | Stop-VMFailover` and run again",
            ) from None
        try:
            test_vm = hv.prepare_test_vm(session, test_vm.vm_id, switch, bool(inputs.get("start_vm", True)))
        except RemoteError as failed:
            _roll_back(session, vm_id, test_vm, failed)
        return CreateResult(f"{session.host.lower()}/{test_vm.vm_id}", _outputs(inputs, vm_id, test_vm))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outputs = user_properties(props)
        session = _session(outputs)
        test_vm = hv.find_vm(session, outputs["test_vm_id"])
        if test_vm is None:
            return ReadResult("", {})  # the drill was ended outside Pulumi
        inputs = {k: v for k, v in outputs.items() if k not in COMPUTED_KEYS}
        return ReadResult(id_, _outputs(inputs, outputs["vm_id"], test_vm), inputs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = user_properties(news)
        session = _session(inputs)
        start = bool(inputs.get("start_vm", True))
        statement = [
            hv.vm_by_id(olds["test_vm_id"]),
            cmd("Start-VM" if start else "Stop-VM", ErrorAction="Stop"),
        ]
        result = session.run(statement, [hv.vm_by_id(olds["test_vm_id"])])
        result.raise_errors()
        return UpdateResult(_outputs(inputs, olds["vm_id"], hv.parse_vms(result.output)[0]))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        outputs = user_properties(props)
        session = _session(outputs)
        # Only while OUR test VM exists: without a test VM, Stop-VMFailover would revert a real failover.
        if hv.find_vm(session, outputs["test_vm_id"]) is not None:
            hv.stop_test_failover(session, outputs["vm_id"])


def _roll_back(session: Session, vm_id: str, test_vm: hv.VirtualMachineRef, failed: RemoteError) -> None:
    """A failure after the test VM exists ends the drill again, so nothing is left half-made on the host."""
    try:
        hv.stop_test_failover(session, vm_id)
    except RemoteError as stuck:
        raise RemoteError(
            f"preparing test VM {test_vm.name!r} (id {test_vm.vm_id}) failed: {failed.remote_message}; "
            f"ending the drill failed too ({stuck.remote_message}): run Stop-VMFailover for the replica VM "
            f"(id {vm_id}) on {session.host}",
            host=session.host,
        ) from failed
    raise _rephrased(
        failed,
        f"preparing test VM {test_vm.name!r} failed, so the test failover was stopped again: "
        f"{failed.remote_message}",
    ) from failed


def _rephrased(error: RemoteError, message: str) -> RemoteError:
    """`error` (same type, cmdlet, id and host) with a message that says what it means for the drill."""
    return type(error)(
        message, cmdlet=error.cmdlet, fq_error_id=error.fq_error_id, category=error.category, host=error.host
    )


def _outputs(inputs: Mapping[str, Any], vm_id: str, test_vm: hv.VirtualMachineRef) -> dict[str, Any]:
    return {
        **inputs,
        "vm_id": vm_id,
        "test_vm_name": test_vm.name,
        "test_vm_id": test_vm.vm_id,
        "state": test_vm.state,
    }


def _session(inputs: Mapping[str, Any]) -> Session:
    return Session(HostConnection.from_input(inputs["replica"]))


def _identity(conn: Any) -> tuple[str, int]:
    c = HostConnection.from_input(conn)
    return c.host.lower(), c.effective_port


@dataclass
class TestFailoverArgs:
    """Inputs of `TestFailover`: a test failover of the replica VM `vm_name` on the host `replica`."""

    __test__ = False  # not a pytest test class, despite its name

    replica: pulumi.Input[HostConnectionArgs]
    """WinRM connection to the host that holds the replica VM."""
    vm_name: pulumi.Input[str]
    """The replica VM's name (the primary VM's name)."""
    recovery_point: pulumi.Input[str] | None = None
    """Name of the recovery snapshot to test (Get-VMSnapshot); the latest point when absent."""
    switch_name: pulumi.Input[str] | None = None
    """Connect the test VM's network adapters to this (isolated) switch; unconnected when absent."""
    start_vm: pulumi.Input[bool] | None = None
    """Start the test VM (default true)."""


class TestFailover(Resource, module="hvreplica", name="TestFailover"):
    """A DR drill: the test VM `"<vm> - Test"` made by `Start-VMFailover -AsTest`, removed on destroy."""

    __test__ = False  # not a pytest test class, despite its name

    vm_id: pulumi.Output[str]
    test_vm_name: pulumi.Output[str]
    test_vm_id: pulumi.Output[str]
    state: pulumi.Output[str]

    def __init__(
        self, resource_name: str, args: TestFailoverArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            TestFailoverProvider(),
            resource_name,
            secret_inputs(args_props(args, COMPUTED_KEYS), SECRET_INPUTS),
            opts,
        )
