"""Each example under examples/ run as its Pulumi project would run it: its __main__.py and its committed
Pulumi.dev.yaml (pointed at this test's lab, RSA 2048), under pulumi.runtime mocks whose new_resource runs
the REAL providers against hvsim. The result is then checked on the hosts with plain pypsrp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from hvreplica_provider.stack import ConfigError
from hvreplica_provider.testing import MockedProgram
from tests.support.engine import PROJECT_DIR, stack_config
from tests.support.topology_lab import (
    HOST1,
    HOST2,
    ExpectedHost,
    RunningLab,
    check_host,
    running_dev_lab,
    wait_replicating,
)

EXAMPLES = PROJECT_DIR / "examples"
pytestmark = pytest.mark.usefixtures("fast_polling")  # the providers run in this process, under mocks


def example_config(name: str, lab: RunningLab, **overrides: Any) -> tuple[Path, str, dict[str, Any]]:
    """(program, project, config) of an example, its Pulumi.dev.yaml pointed at `lab`."""
    project = yaml.safe_load((EXAMPLES / name / "Pulumi.yaml").read_text())["name"]
    config = stack_config(EXAMPLES / name / "Pulumi.dev.yaml")
    config |= {
        f"{project}:hvsim_config": str(lab.config_file),
        f"{project}:hvsim_state_dir": str(lab.state_dir),
        f"{project}:rsa_bits": 2048,
        **{f"{project}:{k}": v for k, v in overrides.items()},
    }
    return EXAMPLES / name / "__main__.py", project, config


def expected_hosts(
    lab: RunningLab, created: dict[str, dict[str, Any]], prefix: str, flows: dict[str, dict[str, str]]
) -> list[ExpectedHost]:
    cas = {HOST1: created["ca-contoso.com"]["cert_pem"], HOST2: created["ca-fabrikam.com"]["cert_pem"]}
    out = []
    for fqdn, partner in ((HOST1, HOST2), (HOST2, HOST1)):
        out.append(
            ExpectedHost(
                fqdn=fqdn,
                cert_pem=created[f"{prefix}-cert-{fqdn}"]["cert_pem"],
                ca_pems=[cas[fqdn], cas[partner]],
                partners={partner: lab.address(partner)},
                storage_location="D:\\Hyper-V\\Replica",
                replicated_vms=flows.get(fqdn, {}),
            )
        )
    return out


def test_every_example_is_a_complete_project() -> None:
    for example in ("cross-domain-pair", "bidirectional", "many-vms"):
        folder = EXAMPLES / example
        project = yaml.safe_load((folder / "Pulumi.yaml").read_text())
        assert project["runtime"]["name"] == "python"
        assert (folder / project["runtime"]["options"]["virtualenv"]).resolve() == PROJECT_DIR / ".venv"
        readme = (folder / "README.md").read_text()
        assert "pulumi up" in readme and "hvsim" in readme


@pytest.mark.parametrize(
    "example", ["cross-domain-pair", "bidirectional", "many-vms", "planned-failover", "dr-drill"]
)
def test_every_example_declares_its_keys_and_refuses_others(
    mocked_program: MockedProgram, example: str
) -> None:
    folder = EXAMPLES / example
    project = yaml.safe_load((folder / "Pulumi.yaml").read_text())
    config = stack_config(folder / "Pulumi.dev.yaml")
    assert {key.split(":", 1)[1] for key in config} <= set(project["config"])
    typo = f"{project['name']}:vm"
    with pytest.raises(ConfigError, match=f"unknown config key.*{typo}"):
        mocked_program.run(folder / "__main__.py", {**config, typo: "web01"}, project["name"])
    assert mocked_program.mocks.types == {}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    with running_dev_lab(tmp_path, ["127.85.0.11", "127.85.0.12"]) as lab:
        yield lab


@pulumi.runtime.test
def test_cross_domain_pair(mocked_program: MockedProgram, lab: RunningLab) -> pulumi.Output:
    program, project, config = example_config("cross-domain-pair", lab)
    exports = mocked_program.run(program, config, project)

    def verify(resolved: dict[str, Any]) -> None:
        assert set(resolved["replication"]) == {f"{HOST1}/web01"}
        wait_replicating(lab, HOST1, ["web01"])
        flows = {HOST1: {"web01": HOST2}}
        for host in expected_hosts(lab, mocked_program.mocks.outputs, "pair", flows):
            check_host(lab, host)

    return pulumi.Output.from_input(exports).apply(verify)


@pulumi.runtime.test
def test_bidirectional(mocked_program: MockedProgram, lab: RunningLab) -> pulumi.Output:
    program, project, config = example_config("bidirectional", lab)
    exports = mocked_program.run(program, config, project)

    def verify(resolved: dict[str, Any]) -> None:
        assert set(resolved["replication"]) == {f"{HOST1}/web01", f"{HOST1}/db01", f"{HOST2}/app02"}
        wait_replicating(lab, HOST1, ["web01", "db01"])
        wait_replicating(lab, HOST2, ["app02"])
        flows = {HOST1: {"web01": HOST2, "db01": HOST2}, HOST2: {"app02": HOST1}}
        for host in expected_hosts(lab, mocked_program.mocks.outputs, "both-ways", flows):
            check_host(lab, host)
        frequency = mocked_program.mocks.outputs[f"both-ways-repl-{HOST2}/app02"]["frequency_sec"]
        assert frequency == 30  # from the example's stack config

    return pulumi.Output.from_input(exports).apply(verify)


@pytest.fixture
def fleet_lab(tmp_path: Path) -> Iterator[RunningLab]:
    source = EXAMPLES / "many-vms" / "hvsim.toml"
    with running_dev_lab(tmp_path, ["127.85.1.11", "127.85.1.12"], source=source) as lab:
        yield lab


@pulumi.runtime.test
def test_many_vms_count_comes_from_config(
    mocked_program: MockedProgram, fleet_lab: RunningLab
) -> pulumi.Output:
    program, project, config = example_config("many-vms", fleet_lab, vm_count=12)
    exports = mocked_program.run(program, config, project)
    vms = [f"vm-{i:03d}" for i in range(1, 13)]

    def verify(resolved: dict[str, Any]) -> None:
        assert sorted(resolved["replication"]) == [f"{HOST1}/{vm}" for vm in vms]
        wait_replicating(fleet_lab, HOST1, vms)
        flows = {HOST1: dict.fromkeys(vms, HOST2)}  # vm-013 and later stay unreplicated
        for host in expected_hosts(fleet_lab, mocked_program.mocks.outputs, "fleet", flows):
            check_host(fleet_lab, host)

    return pulumi.Output.from_input(exports).apply(verify)
