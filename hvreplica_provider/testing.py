"""Unit-test your own Pulumi program with the REAL providers of this package, without the Pulumi CLI.

`mocked_program()` installs `pulumi.runtime` mocks whose `new_resource` runs each dynamic resource's
real provider, as a first `pulumi up` would: `check` (so every validation message is the one
`pulumi preview` shows) and then `create`. CertificateAuthority and HostCertificate need nothing else;
ReplicaServer and ReplicationRelationship talk WinRM to their hosts, so point them at an hvsim lab
(`pip install hvreplica[sim]`, `hvsim serve --config lab.toml`) or at real test hosts.

Example, a pytest test of a program whose `__main__.py` calls `topology_from_config()`::

    from pathlib import Path

    import pulumi
    import pytest

    from hvreplica_provider.stack import ConfigError
    from hvreplica_provider.testing import MockedProgram, mocked_program

    @pytest.fixture
    def program():
        with mocked_program(project="my-dr") as mocked:
            yield mocked

    def test_a_misspelt_key_fails_before_any_resource(program: MockedProgram) -> None:
        with pytest.raises(ConfigError, match="hvreplica:replicaton"):
            program.run(Path("__main__.py"), {"hvreplica:replicaton": {}})
        assert program.mocks.types == {}

    @pulumi.runtime.test
    def test_the_ca_is_4096_bits(program: MockedProgram) -> pulumi.Output:
        exports = program.run(Path("__main__.py"), {"hvreplica:sites": [...], "hvreplica:hvsim": {...}})
        def verify(resolved: dict) -> None:
            assert "ca-contoso" in program.mocks.outputs
        return pulumi.Output.from_input(exports).apply(verify)

Config values are given as the stack file holds them (`"<namespace>:<key>"` -> value); objects and
lists are passed to the program as JSON, as the CLI does. After a run, `program.mocks` holds every
resource's type, checked inputs and outputs by resource name, and `program.monitor` the secrets the
program declared.
"""

from __future__ import annotations

import base64
import contextlib
import json
import runpy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dill
import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc, settings

PROVIDER_KEY = "__provider"


@dataclass(frozen=True)
class CheckFailure:
    """One failure a provider's `check` reported: the property and what to change."""

    property: str
    reason: str


class CheckFailed(Exception):
    """A resource's `check` failed; the deployment would stop here, as the engine does."""

    def __init__(self, failures: list[CheckFailure]) -> None:
        super().__init__("; ".join(f"{f.property}: {f.reason}" for f in failures))
        self.failures = failures


class ForwardingMocks(pulumi.runtime.Mocks):
    """`pulumi.runtime` mocks whose new_resource runs the REAL provider of each dynamic resource:
    unpickle `__provider`, then check({}, inputs) and create(checked inputs), as a first `pulumi up` does.
    Component resources are recorded with no outputs. Calls arrive from several threads at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outputs: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, dict[str, Any]] = {}
        self.types: dict[str, str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        with self.lock:
            self.types[args.name] = args.typ
        if not args.custom:
            return "", {}
        # The engine strips secretness before calling a provider (acceptSecrets=False): do the same.
        plain = {k: _plain(v) for k, v in args.inputs.items()}
        provider = dill.loads(base64.b64decode(plain.pop(PROVIDER_KEY)))
        checked = provider.check({}, plain)
        if checked.failures:
            raise CheckFailed([CheckFailure(f.property, f.reason) for f in checked.failures])
        result = provider.create(checked.inputs)
        with self.lock:
            self.inputs[args.name] = checked.inputs
            self.outputs[args.name] = result.outs
        return result.id, result.outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise NotImplementedError(f"ForwardingMocks forward resources, not function calls ({args.token})")


def _plain(value: Any) -> Any:
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class RecordingMonitor(mocks.MockMonitor):
    """Keeps each resource's additional_secret_outputs, which the mock runtime does not apply, and the
    paths (`key` or `key.field`) of the inputs the program sent as secrets."""

    def __init__(self, forwarding: ForwardingMocks) -> None:
        super().__init__(forwarding)
        self.secret_outputs: dict[str, list[str]] = {}
        self.secret_inputs: dict[str, set[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.secret_outputs[request.name] = list(request.additionalSecretOutputs)
        sent = json_format.MessageToDict(request.object)
        self.secret_inputs[request.name] = set(_secret_paths(sent, ""))
        return super().RegisterResource(request)


def _secret_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            yield path
            return
        for key, item in value.items():
            yield from _secret_paths(item, f"{path}.{key}" if path else key)


@dataclass
class MockedProgram:
    """The mock runtime of one test: run a Pulumi program and read what its resources produced."""

    mocks: ForwardingMocks
    monitor: RecordingMonitor
    project: str
    stack: str = "dev"

    def run(
        self,
        program: Path | Callable[[], object],
        config: Mapping[str, Any],
        project: str | None = None,
        secret_keys: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Run `program` (a `__main__.py` path, or a function that declares resources) of `project` with
        `config` (`ns:key` -> value; `secret_keys` are those set with --secret) and return the stack's
        exports (Outputs: resolve them inside a `@pulumi.runtime.test`)."""
        if project is not None and project != self.project:
            self.project = project
            settings.set_root_resource(None)  # set_mocks then makes a Stack of this project
            pulumi.runtime.set_mocks(
                self.mocks, project=project, stack=self.stack, preview=False, monitor=self.monitor
            )
        pulumi.runtime.set_all_config(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, list(secret_keys)
        )
        if callable(program):
            program()
        else:
            runpy.run_path(str(program), run_name="__main__")
        root = settings.get_root_resource()
        if root is None:
            raise RuntimeError("no Pulumi stack is running: call run() inside mocked_program()")
        return root.outputs


@contextlib.contextmanager
def mocked_program(project: str = "hvreplica", stack: str = "dev") -> Iterator[MockedProgram]:
    """A fresh mock runtime for one test (its own stack, so exports never leak between tests); the
    config is cleared again on exit."""
    forwarding = ForwardingMocks()
    monitor = RecordingMonitor(forwarding)
    settings.set_root_resource(None)
    pulumi.runtime.set_mocks(forwarding, project=project, stack=stack, preview=False, monitor=monitor)
    try:
        yield MockedProgram(forwarding, monitor, project, stack)
    finally:
        pulumi.runtime.set_all_config({}, [])
