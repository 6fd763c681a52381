"""The provider against Windows' error model and Windows' rules of case (issue 9), through real pypsrp to
hvsim: replication removed by hand reads as gone and delete still succeeds; a vm_name typed in another case
finds its VM; excluded disks are sent exactly as the VM stores them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from hvreplica_provider import hyperv as hv
from hvreplica_provider import windows as win
from hvreplica_provider.remoting import REGISTRY, HostConnection, Session, Unreachable, Validation, cmd
from hvreplica_provider.resources.replica_server import (
    ReplicaServerProvider,
    _restart_vmms,
    desired_from,
    read_host,
)
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from hvsim.hyperv import DEFAULT_VHD_DIR, HardDisk
from tests.provider.support import (
    PRIMARY,
    REPLICA,
    Lab,
    Site,
    prepare_sites,
    prop,
    relationship_inputs,
    two_site_lab,
)
from tests.support.hvsim_env import (
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    basic_connection,
    host,
    lab_config,
    running_lab,
)

DATA_DISK = f"{DEFAULT_VHD_DIR}\\Disk2-Data.vhdx"


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Lab, dict[str, Site]]]:
    with two_site_lab("76.0", vms=("byhand01", "case01", "disks01")) as lab:
        prepared = prepare_sites(lab)
        with lab.emu.lab.lock:  # a second disk, stored in mixed case as Hyper-V keeps what it was given
            vm = lab.emu.lab.hosts[PRIMARY].hyperv.find_vms("disks01")[0]
            vm.hard_disks.append(HardDisk(path=DATA_DISK, controller_location=1))
        yield lab, prepared
    REGISTRY.close_all()


@pytest.fixture()
def lab(sites: tuple[Lab, dict[str, Site]]) -> Lab:
    return sites[0]


def legs(lab: Lab, fqdn: str) -> list[str]:
    return [str(prop(r, "VMName")) for r in lab.run(fqdn, "Get-VMReplication")]


def test_replication_removed_by_hand_reads_as_gone_and_delete_succeeds(lab: Lab) -> None:
    """Windows writes "not enabled" as a NON-terminating OperationFailed/InvalidOperation record; a provider
    that waited for a terminating error (or another id) raised on refresh and failed every destroy."""
    provider = ReplicationRelationshipProvider()
    created = provider.create(relationship_inputs(lab, "byhand01", initial_replication="none"))
    lab.run(PRIMARY, "Remove-VMReplication", VMName="byhand01")
    assert provider.read(created.id, created.outs).id == ""
    lab.run(REPLICA, "Remove-VMReplication", VMName="byhand01")  # both legs removed by hand
    provider.delete(created.id, created.outs)
    provider.delete(created.id, created.outs)  # and again: already gone is success
    assert "byhand01" not in legs(lab, PRIMARY) and "byhand01" not in legs(lab, REPLICA)


def test_vm_name_in_another_case_finds_the_vm(lab: Lab) -> None:
    """Get-VM -Name matches ignoring case on Windows (OrdinalIgnoreCase), so vm_name 'CASE01' is VM case01."""
    provider = ReplicationRelationshipProvider()
    inputs = relationship_inputs(lab, "CASE01", initial_replication="none")
    created = provider.create(inputs)
    vm_id = str(prop(lab.run(PRIMARY, "Get-VM", Name="case01")[0], "Id")).lower()
    assert created.outs["vm_id"] == vm_id and "case01" in legs(lab, PRIMARY)
    read = provider.read(created.id, created.outs)
    assert read.id == created.id and not provider.diff(created.id, read.outs, inputs).changes
    provider.delete(created.id, created.outs)
    assert "case01" not in legs(lab, PRIMARY)


def test_excluded_disk_in_another_case_is_sent_as_stored(lab: Lab) -> None:
    """Enable-VMReplication compares -ExcludedVhdPath case-sensitively (hvsim does as Windows): the provider
    resolves the path against Get-VMHardDiskDrive ignoring case and sends the stored spelling."""
    refused = lab.run(
        PRIMARY,
        "Enable-VMReplication",
        VMName="disks01",
        ExcludedVhdPath=[DATA_DISK.lower()],
        ReplicaServerName=REPLICA,
        ReplicaServerPort=443,
        AuthenticationType="Certificate",
        CertificateThumbprint="00" * 20,
        ErrorAction="SilentlyContinue",
    )
    assert refused == [] and "disks01" not in legs(lab, PRIMARY)  # hvsim refuses the other case itself
    provider = ReplicationRelationshipProvider()
    inputs = relationship_inputs(
        lab, "disks01", initial_replication="none", excluded_vhd_paths=[DATA_DISK.upper()]
    )
    created = provider.create(inputs)
    leg = next(r for r in lab.run(PRIMARY, "Get-VMReplication") if str(prop(r, "VMName")) == "disks01")
    excluded = prop(leg, "ExcludedDisks")  # HardDiskDrive texts, which name the controller location
    assert len(excluded) == 1 and "at location 1'" in str(excluded[0])
    provider.delete(created.id, created.outs)


def test_an_excluded_path_that_is_no_disk_of_the_vm_is_refused_before_enabling(lab: Lab) -> None:
    provider = ReplicationRelationshipProvider()
    inputs = relationship_inputs(
        lab, "disks01", initial_replication="none", excluded_vhd_paths=["D:\\none.vhdx"]
    )
    with pytest.raises(Validation) as caught:
        provider.create(inputs)
    assert "'D:\\none.vhdx' is not a virtual hard disk" in str(caught.value)
    assert DATA_DISK in str(caught.value)
    assert "disks01" not in legs(lab, PRIMARY)


def test_pools_open_the_windows_powershell_endpoint(lab: Lab) -> None:
    """The shell's ResourceURI names Microsoft.PowerShell (Windows PowerShell 5.1) explicitly."""
    entry = REGISTRY.entry(HostConnection.from_input(lab.connection(PRIMARY)))
    pool = entry.acquire()
    try:
        assert pool.shell.resource_uri == "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
    finally:
        entry.release(pool)


def _vmms_started_long_ago(lab: Lab, fqdn: str) -> dt.datetime:
    facts = lab.emu.lab.host(fqdn).facts
    with lab.emu.lab.lock:
        facts.vmms_started -= dt.timedelta(days=3)
        return facts.vmms_started


def test_vmms_restarts_on_request_after_the_revocation_value_changed(
    sites: tuple[Lab, dict[str, Site]],
) -> None:
    lab, prepared = sites
    site = prepared[PRIMARY]
    provider = ReplicaServerProvider()
    # Drift (one value reset by hand) is repaired; without the opt-in VMMS is left alone.
    lab.run(
        PRIMARY, "Set-ItemProperty", Path=win.FAILOVER_REPLICATION_KEY, Name=win.REVOCATION_VALUE, Value=0
    )
    before = _vmms_started_long_ago(lab, PRIMARY)
    drifted = {**site.outputs, "disable_revocation_check": False}
    provider.update(site.id, drifted, site.inputs)
    assert revocation_values(lab, PRIMARY)["FailoverReplication"] == 1
    assert lab.emu.lab.host(PRIMARY).facts.vmms_started == before
    # With it, VMMS restarts once the value changed.
    lab.run(
        PRIMARY, "Set-ItemProperty", Path=win.FAILOVER_REPLICATION_KEY, Name=win.REVOCATION_VALUE, Value=0
    )
    opted = {**site.inputs, "restart_vmms_on_revocation_change": True}
    provider.update(site.id, drifted, opted)
    assert lab.emu.lab.host(PRIMARY).facts.vmms_started - before > dt.timedelta(days=2)
    # Not while a replication transfers its initial copy: the restart would abort it.
    before = _vmms_started_long_ago(lab, PRIMARY)
    session = Session(HostConnection.from_input(lab.connection(PRIMARY)))
    state = read_host(session)
    settings = hv.ReplicationSettings(REPLICA, "Certificate", "AB" * 20, 443)
    state.replications = [
        hv.VMReplicationInfo(
            "busy01", "id", "Primary", "InitialReplicationInProgress", "Normal", PRIMARY, REPLICA, settings
        )
    ]
    _restart_vmms(session, desired_from(opted), state)
    assert lab.emu.lab.host(PRIMARY).facts.vmms_started == before


def revocation_values(lab: Lab, fqdn: str) -> dict[str, int | None]:
    out = {}
    for key in win.REVOCATION_KEYS:
        found = lab.run(fqdn, "Get-ItemProperty", Path=key)  # nothing when the key is absent
        out[key.rsplit("\\", 1)[-1]] = int(prop(found[0], win.REVOCATION_VALUE)) if found else None
    return out


def test_revocation_check_is_disabled_under_both_keys_and_undone(sites: tuple[Lab, dict[str, Site]]) -> None:
    """DisableCertRevocationCheck goes under Virtualization\\Replication AND ...\\FailoverReplication (which
    one VMMS reads is undocumented); both are ledgered, and delete removes the keys it created."""
    lab, prepared = sites
    assert revocation_values(lab, REPLICA) == {"Replication": 1, "FailoverReplication": 1}
    ledger = lab.ledger(REPLICA)
    assert (
        ledger["FailoverRevocationValuePrior"] == "null" and ledger["FailoverReplicationKeyCreated"] == "true"
    )
    site = prepared[REPLICA]
    ReplicaServerProvider().delete(site.id, site.outputs)
    assert revocation_values(lab, REPLICA) == {"Replication": None, "FailoverReplication": None}


def test_a_host_without_https_listener_says_how_to_fix_it() -> None:
    """hvsim's `https_listener = false` is a fresh Windows Server: only the HTTP listener. The provider's
    error says how to create the HTTPS listener or how to use http + NTLM; http + NTLM then works."""
    entry = {**host("hv9.contoso.com", "127.76.1.1", vms=["web01"], http=True), "https_listener": False}
    with running_lab(lab_config(entry)) as emulator:
        https = basic_connection(emulator, entry, retry_deadline_sec=1)
        with pytest.raises(Unreachable) as refused:
            Session(https).run([cmd("Get-VM")])
        message = str(refused.value)
        assert "New-Item -Path WSMan:\\localhost\\Listener -Transport HTTPS" in message
        assert "transport http, port 5985 and auth ntlm" in message
        http = HostConnection(
            host="127.76.1.1",
            port=entry["winrm_http_port"],
            transport="http",
            auth="ntlm",
            username=DEFAULT_USER,
            password=DEFAULT_PASSWORD,
        )
        names = [str(prop(v, "Name")) for v in Session(http).run([cmd("Get-VM")]).output]
        assert names == ["web01"]
    REGISTRY.close_all()
