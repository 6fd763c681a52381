"""Engine-contract harness: play the Pulumi engine against the real dynamic-provider server.

The Pulumi CLI is not available in CI, so the tests start the SDK's own provider server
(`python -u -m pulumi.dynamic`) as a subprocess, exactly as the CLI's `pulumi-resource-pulumi-python`
launcher does, and send it the gRPC requests the engine sends (reference/pulumi-dynamic.md §2):

- every payload is a protobuf Struct, so integers arrive as floats;
- `__provider` is the dill pickle made by `pulumi.dynamic.dynamic.serialize_provider`;
- Diff/Update/Read/Delete receive the OLD OUTPUTS (plus the old inputs in the newer fields);
- a replace is Check(olds={}) -> Create(new) -> Delete(old), or Delete first when the provider
  asks for delete_before_replace.

Two layers:
- raw calls (`configure`, `check`, `diff`, `create`, `read`, `update`, `delete`) that return decoded
  dicts and small dataclasses;
- engine steps (`up`, `replace`, `refresh`, `destroy`) that keep a `ResourceState` the way the
  engine keeps its checkpoint, so a test reads like `pulumi up` / `pulumi refresh` / `pulumi destroy`.

`ProviderServer` is thread-safe: the server runs up to four calls at once and tests may fire many
calls from a thread pool.

Programs (the root __main__.py, the examples) run under `pulumi.runtime` mocks instead: `MockedProgram`
(fixture `mocked_program`) forwards every dynamic resource to its real provider's check and create.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

import dill
import grpc
import pulumi
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "__provider"
# The sentinel the engine sends for values not known during preview.
UNKNOWN = rpc.UNKNOWN

# serialize_provider swaps pickle.Pickler globally while it runs: never run two at once.
_PICKLE_LOCK = threading.Lock()


def pickle_provider(provider: ResourceProvider) -> str:
    """The `__provider` value the Pulumi SDK puts into a dynamic resource's inputs."""
    with _PICKLE_LOCK:
        return serialize_provider(provider)


def encode(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Encode a property dict as the engine does (top-level None dropped, numbers become doubles)."""
    present = {k: v for k, v in props.items() if v is not None}
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(present, {}))
    finally:
        loop.close()


def decode(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Decode a Struct returned by the provider server into plain Python values."""
    return dict(rpc.deserialize_properties(struct, keep_unknowns=True) or {})


class ProviderCallError(Exception):
    """A provider call failed: the server turns any exception into gRPC UNKNOWN + traceback."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method} failed with {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


@dataclass(frozen=True)
class CheckFailure:
    property: str
    reason: str


class CheckFailed(Exception):
    """`up` stops, as the engine does, when Check reports failures."""

    def __init__(self, failures: list[CheckFailure]) -> None:
        super().__init__("; ".join(f"{f.property}: {f.reason}" for f in failures))
        self.failures = failures


@dataclass(frozen=True)
class CheckOutcome:
    inputs: dict[str, Any]
    failures: list[CheckFailure]


@dataclass(frozen=True)
class DiffOutcome:
    """What Diff answered. `changes` is None for DIFF_UNKNOWN (the engine then compares inputs)."""

    changes: bool | None
    replaces: tuple[str, ...] = ()
    delete_before_replace: bool = False


@dataclass(frozen=True)
class ReadOutcome:
    """`id` is empty when the provider says the object is gone; `inputs` is None when not returned."""

    id: str
    outputs: dict[str, Any]
    inputs: dict[str, Any] | None


@dataclass(frozen=True)
class ResourceState:
    """One resource as the engine's checkpoint holds it: checked inputs and outputs (with __provider)."""

    urn: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


StepOp = Literal["create", "same", "update", "replace"]


@dataclass(frozen=True)
class Step:
    """The result of one `up` for one resource: what the engine did and the new state."""

    op: StepOp
    state: ResourceState
    diff: DiffOutcome | None = None


def resource_urn(type_token: str, name: str, stack: str = "dev", project: str = "hvreplica") -> str:
    return f"urn:pulumi:{stack}::{project}::{type_token}::{name}"


def dynamic_type(module: str, name: str) -> str:
    """The type token of a dynamic resource declared with `class X(Resource, module=..., name=...)`."""
    return f"pulumi-python:dynamic/{module}:{name}" if module else f"pulumi-python:dynamic:{name}"


CA_TYPE = dynamic_type("hvreplica", "CertificateAuthority")
HOST_TYPE = dynamic_type("hvreplica", "HostCertificate")
SERVER_TYPE = dynamic_type("hvreplica", "ReplicaServer")
RELATIONSHIP_TYPE = dynamic_type("hvreplica", "ReplicationRelationship")


class ProviderServer:
    """The SDK's dynamic-provider server as a subprocess, driven over gRPC like the engine does.

    `env` is merged over the current environment (e.g. `{"HVREPLICA_FAKE_NOW": ...}` to inject the
    clock). Use as a context manager, or call `start()`/`stop()`.
    """

    def __init__(
        self,
        project_dir: Path = PROJECT_DIR,
        *,
        project: str = "hvreplica",
        stack: str = "dev",
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.project_dir = Path(project_dir)
        self.project = project
        self.stack = stack
        self._env = dict(env or {})
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self._stub: provider_pb2_grpc.ResourceProviderStub | None = None
        self._log_lock = threading.Condition()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._readers: list[threading.Thread] = []
        self.port: int | None = None

    # -- process ---------------------------------------------------------------------------------
    def start(self) -> ProviderServer:
        env = {**os.environ, "PULUMI_PROJECT": self.project, **self._env}
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic", "0"],
            cwd=self.project_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        port_line: list[str] = []
        got_port = threading.Event()
        self._readers = [
            threading.Thread(
                target=self._drain, args=(self._proc.stdout, self._stdout, port_line, got_port), daemon=True
            ),
            threading.Thread(
                target=self._drain, args=(self._proc.stderr, self._stderr, None, None), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + self._start_timeout
        while not got_port.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"provider server did not start; stderr:\n{self.stderr}")
        self.port = int(port_line[0])
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self._channel).result(timeout=self._start_timeout)
        self._stub = provider_pb2_grpc.ResourceProviderStub(self._channel)
        return self

    def _drain(
        self,
        stream: IO[bytes],
        sink: list[str],
        first_line: list[str] | None,
        first_seen: threading.Event | None,
    ) -> None:
        # The first stdout line is the port; everything after it is provider output (print()).
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if first_line is not None and first_seen is not None and not first_seen.is_set():
                first_line.append(line)
                first_seen.set()
                continue
            with self._log_lock:
                sink.append(line)
                self._log_lock.notify_all()
        stream.close()

    def stop(self) -> None:
        self._stub = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs ------------------------------------------------------------------------------------
    @property
    def stdout(self) -> str:
        """Everything the provider printed to stdout after the port line (shown as info by the CLI)."""
        with self._log_lock:
            return "\n".join(self._stdout)

    @property
    def stderr(self) -> str:
        """Everything on stderr (pulumi.log.* and tracebacks)."""
        with self._log_lock:
            return "\n".join(self._stderr)

    @property
    def logs(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until `pattern` (a regex) appears in stdout or stderr."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_lock:
            while True:
                match = regex.search("\n".join(self._stdout + self._stderr))
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{pattern!r} not logged within {timeout}s")
                self._log_lock.wait(remaining)

    # -- raw gRPC calls --------------------------------------------------------------------------
    def _call(self, method: str, request: Any) -> Any:
        assert self._stub is not None, "server not started"
        try:
            return getattr(self._stub, method)(request)
        except grpc.RpcError as err:
            raise ProviderCallError(method, err.code(), err.details() or "") from None

    def urn(self, type_token: str, name: str) -> str:
        return resource_urn(type_token, name, self.stack, self.project)

    def configure(self, config: Mapping[str, str] | None = None) -> None:
        """Configure as the engine does: the whole stack config, `<namespace>:<key>` -> string."""
        values = dict(config or {})
        self._call(
            "Configure",
            provider_pb2.ConfigureRequest(
                variables=values,
                args=encode(values),
                acceptSecrets=True,
                acceptResources=True,
                sends_old_inputs=True,
                sends_old_inputs_to_delete=True,
            ),
        )

    def check(self, urn: str, news: Mapping[str, Any], olds: Mapping[str, Any] | None = None) -> CheckOutcome:
        """Check(olds, news). `news` must contain `__provider` (see `with_provider`)."""
        reply = self._call(
            "Check", provider_pb2.CheckRequest(urn=urn, olds=encode(olds or {}), news=encode(news))
        )
        failures = [CheckFailure(f.property, f.reason) for f in reply.failures]
        return CheckOutcome(decode(reply.inputs), failures)

    def diff(
        self,
        urn: str,
        id_: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any] | None = None,
    ) -> DiffOutcome:
        """Diff(id, olds=OLD OUTPUTS, news=checked inputs)."""
        reply = self._call("Diff", provider_pb2.DiffRequest(**_change(urn, id_, olds, news, old_inputs)))
        kinds = provider_pb2.DiffResponse
        changes = {kinds.DIFF_SOME: True, kinds.DIFF_NONE: False}.get(reply.changes)
        return DiffOutcome(changes, tuple(reply.replaces), bool(reply.deleteBeforeReplace))

    def create(self, urn: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Create(checked inputs) -> (id, outputs including __provider)."""
        reply = self._call("Create", provider_pb2.CreateRequest(urn=urn, properties=encode(inputs)))
        return reply.id, decode(reply.properties)

    def read(
        self, urn: str, id_: str, outputs: Mapping[str, Any], inputs: Mapping[str, Any] | None = None
    ) -> ReadOutcome:
        """Read(id, properties=OLD OUTPUTS) as refresh sends it."""
        reply = self._call(
            "Read",
            provider_pb2.ReadRequest(
                id=id_, urn=urn, properties=encode(outputs), inputs=encode(inputs or {})
            ),
        )
        new_inputs = decode(reply.inputs) if reply.HasField("inputs") else None
        return ReadOutcome(reply.id, decode(reply.properties), new_inputs)

    def update(
        self,
        urn: str,
        id_: str,
        olds: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Update(id, olds=OLD OUTPUTS, news=checked inputs) -> new outputs."""
        reply = self._call("Update", provider_pb2.UpdateRequest(**_change(urn, id_, olds, news, old_inputs)))
        return decode(reply.properties)

    def delete(
        self, urn: str, id_: str, outputs: Mapping[str, Any], old_inputs: Mapping[str, Any] | None = None
    ) -> None:
        """Delete(id, properties=OLD OUTPUTS)."""
        self._call(
            "Delete",
            provider_pb2.DeleteRequest(
                id=id_, urn=urn, properties=encode(outputs), old_inputs=encode(old_inputs or {})
            ),
        )

    # -- engine steps ----------------------------------------------------------------------------
    def up(
        self,
        urn: str,
        provider: ResourceProvider | str,
        inputs: Mapping[str, Any],
        state: ResourceState | None = None,
    ) -> Step:
        """One resource's part of `pulumi up`: the call sequence the engine runs for it.

        Without `state` this is a create; with it, Check -> Diff -> nothing, Update or a replace.
        Raises CheckFailed when Check reports failures (the engine stops there too).
        """
        news = with_provider(provider, inputs)
        checked = self._checked(urn, news, state.inputs if state else {})
        if state is None:
            return Step("create", self._create_state(urn, checked))
        outcome = self.diff(urn, state.id, state.outputs, checked, state.inputs)
        if outcome.changes is None:
            # DIFF_UNKNOWN: the engine compares the inputs itself.
            outcome = replace(outcome, changes=_without_provider(checked) != _without_provider(state.inputs))
        if not outcome.changes:
            return Step("same", replace(state, inputs=checked), outcome)
        if outcome.replaces:
            blob = news[PROVIDER_KEY]
            return Step("replace", self.replace(state, blob, inputs, outcome.delete_before_replace), outcome)
        outputs = self.update(urn, state.id, state.outputs, checked, state.inputs)
        return Step("update", replace(state, inputs=checked, outputs=outputs), outcome)

    def refresh(self, state: ResourceState) -> ResourceState | None:
        """`pulumi refresh` for one resource: None when the provider reports it gone."""
        outcome = self.read(state.urn, state.id, state.outputs, state.inputs)
        if not outcome.id:
            return None
        inputs = outcome.inputs if outcome.inputs is not None else state.inputs
        return ResourceState(state.urn, outcome.id, inputs, outcome.outputs)

    def destroy(self, state: ResourceState) -> None:
        """`pulumi destroy` for one resource: Delete with the stored outputs (the program does not run)."""
        self.delete(state.urn, state.id, state.outputs, state.inputs)

    def _checked(self, urn: str, news: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
        outcome = self.check(urn, news, olds)
        if outcome.failures:
            raise CheckFailed(outcome.failures)
        return outcome.inputs

    def _create_state(self, urn: str, checked: dict[str, Any]) -> ResourceState:
        id_, outputs = self.create(urn, checked)
        if not id_:
            raise ProviderCallError("Create", grpc.StatusCode.UNKNOWN, "provider returned an empty id")
        return ResourceState(urn, id_, checked, outputs)

    def replace(
        self,
        old: ResourceState,
        provider: ResourceProvider | str,
        inputs: Mapping[str, Any],
        delete_first: bool = False,
    ) -> ResourceState:
        """Replace `old`: Check(olds={}) -> Create(new) -> Delete(old), or Delete first when the
        provider answered delete_before_replace. Returns the replacement's state."""
        checked = self._checked(old.urn, with_provider(provider, inputs), {})
        if delete_first:
            self.destroy(old)
            return self._create_state(old.urn, checked)
        created = self._create_state(old.urn, checked)
        self.destroy(old)
        return created


def _change(
    urn: str,
    id_: str,
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    old_inputs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The fields Diff and Update requests share."""
    return {
        "id": id_,
        "urn": urn,
        "olds": encode(olds),
        "news": encode(news),
        "old_inputs": encode(old_inputs or {}),
    }


def with_provider(provider: ResourceProvider | str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Program inputs plus the serialized provider, as `pulumi.dynamic.Resource.__init__` sends them."""
    blob = provider if isinstance(provider, str) else pickle_provider(provider)
    return {**inputs, PROVIDER_KEY: blob}


def _without_provider(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


@dataclass
class _ServerPool:
    servers: list[ProviderServer] = field(default_factory=list)

    def start(
        self,
        env: Mapping[str, str] | None = None,
        config: Mapping[str, str] | None = None,
        project_dir: Path = PROJECT_DIR,
    ) -> ProviderServer:
        server = ProviderServer(project_dir, env=env).start()
        self.servers.append(server)
        server.configure(config)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


ServerFactory = Callable[..., ProviderServer]


def _server_factory() -> Iterator[ServerFactory]:
    pool = _ServerPool()
    try:
        yield pool.start
    finally:
        pool.stop_all()


# Fixture factories: `start(env=..., config=..., project_dir=...)` returns a started, configured
# ProviderServer; all of them are stopped at teardown. Re-export them from a conftest.py
# (`from tests.support.engine import provider_servers as provider_servers`).
provider_servers = pytest.fixture(_server_factory, name="provider_servers")
module_provider_servers = pytest.fixture(_server_factory, name="module_provider_servers", scope="module")


# -- programs under mocks ----------------------------------------------------------------------------
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
        raise NotImplementedError(f"the programs make no calls, got {args.token}")


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
    """The mock runtime of one test: run a Pulumi program file and read what its resources produced."""

    mocks: ForwardingMocks
    monitor: RecordingMonitor
    project: str

    def run(
        self,
        program: Path,
        config: Mapping[str, Any],
        project: str | None = None,
        secret_keys: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Run `program` (a __main__.py) of `project` with `config` (`ns:key` -> value; objects are sent as
        JSON strings, as the CLI does; `secret_keys` were set with --secret) and return the stack's exports
        (Outputs, resolved inside a @pulumi.runtime.test)."""
        if project is not None and project != self.project:
            self.project = project
            settings.set_root_resource(None)  # set_mocks then makes a Stack of this project
            pulumi.runtime.set_mocks(
                self.mocks, project=project, stack="dev", preview=False, monitor=self.monitor
            )
        pulumi.runtime.set_all_config(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, list(secret_keys)
        )
        runpy.run_path(str(program), run_name="__main__")
        root = settings.get_root_resource()
        assert root is not None
        return root.outputs


def _mocked_program(project: str = "hvreplica") -> Iterator[MockedProgram]:
    forwarding = ForwardingMocks()
    monitor = RecordingMonitor(forwarding)
    settings.set_root_resource(None)  # a fresh Stack per test, so exports do not leak between tests
    pulumi.runtime.set_mocks(forwarding, project=project, stack="dev", preview=False, monitor=monitor)
    try:
        yield MockedProgram(forwarding, monitor, project)
    finally:
        pulumi.runtime.set_all_config({}, [])


# Fixture: a fresh mock runtime forwarding to the real providers (re-export it from a conftest.py).
mocked_program = pytest.fixture(_mocked_program, name="mocked_program")


def stack_config(stack_file: Path) -> dict[str, Any]:
    """A Pulumi.<stack>.yaml's config as the CLI hands it to the program."""
    return dict(yaml.safe_load(stack_file.read_text())["config"])
