"""Opt-in: the full lifecycle against real Hyper-V hosts named by HVREPLICA_REALHOST_CONFIG (two or three
hosts, tests/realhost/README.md): ReplicaServers and VM replication created, a no-op run, drift made by hand
and repaired, a certificate rotation, and destroy back to the starting state of every host. With
HVREPLICA_RECORD=1 every invocation and what Windows answered is written to tests/recordings/ (format in
tests/recordings/README.md).

The providers are driven directly, the way the engine calls them (check, create, diff, read, update,
delete), so the suite needs no Pulumi CLI or state backend."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hvreplica_provider import clock, pki
from hvreplica_provider import hyperv as hv
from hvreplica_provider.remoting import REGISTRY, HostConnection, Session, cmd, prop, text
from hvreplica_provider.resources.replica_server import ReplicaServerProvider, read_host
from hvreplica_provider.resources.replication_relationship import ReplicationRelationshipProvider
from tests.realhost.realhost_config import CONFIG_ENV, RECORD_ENV, RECORDINGS_ENV, SKIP_REASON, RealHost, load
from tests.support.recording import RECORDINGS_DIR, Recorder, Recording

pytestmark = [pytest.mark.realhost, pytest.mark.skipif(CONFIG_ENV not in os.environ, reason=SKIP_REASON)]

PFX_PASSWORD = "hvreplica-realhost-Pfx-1"


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[RealHost]]:
    yield load(Path(os.environ[CONFIG_ENV]))
    REGISTRY.close_all()


def _session(host: RealHost) -> Session:
    return Session(HostConnection.from_input(host.connection))


def _snapshot(session: Session) -> dict[str, Any]:
    """What the suite may change on a host, as comparable data."""
    state = read_host(session)
    return {
        "my": sorted(c.thumbprint for c in state.my),
        "root": sorted(c.thumbprint for c in state.root),
        "revocation": {k: dataclasses.asdict(v) for k, v in state.revocation.items()},
        "firewall": {n: r.enabled for n, r in state.firewall.items()},
        "hosts": state.hosts_lines,
        "server": dataclasses.asdict(state.server),
        "entries": sorted(dataclasses.astuple(e) for e in state.entries),
        "replications": sorted((r.vm_id, r.mode) for r in state.replications),
        "ledger": state.ledger.values,
    }


def _certificate(ca: pki.IssuedCertificate, fqdn: str) -> dict[str, str]:
    ca_cert, ca_key = pki.load_certificate(ca.cert_pem), pki.load_private_key(ca.private_key_pem)
    leaf = pki.issue_host_certificate(ca_cert, ca_key, fqdn, [], 2048, 30, clock.now())
    pfx = pki.export_pfx(leaf.cert_pem, leaf.private_key_pem, PFX_PASSWORD, "legacy", fqdn)
    return {
        "pfx_base64": base64.b64encode(pfx).decode(),
        "pfx_password": PFX_PASSWORD,
        "thumbprint": leaf.info.thumbprint,
    }


def _checked(provider: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    result = provider.check({}, inputs)
    assert [f.reason for f in result.failures] == []
    return result.inputs


def _server_inputs(
    host: RealHost, hosts: list[RealHost], certificate: dict[str, str], ca_pems: list[str]
) -> dict[str, Any]:
    index = hosts.index(host)
    neighbours = [h for h in hosts if abs(hosts.index(h) - index) == 1]
    predecessor = hosts[index - 1] if index else None
    return _checked(
        ReplicaServerProvider(),
        {
            "connection": host.connection,
            "fqdn": host.fqdn,
            "certificate": certificate,
            "trusted_ca_certs": ca_pems,
            "partner_trusted_ca_certs": ca_pems,
            "disable_revocation_check": True,  # the suite's CAs publish no CRL
            "allowed_primaries": (
                [{"primary_server": predecessor.fqdn, "storage_location": host.storage_location}]
                if predecessor
                else []
            ),
            "replication_enabled": predecessor is not None,
            "hosts_entries": {h.fqdn: h.address for h in neighbours},
        },
    )


def _relationship_inputs(primary: RealHost, replica: RealHost, vm: str, thumbprint: str) -> dict[str, Any]:
    return _checked(
        ReplicationRelationshipProvider(),
        {
            "primary": primary.connection,
            "replica": replica.connection,
            "vm_name": vm,
            "replica_server_fqdn": replica.fqdn,
            "certificate_thumbprint": thumbprint,
            "initial_replication": "network",
            "delete_replica_vm_on_destroy": True,  # back to the starting state
        },
    )


def _no_op(provider: Any, id_: str, outputs: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """A second run: nothing to change, and a refresh finds no drift."""
    assert not provider.diff(id_, outputs, inputs).changes
    read = provider.read(id_, outputs)
    assert read.id == id_
    assert not provider.diff(id_, read.outs, inputs).changes
    return read.outs


def _lifecycle(hosts: list[RealHost]) -> None:
    sessions = {h.fqdn: _session(h) for h in hosts}
    before = {fqdn: _snapshot(s) for fqdn, s in sessions.items()}
    now = clock.now()
    cas = {
        h.fqdn: pki.create_ca(pki.Subject(common_name=f"hvreplica realhost {h.fqdn}"), 2048, 30, now)
        for h in hosts
    }
    ca_pems = [ca.cert_pem for ca in cas.values()]
    servers, relationships = ReplicaServerProvider(), ReplicationRelationshipProvider()
    server_state: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    relationship_state: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {}
    flows = [(hosts[i], hosts[i + 1], vm) for i in range(len(hosts) - 1) for vm in hosts[i].vms]
    try:
        certificates = {h.fqdn: _certificate(cas[h.fqdn], h.fqdn) for h in hosts}
        for host in hosts:
            inputs = _server_inputs(host, hosts, certificates[host.fqdn], ca_pems)
            created = servers.create(inputs)
            server_state[host.fqdn] = (created.id, created.outs, inputs)
        for primary, replica, vm in flows:
            inputs = _relationship_inputs(primary, replica, vm, certificates[primary.fqdn]["thumbprint"])
            created = relationships.create(inputs)
            relationship_state[vm] = (created.id, created.outs, inputs)

        for key, (id_, outs, inputs) in server_state.items():
            server_state[key] = (id_, _no_op(servers, id_, outs, inputs), inputs)
        for key, (id_, outs, inputs) in relationship_state.items():
            relationship_state[key] = (id_, _no_op(relationships, id_, outs, inputs), inputs)

        # Drift made by hand on the first primary, found by refresh and repaired by update.
        primary, _, vm = flows[0]
        id_, outs, inputs = relationship_state[vm]
        other = 900 if inputs["frequency_sec"] != 900 else 300
        sessions[primary.fqdn].run(
            [
                hv.vm_by_id(outs["vm_id"]),
                cmd("Set-VMReplication", ReplicationFrequencySec=other, ErrorAction="Stop"),
            ]
        ).raise_errors()
        drifted = relationships.read(id_, outs)
        assert drifted.outs["frequency_sec"] == other
        assert relationships.diff(id_, drifted.outs, inputs).changes
        repaired = relationships.update(id_, drifted.outs, inputs).outs
        assert repaired["frequency_sec"] == inputs["frequency_sec"]
        relationship_state[vm] = (id_, _no_op(relationships, id_, repaired, inputs), inputs)

        # Certificate rotation: every host gets a new certificate from its CA, then the relationships follow.
        rotated = {h.fqdn: _certificate(cas[h.fqdn], h.fqdn) for h in hosts}
        for host in hosts:
            id_, outs, _ = server_state[host.fqdn]
            inputs = _server_inputs(host, hosts, rotated[host.fqdn], ca_pems)
            assert servers.diff(id_, outs, inputs).changes
            server_state[host.fqdn] = (id_, servers.update(id_, outs, inputs).outs, inputs)
        for primary, replica, vm in flows:
            id_, outs, _ = relationship_state[vm]
            inputs = _relationship_inputs(primary, replica, vm, rotated[primary.fqdn]["thumbprint"])
            updated = relationships.update(id_, outs, inputs).outs
            assert updated["certificate_thumbprint"] == rotated[primary.fqdn]["thumbprint"]
            relationship_state[vm] = (id_, updated, inputs)
        for host in hosts:  # a second apply retires the old certificates nothing uses any more
            id_, outs, inputs = server_state[host.fqdn]
            server_state[host.fqdn] = (id_, servers.update(id_, outs, inputs).outs, inputs)
    finally:
        for id_, outs, _ in relationship_state.values():
            relationships.delete(id_, outs)
        for id_, outs, _ in server_state.values():
            servers.delete(id_, outs)
    assert {fqdn: _snapshot(s) for fqdn, s in sessions.items()} == before


def _recording(hosts: list[RealHost]) -> Recording:
    """An empty recording naming the hosts, their VMs as they are now, and the Windows build."""
    described = {}
    for host in hosts:
        session = _session(host)
        vms = hv.parse_vms(session.run([cmd("Get-VM")]).output)
        states = {text(prop(o, "Name")): text(prop(o, "State")) for o in session.run([cmd("Get-VM")]).output}
        described[host.alias] = {
            "fqdn": host.fqdn,
            "vms": [{"name": v.name, "id": v.vm_id, "state": states.get(v.name, "Off")} for v in vms],
        }
    os_info = _session(hosts[0]).run([cmd("Get-CimInstance", ClassName="Win32_OperatingSystem")]).output[0]
    source = f"{text(prop(os_info, 'Caption'))} {text(prop(os_info, 'Version'))}".strip()
    return Recording(synthetic=False, source=source, hosts=described)


def test_full_lifecycle_returns_every_host_to_its_starting_state(hosts: list[RealHost]) -> None:
    record = os.environ.get(RECORD_ENV) == "1"
    recorder = Recorder(_recording(hosts), {h.connection["host"]: h.alias for h in hosts}) if record else None
    with recorder.recording_active() if recorder else contextlib.nullcontext():
        _lifecycle(hosts)
    if recorder is not None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        slug = re.sub(r"[^a-z0-9]+", "-", recorder.recording.source.lower()).strip("-")
        directory = Path(os.environ.get(RECORDINGS_ENV) or RECORDINGS_DIR)
        recorder.recording.save(directory / f"{stamp}-{slug}.json")
