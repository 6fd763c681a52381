"""The disaster-recovery examples through the real Pulumi CLI against an hvsim lab: a DR drill stack next to
a replicating topology (examples/dr-drill after examples/cross-domain-pair), and a planned failover by
flipping a pair's direction in stack config and flipping it back (examples/planned-failover), with a
refresh that leaves `preview --expect-no-changes` clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.engine import PROJECT_DIR, stack_config
from tests.support.pulumi_cli import CliProject
from tests.support.pwsh import prop
from tests.support.topology_lab import HOST1, HOST2, RunningLab, running_dev_lab, wait_replicating

pytestmark = pytest.mark.usefixtures("pulumi_cli")

EXAMPLES = PROJECT_DIR / "examples"


def project(example: str, lab: RunningLab, workdir: Path, **overrides: Any) -> CliProject:
    source = EXAMPLES / example
    name = yaml.safe_load((source / "Pulumi.yaml").read_text())["name"]
    config = stack_config(source / "Pulumi.dev.yaml") | {
        f"{name}:hvsim_config": str(lab.config_file),
        f"{name}:hvsim_state_dir": str(lab.state_dir),
        **{f"{name}:{key}": value for key, value in overrides.items()},
    }
    if "rsa_bits" in yaml.safe_load((source / "Pulumi.yaml").read_text())["config"]:
        config[f"{name}:rsa_bits"] = 2048
    return CliProject(source, workdir, "e2e", config)


def legs(lab: RunningLab, fqdn: str) -> dict[str, tuple[str, str]]:
    with lab.shell(fqdn) as sh:
        return {
            str(prop(r, "VMName")): (str(prop(r, "ReplicationMode")), str(prop(r, "ReplicationState")))
            for r in sh.run("Get-VMReplication")
        }


def vm_names(lab: RunningLab, fqdn: str) -> list[str]:
    with lab.shell(fqdn) as sh:
        return [str(prop(v, "Name")) for v in sh.run("Get-VM")]


def test_dr_drill_next_to_a_replicating_pair(tmp_path: Path) -> None:
    with running_dev_lab(tmp_path, ["127.120.0.11", "127.120.0.12"]) as lab:
        pair = project("cross-domain-pair", lab, tmp_path / "pair")
        pair.up()
        wait_replicating(lab, HOST1, ["web01"])
        drill = project("dr-drill", lab, tmp_path / "drill")
        drill.up()
        started = drill.outputs()["drills"]["web01"]
        assert (started["test_vm"], started["state"]) == ("web01 - Test", "Running")
        assert "web01 - Test" in vm_names(lab, HOST2)
        assert legs(lab, HOST1)["web01"] == ("Primary", "Replicating")  # production replication goes on
        drill.refresh()
        drill.preview("--expect-no-changes").ok()
        drill.destroy()
        assert "web01 - Test" not in vm_names(lab, HOST2)
        assert legs(lab, HOST2)["web01"] == ("Replica", "Replicating")
        pair.destroy()


def test_planned_failover_flip_and_flip_back(tmp_path: Path) -> None:
    with running_dev_lab(tmp_path, ["127.121.0.11", "127.121.0.12"]) as lab:
        flip = project("planned-failover", lab, tmp_path / "flip")
        base = stack_config(flip.dir / f"Pulumi.{flip.stack}.yaml")
        flip.up()
        wait_replicating(lab, HOST1, ["db01"])
        flip.refresh()  # observed state, health and statistics are outputs: nothing to change after it
        flip.preview("--expect-no-changes").ok()
        flip.up()  # nothing to change; the stack outputs are computed again from the refreshed state
        health = flip.outputs()["replication"][f"{HOST1}/db01"]
        assert health["health"] == "Normal" and health["last_replication_time"]
        assert {"successful_replications", "missed_replications", "pending_size_bytes"} <= set(
            health["statistics"]
        )

        key = "hvreplica-planned-failover"
        flip.write_config(base | {f"{key}:primary": HOST2, f"{key}:replica": HOST1})
        over = flip.up()
        assert "replace" not in over.output.lower(), over.output
        assert legs(lab, HOST2)["db01"] == ("Primary", "Replicating")
        assert legs(lab, HOST1)["db01"] == ("Replica", "Replicating")
        assert set(flip.outputs()["replication"]) == {f"{HOST2}/db01"}
        flip.preview("--expect-no-changes").ok()

        flip.write_config(base)
        back = flip.up()
        assert "replace" not in back.output.lower(), back.output
        assert legs(lab, HOST1)["db01"] == ("Primary", "Replicating")
        assert legs(lab, HOST2)["db01"] == ("Replica", "Replicating")
        flip.destroy()
