"""Every example project under examples/ through the real Pulumi CLI against its own hvsim lab: `up` with
its committed Pulumi.dev.yaml (pointed at the lab, 2048-bit keys), a no-change preview, `destroy`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.support.engine import PROJECT_DIR, stack_config
from tests.support.pulumi_cli import CliProject
from tests.support.pwsh import prop
from tests.support.topology_lab import running_dev_lab, wait_replicating

EXAMPLES = PROJECT_DIR / "examples"
# dr-drill needs a replicating topology first: tests/e2e/test_dr_examples_e2e.py runs it after one.
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "Pulumi.yaml").is_file() and p.name != "dr-drill")
# An example with an hvsim.toml of its own (many VMs) runs against that lab; the others use the demo's.
OCTETS = {name: 100 + i for i, name in enumerate(NAMES)}


def test_every_example_is_covered() -> None:
    assert {"bidirectional", "cross-domain-pair", "many-vms"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_up_noop_destroy(tmp_path: Path, name: str) -> None:
    source = EXAMPLES / name
    lab_source = source / "hvsim.toml"
    octet = OCTETS[name]
    with running_dev_lab(
        tmp_path,
        [f"127.{octet}.0.11", f"127.{octet}.0.12"],
        **({"source": lab_source} if lab_source.is_file() else {}),
    ) as lab:
        project_name = yaml.safe_load((source / "Pulumi.yaml").read_text())["name"]
        config = stack_config(source / "Pulumi.dev.yaml") | {
            f"{project_name}:hvsim_config": str(lab.config_file),
            f"{project_name}:hvsim_state_dir": str(lab.state_dir),
            f"{project_name}:rsa_bits": 2048,
        }
        project = CliProject(source, tmp_path, "e2e", config)
        project.up()

        replication = project.outputs()["replication"]
        assert replication, "the example replicates nothing"
        by_primary: dict[str, list[str]] = defaultdict(list)
        for key in replication:
            primary, vm = key.split("/", 1)
            by_primary[primary].append(vm)
        for primary, vms in by_primary.items():
            wait_replicating(lab, primary, vms)
        project.preview("--expect-no-changes").ok()

        project.destroy()
        for primary, vms in by_primary.items():
            with lab.shell(primary) as sh:
                left = {str(prop(r, "VMName")) for r in sh.run("Get-VMReplication")}
            assert not left & set(vms), f"{primary}: replication left after destroy: {left & set(vms)}"
