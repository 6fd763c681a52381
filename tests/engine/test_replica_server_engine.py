"""ReplicaServer through the real dynamic-provider server, driven like the engine, against two hvsim hosts in
untrusted domains (HTTPS, verification on). Every step is checked on the host with plain pypsrp.

create -> unchanged up (no change, no host touched) -> in-place update -> password change (no host touched)
-> drift made on the host found by refresh and fixed by the next up -> replace (moved to another host,
delete-before-replace) -> delete -> delete again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hvreplica_provider import ReplicaServerProvider
from tests.support.engine import SERVER_TYPE, ProviderServer, ServerFactory
from tests.support.pwsh import prop
from tests.support.topology_lab import (
    HOST1,
    HOST2,
    HOSTS_FILE,
    HTTPS_RULE,
    REPLICATION_KEY,
    ExpectedHost,
    RunningLab,
    SiteMaterial,
    check_host,
    create_site_material,
    line_text,
    replica_server_inputs,
    running_dev_lab,
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with running_dev_lab(tmp_path_factory.mktemp("lab"), ["127.82.0.11", "127.82.0.12"]) as lab:
        yield lab


@pytest.fixture(scope="module")
def server(module_provider_servers: ServerFactory) -> ProviderServer:
    return module_provider_servers()


@pytest.fixture(scope="module")
def material(server: ProviderServer) -> dict[str, SiteMaterial]:
    return create_site_material(server, [HOST1, HOST2])


def expected(
    lab: RunningLab, fqdn: str, partner: str, material: dict[str, SiteMaterial], location: str
) -> ExpectedHost:
    return ExpectedHost(
        fqdn=fqdn,
        cert_pem=material[fqdn].cert["cert_pem"],
        ca_pems=[material[fqdn].ca["cert_pem"], material[partner].ca["cert_pem"]],
        partners={partner: lab.address(partner)},
        storage_location=location,
    )


def requests(lab: RunningLab) -> dict[str, int]:
    return {h: lab.emu.counters(h)["http_requests"] for h in (HOST1, HOST2)}


def test_lifecycle(lab: RunningLab, server: ProviderServer, material: dict[str, SiteMaterial]) -> None:
    urn = server.urn(SERVER_TYPE, f"server-{HOST2}")
    provider = ReplicaServerProvider()
    inputs = replica_server_inputs(lab, HOST2, HOST1, material)

    # create
    created = server.up(urn, provider, inputs)
    assert created.op == "create" and created.state.id
    check_host(lab, expected(lab, HOST2, HOST1, material, "D:\\Replica"))
    assert created.state.outputs["certificate_thumbprint"] == material[HOST2].cert["thumbprint"]

    # an unchanged second up: no change, and Check/Diff never touch the host
    before = requests(lab)
    same = server.up(urn, provider, inputs, created.state)
    assert same.op == "same"
    assert requests(lab) == before

    # in-place update: another storage location for the partner's replicas
    moved = {**inputs, "allowed_primaries": [{"primary_server": HOST1, "storage_location": "E:\\Replicas"}]}
    updated = server.up(urn, provider, moved, same.state)
    assert updated.op == "update" and updated.diff is not None and updated.diff.replaces == ()
    check_host(lab, expected(lab, HOST2, HOST1, material, "E:\\Replicas"))
    assert updated.state.outputs["allowed_primaries"][0]["storage_location"] == "E:\\Replicas"

    # a WinRM password change updates the stored connection only: no host is touched
    before = requests(lab)
    rotated = {**moved, "connection": {**moved["connection"], "password": "Rotated-But-Unused-9"}}
    password_step = server.up(urn, provider, rotated, updated.state)
    assert password_step.op == "update" and password_step.diff.replaces == ()
    assert requests(lab) == before
    state = server.up(urn, provider, moved, password_step.state).state  # back to the working password

    # drift made directly on the host: refresh shows it, the next up fixes it in place
    with lab.shell(HOST2) as sh:
        sh.run("Disable-NetFirewallRule", Name=HTTPS_RULE)
        sh.run("Set-ItemProperty", Path=REPLICATION_KEY, Name="DisableCertRevocationCheck", Value=0)
    refreshed = server.refresh(state)
    assert refreshed is not None and refreshed.id == state.id
    assert refreshed.inputs["open_firewall"] is False
    assert refreshed.inputs["disable_revocation_check"] is False
    fixed = server.up(urn, provider, moved, refreshed)
    assert fixed.op == "update"
    check_host(lab, expected(lab, HOST2, HOST1, material, "E:\\Replicas"))

    # replace: the connection names another host (delete-before-replace, as the provider asks)
    other = replica_server_inputs(lab, HOST1, HOST2, material)
    replaced = server.up(server.urn(SERVER_TYPE, f"server-{HOST2}"), provider, other, fixed.state)
    assert replaced.op == "replace" and replaced.diff.replaces == ("connection",)
    assert replaced.diff.delete_before_replace
    check_host(lab, expected(lab, HOST1, HOST2, material, "D:\\Replica"))
    _assert_undone(lab, HOST2, material[HOST2])

    # delete, then delete again (already undone is success)
    server.destroy(replaced.state)
    _assert_undone(lab, HOST1, material[HOST1])
    server.destroy(replaced.state)
    _assert_undone(lab, HOST1, material[HOST1])


def _assert_undone(lab: RunningLab, fqdn: str, own: SiteMaterial) -> None:
    """Everything the resource did on `fqdn` is undone (the hosts start with none of it)."""
    with lab.shell(fqdn) as sh:
        (replication,) = sh.run("Get-VMReplicationServer")
        assert prop(replication, "ReplicationEnabled") is False
        assert sh.run("Get-VMReplicationAuthorizationEntry") == []
        my = {str(prop(c, "Thumbprint")) for c in sh.run("Get-ChildItem", Path=r"Cert:\LocalMachine\My")}
        assert own.cert["thumbprint"] not in my
        root = {str(prop(c, "Thumbprint")) for c in sh.run("Get-ChildItem", Path=r"Cert:\LocalMachine\Root")}
        assert own.ca["thumbprint"] not in root
        (rule,) = sh.run("Get-NetFirewallRule", Name=HTTPS_RULE)
        assert str(prop(rule, "Enabled")) in ("False", "2")
        hosts = [line_text(o) for o in sh.run("Get-Content", Path=HOSTS_FILE)]
        assert not any("hvreplica" in line for line in hosts), hosts
