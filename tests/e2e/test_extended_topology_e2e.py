"""A ReplicaTopology flow with `extend_to` through the real Pulumi CLI: host1's VM replicates to host2 and,
extended, on to host3 (three hvsim hosts in three untrusted domains). The legs are checked on the hosts
with plain pypsrp; a no-change preview, then destroy removes both legs and keeps the replica VMs."""

from __future__ import annotations

from pathlib import Path

import yaml

from hvsim.config import parse_config
from tests.support.hvsim_env import host, lab_config_dict, running_lab, to_toml
from tests.support.pulumi_cli import CliProject
from tests.support.pwsh import prop
from tests.support.topology_lab import RunningLab

HOSTS = ("host1.contoso.com", "host2.fabrikam.com", "host3.northwind.com")
PROGRAM = '''import pulumi

from hvreplica_provider.topology import ReplicationFlow, emulated_topology

config = pulumi.Config()
flow = ReplicationFlow("host1.contoso.com", "host2.fabrikam.com", ("far01",), extend_to="host3.northwind.com")
topology = emulated_topology(
    "chain", config, [flow], {"frequency_sec": 30, "wait_for_initial_replication": True}
)
pulumi.export("replication", topology.replication_summary())
'''


def legs(lab: RunningLab, fqdn: str) -> dict[str, tuple[str, str]]:
    with lab.shell(fqdn) as sh:
        return {
            str(prop(r, "ReplicationRelationshipType")): (
                str(prop(r, "ReplicationMode")),
                str(prop(r, "ReplicationState")),
            )
            for r in sh.run("Get-VMReplication", VMName="far01")
        }


def test_a_flow_extended_to_a_third_host(tmp_path: Path) -> None:
    raw = lab_config_dict(
        *(host(f, f"127.111.0.{11 + i}", vms=["far01"] if i == 0 else []) for i, f in enumerate(HOSTS)),
        domains=[{"name": f.split(".", 1)[1]} for f in HOSTS],
        time_scale=600.0,
    )
    (tmp_path / "hvsim.toml").write_text(to_toml(raw))
    source = tmp_path / "source"
    source.mkdir()
    (source / "__main__.py").write_text(PROGRAM)
    settings = {"name": "hvreplica-chain", "runtime": {"name": "python", "options": {"virtualenv": ".venv"}}}
    (source / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    with running_lab(parse_config(raw), tmp_path / "hvsim-state") as emu:
        lab = RunningLab(emu, tmp_path / "hvsim.toml", tmp_path / "hvsim-state")
        config = {
            "hvreplica-chain:hvsim_config": str(lab.config_file),
            "hvreplica-chain:hvsim_state_dir": str(lab.state_dir),
            "hvreplica-chain:rsa_bits": 2048,
        }
        project = CliProject(source, tmp_path, "e2e", config)
        up = project.up()
        assert "chain-repl-host2.fabrikam.com/far01/extended" in up.output, up.output

        summary = project.outputs()["replication"]
        assert summary["host2.fabrikam.com/far01/extended"]["replica"] == "host3.northwind.com"
        assert legs(lab, HOSTS[0]) == {"Simple": ("Primary", "Replicating")}
        assert legs(lab, HOSTS[1]) == {
            "Simple": ("Replica", "Replicating"),
            "Extended": ("Replica", "Replicating"),
        }
        assert legs(lab, HOSTS[2]) == {"Simple": ("ExtendedReplica", "Replicating")}
        project.preview("--expect-no-changes").ok()

        project.destroy()
        for fqdn in HOSTS:
            assert legs(lab, fqdn) == {}, f"{fqdn}: replication left after destroy"
        with lab.shell(HOSTS[2]) as sh:  # the extended copy is kept (delete_replica_vm_on_destroy is false)
            assert "far01" in [str(prop(v, "Name")) for v in sh.run("Get-VM")]
