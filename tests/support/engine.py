"""Engine-contract harness: play the Pulumi engine against the real dynamic-provider server.

The Pulumi CLI is not available in CI, so the tests start the SDK's own provider server
(`python -u -m pulumi.dynamic`) as a subprocess, exactly as the CLI's `pulumi-resource-pulumi-python`
launcher does, and send it the gRPC requests the engine sends:

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

Programs (the root __main__.py, the examples) run under `pulumi.runtime` mocks instead: the fixture
`mocked_program` is `hvreplica_provider.testing.mocked_program`, whose mocks forward every dynamic
resource to its real provider's check and create.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from hvreplica_provider.testing import PROVIDER_KEY, CheckFailed, CheckFailure, MockedProgram
from hvreplica_provider.testing import mocked_program as mocked_program_runtime

PROJECT_DIR = Path(__file__).resolve().parents[2]
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
    """The result of one `up` for one resource: what the engine did and the new state.

    `original` is the resource a create-before-delete replace superseded. The real engine deletes it only
    at the end of the whole update, after every resource that depends on it was updated (seen with the
    real CLI: a replaced HostCertificate's original is deleted after the ReplicaServer and the
    relationships switched to the new thumbprint); `ProviderServer.finish` does that delete.
    """

    op: StepOp
    state: ResourceState
    diff: DiffOutcome | None = None
    original: ResourceState | None = None


def resource_urn(type_token: str, name: str, stack: str = "dev", project: str = "hvreplica") -> str:
    return f"urn:pulumi:{stack}::{project}::{type_token}::{name}"


def dynamic_type(module: str, name: str) -> str:
    """The type token of a dynamic resource declared with `class X(Resource, module=..., name=...)`."""
    return f"pulumi-python:dynamic/{module}:{name}" if module else f"pulumi-python:dynamic:{name}"


CA_TYPE = dynamic_type("hvreplica", "CertificateAuthority")
HOST_TYPE = dynamic_type("hvreplica", "HostCertificate")
SERVER_TYPE = dynamic_type("hvreplica", "ReplicaServer")
RELATIONSHIP_TYPE = dynamic_type("hvreplica", "ReplicationRelationship")
WAIT_TYPE = dynamic_type("hvreplica", "InitialReplicationWait")


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
            if outcome.delete_before_replace:  # Check(olds={}) -> Delete(old) -> Create(new)
                fresh = self._checked(urn, news, {})
                self.destroy(state)
                return Step("replace", self._create_state(urn, fresh), outcome)
            return Step("replace", self.replace(state, blob, inputs), outcome, original=state)
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
        self, old: ResourceState, provider: ResourceProvider | str, inputs: Mapping[str, Any]
    ) -> ResourceState:
        """The create half of a create-before-delete replace of `old`: Check(olds={}) -> Create(new).
        The original stays until `finish` deletes it, as the engine deletes it at the end of the update.
        Returns the replacement's state."""
        return self._create_state(old.urn, self._checked(old.urn, with_provider(provider, inputs), {}))

    def finish(self, *steps: Step) -> None:
        """The end of `pulumi up`: Delete the originals the steps' replaces superseded."""
        for step in steps:
            if step.original is not None:
                self.destroy(step.original)


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
def _mocked_program() -> Iterator[MockedProgram]:
    with mocked_program_runtime() as program:
        yield program


# Fixture: a fresh mock runtime forwarding to the real providers (re-export it from a conftest.py).
mocked_program = pytest.fixture(_mocked_program, name="mocked_program")


def stack_config(stack_file: Path) -> dict[str, Any]:
    """A Pulumi.<stack>.yaml's config as the CLI hands it to the program."""
    return dict(yaml.safe_load(stack_file.read_text())["config"])
