"""hvsim conformance against recordings (tests/recordings/README.md): every recording present is replayed
against an hvsim lab with the recorded hosts and VMs, and every difference in the answers is reported. With
no recording in the folder the parametrized test has nothing to run (pytest reports it skipped, never
passed); the replay machinery itself is tested on a recording made from hvsim here."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan

from hvreplica_provider import hyperv as hv
from hvreplica_provider.remoting import REGISTRY, Session, cmd
from tests.support.hvsim_env import (
    basic_connection,
    host,
    lab_config,
    running_lab,
    wsman_kwargs,
)
from tests.support.recording import RECORDINGS_DIR, Recorder, Recording, replay

RECORDINGS = sorted(RECORDINGS_DIR.glob("*.json"))
_subnets = itertools.count(1)


@contextlib.contextmanager
def replay_lab(recording: Recording) -> Iterator[dict[str, RunspacePool]]:
    """An hvsim lab with the recording's hosts (same FQDNs) and VMs (same names, ids and power state): a pool
    per alias."""
    subnet = next(_subnets)
    aliases = list(recording.hosts)
    entries = [host(recording.hosts[a]["fqdn"], f"127.78.{subnet}.{i + 1}") for i, a in enumerate(aliases)]
    with running_lab(lab_config(*entries)) as emulator, contextlib.ExitStack() as stack:
        with emulator.lab.lock:
            for alias in aliases:
                hyperv = emulator.lab.host(recording.hosts[alias]["fqdn"]).hyperv
                for vm in recording.hosts[alias].get("vms", []):
                    added = hyperv.add_vm(vm["name"], vm_id=vm["id"])
                    if vm.get("state", "Off") == "Running":
                        added.state, added.uptime_started = "Running", emulator.lab.now()
        pools = {}
        for alias in aliases:
            wsman = stack.enter_context(WSMan(**wsman_kwargs(emulator, recording.hosts[alias]["fqdn"])))
            pools[alias] = stack.enter_context(RunspacePool(wsman))
        yield pools


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_recording_replays_on_hvsim(path: Path) -> None:
    recording = Recording.load(path)
    with replay_lab(recording) as pools:
        report = replay(recording, pools)
    if report.skipped:
        print(f"{path.name}: exchanges {report.skipped} not replayed (secrets or binary data redacted)")
    assert report.differences == [], f"{path.name}: hvsim differs from {recording.source}:\n" + "\n".join(
        report.differences
    )


def test_replay_machinery_on_a_synthetic_recording(tmp_path: Path) -> None:
    """Record provider invocations against one hvsim lab, save and load the file, replay it against a fresh
    lab: no difference. Then alter the recorded answers: each alteration is reported."""
    entry = host("hv1.contoso.com", "127.78.0.1", vms=["web01"])
    with running_lab(lab_config(entry)) as emulator:
        vm_id = str(emulator.lab.host("hv1.contoso.com").hyperv.find_vms("web01")[0].id)
        session = Session(basic_connection(emulator, entry))
        recording = Recording(
            synthetic=True,
            source="hvsim (test_replay_machinery_on_a_synthetic_recording)",
            hosts={
                "primary": {
                    "fqdn": "hv1.contoso.com",
                    "vms": [{"name": "web01", "id": vm_id, "state": "Running"}],
                }
            },
        )
        with Recorder(recording, {"127.78.0.1": "primary"}).recording_active():
            session.run([cmd("Get-VM", Name="WEB01")], [cmd("Get-VM", Name="ghost")])
            assert hv.vm_replications(session, vm_id) == []  # the non-terminating "not enabled"
            session.run([cmd("Get-VMReplicationServer")])
        REGISTRY.close_all()
    path = tmp_path / "synthetic.json"
    recording.save(path)
    loaded = Recording.load(path)
    assert loaded == recording and loaded.recorded_at
    assert [e.errors[0].fq_error_id.split(",")[0] for e in loaded.exchanges[:2]] == [
        "InvalidParameter",  # Get-VM -Name ghost
        "OperationFailed",  # Get-VM -Id | Get-VMReplication
    ]
    with replay_lab(loaded) as pools:
        clean = replay(loaded, pools)
    assert (clean.differences, clean.skipped, clean.replayed) == ([], [], 3)

    loaded.exchanges[1].errors[
        0
    ].fq_error_id = "VMReplication_NotEnabled,Microsoft.HyperV.PowerShell.Commands.GetVMReplication"
    vm = loaded.exchanges[0].output[0]
    vm.properties["Generation"] = 1
    del vm.properties["Notes"]
    loaded.exchanges[2].statements[0][0]["parameters"]["Credential"] = "<redacted>"
    with replay_lab(loaded) as pools:
        altered = replay(loaded, pools)
    assert altered.skipped == [2] and altered.replayed == 2
    assert len(altered.differences) == 3, altered.differences
    assert any("errors (id, category, terminating)" in d and "exchange 1" in d for d in altered.differences)
    assert any("Generation = 2 instead of 1" in d for d in altered.differences)
    assert any("has extra ['Notes']" in d for d in altered.differences)
