"""`hvreplica_provider.stack` as another project uses it: the namespace rule (`hvreplica:` whatever the
project is called, or the namespace of the Config passed in), unknown keys refused with the allowed
ones named, the Pulumi.yaml declarations, and the whole topology built under a foreign project name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from hvreplica_provider.stack import (
    CONFIG_KEYS,
    ConfigError,
    StackSettings,
    export_stack_outputs,
    load_stack_config,
    topology_from_config,
)
from hvreplica_provider.testing import MockedProgram
from hvreplica_provider.topology import TopologyError
from tests.support.engine import PROJECT_DIR, stack_config
from tests.support.topology_lab import HOST1, HOST2, RunningLab, running_dev_lab, wait_replicating

PROGRAM = PROJECT_DIR / "__main__.py"
DEV = stack_config(PROJECT_DIR / "Pulumi.dev.yaml")


def _in(namespace: str, config: dict[str, Any]) -> dict[str, Any]:
    """The dev stack's `hvreplica:` keys moved to `namespace`."""
    return {f"{namespace}:{key.split(':', 1)[1]}": value for key, value in config.items()}


def _load(program: MockedProgram, config: dict[str, Any], *args: Any, **kwargs: Any) -> StackSettings:
    loaded: list[StackSettings] = []
    program.run(lambda: loaded.append(load_stack_config(*args, **kwargs)), config, project="my-dr")
    return loaded[0]


def test_the_namespace_is_hvreplica_whatever_the_project(mocked_program: MockedProgram) -> None:
    settings = _load(mocked_program, DEV)
    assert settings.namespace == "hvreplica"
    assert [site.name for site in settings.sites] == ["contoso", "fabrikam"]
    assert [flow.vms for flow in settings.replication.flows] == [("web01", "db01"), ("app02",)]


def test_another_namespace_with_keys_of_ones_own(mocked_program: MockedProgram) -> None:
    config = {**_in("my-dr", DEV), "my-dr:environment": "staging"}
    with pytest.raises(ConfigError, match=r"unknown config key.*my-dr:environment"):
        _load(mocked_program, config, pulumi.Config("my-dr"))
    settings = _load(mocked_program, config, pulumi.Config("my-dr"), other_keys=["environment"])
    assert settings.namespace == "my-dr" and settings.hvsim is not None


def test_a_misspelt_key_names_itself_and_the_allowed_ones(mocked_program: MockedProgram) -> None:
    config = {**DEV, "hvreplica:replicaton": DEV["hvreplica:replication"]}
    with pytest.raises(ConfigError) as failed:
        mocked_program.run(PROGRAM, config, project="my-dr")
    message = str(failed.value)
    assert "hvreplica:replicaton" in message
    assert all(key in message for key in CONFIG_KEYS)
    assert mocked_program.mocks.types == {}  # failed before any resource


def test_messages_name_the_namespace_in_use(mocked_program: MockedProgram) -> None:
    config = _in("my-dr", DEV)
    config["my-dr:replication"] = {**DEV["hvreplica:replication"], "flows": [{"primary": "x.contoso.com"}]}
    with pytest.raises(ConfigError, match=r"my-dr:replication\.flows\[0\] needs replica"):
        _load(mocked_program, config, pulumi.Config("my-dr"))


def test_a_flow_can_extend_to_a_third_host_of_the_sites(mocked_program: MockedProgram) -> None:
    replication = DEV["hvreplica:replication"]
    flow = {**replication["flows"][0], "extend_to": "host9.contoso.com"}
    config = {**DEV, "hvreplica:replication": {**replication, "flows": [flow]}}
    with pytest.raises(ConfigError, match=r"flows\[0\]\.extend_to 'host9\.contoso\.com' is not a host"):
        _load(mocked_program, config)
    flow["extend_to"] = HOST2.upper()  # a host of the sites, but the flow's own replica
    with pytest.raises(TopologyError, match=r"extend_to must be a third host"):
        _load(mocked_program, config)


def test_pulumi_yaml_declares_exactly_the_keys_and_empty_defaults_mean_unset(
    mocked_program: MockedProgram,
) -> None:
    declared = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())["config"]
    assert set(declared) == set(CONFIG_KEYS)
    # Pulumi types only scalars and arrays of them: the objects are untyped, and `sites` is required.
    assert not any("type" in spec for spec in declared.values())
    assert "default" not in declared["sites"]
    defaults = {f"hvreplica:{key}": spec["default"] for key, spec in declared.items() if "default" in spec}
    assert all(value == {} for value in defaults.values()) and len(defaults) == len(CONFIG_KEYS) - 1
    settings = _load(mocked_program, {**defaults, "hvreplica:sites": DEV["hvreplica:sites"]})
    assert settings.hvsim is None and settings.replication.flows == ()
    for stack_file in ("Pulumi.dev.yaml", "Pulumi.prod.yaml.example"):
        keys = {key.split(":", 1)[1] for key in stack_config(PROJECT_DIR / stack_file)}
        assert keys <= set(declared), stack_file


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    with running_dev_lab(tmp_path, ["127.86.0.11", "127.86.0.12"]) as lab:
        yield lab


@pytest.mark.usefixtures("fast_polling")
@pulumi.runtime.test
def test_a_project_of_another_name_builds_the_topology(
    mocked_program: MockedProgram, lab: RunningLab
) -> pulumi.Output:
    replication = DEV["hvreplica:replication"]
    config = {
        **DEV,
        "hvreplica:hvsim": lab.hvsim_config,
        "hvreplica:pki": {**DEV["hvreplica:pki"], "rsa_bits": 2048},
        "hvreplica:replication": {**replication, "flows": replication["flows"][:1]},
    }
    program = lambda: export_stack_outputs(topology_from_config(name="dr"))  # noqa: E731
    exports = mocked_program.run(program, config, "my-dr")

    def verify(resolved: dict[str, Any]) -> None:
        assert {n for n in mocked_program.mocks.types if n.startswith("ca-")} == {"ca-contoso", "ca-fabrikam"}
        assert set(resolved["replication"]) == {f"{HOST1}/web01", f"{HOST1}/db01"}
        assert resolved["host_certificates"][HOST2]["site"] == "fabrikam"
        assert f"dr-repl-{HOST1}/web01" in mocked_program.mocks.outputs
        wait_replicating(lab, HOST1, ["web01", "db01"])

    return pulumi.Output.from_input(exports).apply(verify)
