"""PSRP runspace pools behind WS-Management shells, built on psrpcore's server side.

One `Shell` per WSMan shell wraps one psrpcore `ServerRunspacePool`. psrpcore is not thread-safe and both
HTTP threads and cmdlet worker threads touch the pool, so each shell has one lock with a condition variable
that long-polling Receives wait on. Outgoing PSRP messages are drained from psrpcore into one queue per
target (the pool itself or one pipeline) so each Receive returns only its own stream, fragmented to fit the
requester's MaxEnvelopeSize. As on Windows, a pool runs at most MaxRunspaces pipelines at once; the others
wait for a free runspace in order.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from psrpcore import (
    CreatePipelineEvent,
    EndOfPipelineInputEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PipelineInputEvent,
    PSRPEvent,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerPipeline,
    ServerRunspacePool,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore._payload import create_fragment, unpack_fragment
from psrpcore.types import ErrorCategory, ErrorRecord, PSInvocationState, PSRPMessageType

from hvsim.cmdlets.errors import TerminatingError, error_record
from hvsim.wsman import psrp_compat
from hvsim.wsman.soap import command_not_found, quota_max_shells, shell_not_found, timed_out

psrp_compat.install()

MAX_SHELLS_PER_USER = 30  # winrm/config/winrs MaxShellsPerUser on Server 2012 R2 and later

# Bytes of a ReceiveResponse that are not stream data, and of one <rsp:Stream> wrapper.
_ENVELOPE_OVERHEAD = 2048
_STREAM_OVERHEAD = 160
_FRAGMENT_HEADER = 21
# Real seconds a Receive holds back output of a pipeline that is still running, for more output or its end.
_OUTPUT_SETTLE = 0.2


class Sink(Protocol):
    stopping: threading.Event

    def write_output(self, obj: Any) -> None: ...
    def write_error(self, record: ErrorRecord) -> None: ...
    def write_warning(self, message: str) -> None: ...
    def write_verbose(self, message: str) -> None: ...


_deferred = threading.local()


@contextlib.contextmanager
def deferred_starts() -> Iterator[list[threading.Thread]]:
    """Collect the pipeline workers a request would start, so the caller starts them after its reply is sent.

    A worker started while the Command reply is still being built competes with it for the GIL, so the
    reply waits for most of the cmdlet's run; real WinRM answers Command at once.
    """
    starts: list[threading.Thread] = []
    _deferred.starts = starts
    try:
        yield starts
    finally:
        _deferred.starts = None


# Runs one pipeline's commands for `user` with pipeline input; raises TerminatingError to fail it.
Executor = Callable[[str, list[Any], list[Any], Sink], None]


@dataclass
class _Outgoing:
    """One PSRP message waiting to be received, possibly already partly sent."""

    object_id: int
    data: bytes
    fragment_id: int = 0
    offset: int = 0


@dataclass
class _Run:
    """A pipeline (WSMan command) of a shell."""

    pipeline: ServerPipeline
    command_id: str
    inputs: list[Any] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    input_done: bool = False  # no input expected, or EndOfPipelineInput received
    slot: bool = False  # holds one of the pool's MaxRunspaces runspaces
    started: bool = False
    active: bool = False  # its worker thread is running the cmdlets
    finished: bool = False  # the final PipelineState message is queued
    queue: deque[_Outgoing] = field(default_factory=deque)


@dataclass
class ReceiveResult:
    fragments: list[bytes]
    command_id: str | None
    done: bool  # the pipeline's final state has been delivered


class _PipelineSink:
    """The OutputSink handed to cmdlets: writes become PSRP messages for this pipeline."""

    def __init__(self, shell: Shell, run: _Run) -> None:
        self._shell = shell
        self._run = run
        self.stopping = run.stopping

    def write_output(self, obj: Any) -> None:
        self._shell._emit(self._run, lambda p: p.write_output(obj))

    def write_error(self, record: ErrorRecord) -> None:
        self._shell._emit(
            self._run, lambda p: p.prepare_message(record, message_type=PSRPMessageType.ErrorRecord)
        )

    def write_warning(self, message: str) -> None:
        self._shell._emit(self._run, lambda p: p.write_warning(message))

    def write_verbose(self, message: str) -> None:
        self._shell._emit(self._run, lambda p: p.write_verbose(message))


class Shell:
    """A WSMan shell hosting one PSRP runspace pool."""

    def __init__(
        self,
        shell_id: str,
        owner: str,
        executor: Executor,
        on_pipeline: Callable[[], None],
        application_private_data: dict[str, Any] | None = None,
    ) -> None:
        self.id = shell_id
        self.owner = owner
        self.created = self.last_used = time.monotonic()
        self._executor = executor
        self._on_pipeline = on_pipeline
        # Sent to the client at open (pool.application_private_data), e.g. the host's PSVersionTable.
        self._pool = ServerRunspacePool(application_private_data=application_private_data)
        self._cond = threading.Condition(threading.RLock())
        self._pool_queue: deque[_Outgoing] = deque()
        self._runs: dict[uuid.UUID, _Run] = {}
        self._waiting: deque[_Run] = deque()  # created pipelines waiting for a free runspace
        self.closed = False

    # --- requests ---
    def open(self, creation_data: bytes) -> None:
        with self._cond:
            self._feed(creation_data, None)

    def command(self, command_id: str, arguments: bytes) -> None:
        with self._cond:
            self._check_open()
            pid = self._pipeline_id(command_id)
            # The pipeline must exist before its CreatePipeline fragment is fed, or psrpcore cannot find it.
            run = self._runs[pid] = _Run(ServerPipeline(self._pool, pid), command_id)
            try:
                self._feed(arguments, pid)
            except UnreadableMessage as exc:
                self._reject(run, exc)
            except Exception:
                self._reap(run)  # a Command that failed leaves no pipeline behind
                raise

    def send(self, data: bytes, command_id: str | None, prompt_response: bool) -> None:
        with self._cond:
            self._check_open()
            pid = self._pipeline_id(command_id) if command_id else None
            try:
                self._feed(data, pid, StreamType.prompt_response if prompt_response else StreamType.default)
            except UnreadableMessage as exc:
                run = self._runs.get(pid) if pid is not None else None
                if run is None or run.started:
                    raise  # pool-level data, or too late to fail the pipeline: the request faults
                self._reject(run, exc)

    def receive(self, command_id: str | None, max_envelope: int, timeout: float) -> ReceiveResult:
        """Long-poll for output: pipeline receives wait up to `timeout`, then fault TimedOut.

        Output of a pipeline whose cmdlets are still running is held back briefly (WinRM's Block buffering)
        so that a short pipeline's output and final state travel in one Receive, as on Windows."""
        now = time.monotonic()
        deadline, settle_until = now + timeout, now + _OUTPUT_SETTLE
        with self._cond:
            while True:
                self._check_open()
                if command_id is None:
                    queue, run = self._pool_queue, None
                else:
                    run = self._runs.get(self._pipeline_id(command_id))
                    if run is None:
                        raise command_not_found()
                    queue = run.queue
                now = time.monotonic()
                if queue and (
                    run is None
                    or run.finished
                    or not run.active
                    or now >= settle_until
                    or sum(len(m.data) - m.offset for m in queue) >= max_envelope
                ):
                    fragments = _pack(queue, max_envelope)
                    done = run is not None and run.finished and not queue
                    if done:
                        self._reap(run)
                    return ReceiveResult(fragments, command_id, done)
                remaining = (settle_until if queue else deadline) - now
                if remaining <= 0:
                    if run is None:
                        # pypsrp raises on a TimedOut fault for pool-level receives: answer empty instead.
                        return ReceiveResult([], None, False)
                    raise timed_out()
                self._cond.wait(remaining)

    def signal_stop(self, command_id: str) -> None:
        """ctrl_c: stop the pipeline; pypsrp marks it Stopped itself and never receives again."""
        with self._cond:
            self._check_open()
            run = self._runs.get(self._pipeline_id(command_id))
            if run is None:
                return
            run.stopping.set()
            if not run.finished:
                if run.pipeline.state == PSInvocationState.Running:
                    run.pipeline.stop()
                run.finished = True
            run.queue.clear()
            self._release_if_idle(run)

    def signal_terminate(self, command_id: str) -> None:
        with self._cond:
            self._check_open()
            run = self._runs.get(self._pipeline_id(command_id))
            if run is not None:
                run.stopping.set()
                run.queue.clear()
                run.finished = True
                self._release_if_idle(run)

    def close(self) -> None:
        """Shell deleted (or dropped by a VMMS restart): stop every pipeline, wake every waiter."""
        with self._cond:
            self.closed = True
            for run in self._runs.values():
                run.stopping.set()
            self._runs.clear()
            self._waiting.clear()
            self._pool_queue.clear()
            self._cond.notify_all()

    @property
    def pipeline_count(self) -> int:
        with self._cond:
            return len(self._runs)

    @property
    def runspace_pool(self) -> ServerRunspacePool:
        return self._pool

    # --- internals ---
    def _check_open(self) -> None:
        if self.closed:
            raise shell_not_found(self.id)

    def _pipeline_id(self, command_id: str) -> uuid.UUID:
        try:
            return uuid.UUID(command_id)
        except ValueError:
            raise command_not_found() from None

    def _feed(self, data: bytes, pid: uuid.UUID | None, stream: StreamType = StreamType.default) -> None:
        if not _whole_fragments(data):
            # Broken framing would stay in psrpcore's buffer and garble later messages: refuse the request.
            raise ValueError("the request's PSRP data is not a sequence of whole fragments")
        self._pool.receive_data(PSRPPayload(data, stream, pid))
        while True:
            try:
                event = self._pool.next_event()
            except Exception as exc:  # psrpcore deserialises here: the client sent data it cannot read
                raise UnreadableMessage(exc) from exc
            if event is None:
                break
            self._handle(event)
        self._collect()

    def _reject(self, run: _Run, exc: UnreadableMessage) -> None:
        """Fail a pipeline whose CreatePipeline or input could not be deserialised; its cmdlets never run.

        The client then receives a Failed PipelineState it can report, rather than a WSMan fault."""
        run.started = run.finished = True
        run.slot = False
        if run.pipeline.state == PSInvocationState.NotStarted:
            psrp_compat.mark_running(run.pipeline)
        psrp_compat.fail(run.pipeline, _unreadable(exc))
        self._collect()
        self._start_waiting()

    def _handle(self, event: PSRPEvent) -> None:
        if isinstance(event, CreatePipelineEvent):
            # Like Windows, a pool runs at most MaxRunspaces pipelines at once (one awaiting input counts);
            # the others wait their turn in order.
            run = self._runs[event.pipeline_id]
            run.input_done = event.pipeline.no_input
            self._waiting.append(run)
            self._start_waiting()
        elif isinstance(event, PipelineInputEvent | EndOfPipelineInputEvent):
            run = self._runs.get(event.pipeline_id)
            if run is None or run.finished:
                return  # input still arriving for a pipeline already failed by _reject: dropped
            if isinstance(event, PipelineInputEvent):
                run.inputs.append(event.data)
            else:
                run.input_done = True
                self._start(run)
        elif isinstance(event, SetMaxRunspacesEvent):
            # Windows answers false (and keeps the old value) for a maximum below 1 or below the minimum.
            valid = event.count >= max(1, self._pool.min_runspaces)
            self._pool.runspace_availability_response(event.ci, valid)
            self._start_waiting()  # a raised maximum frees runspaces for queued pipelines
        elif isinstance(event, SetMinRunspacesEvent):
            valid = 1 <= event.count <= self._pool.max_runspaces
            self._pool.runspace_availability_response(event.ci, valid)
        elif isinstance(event, ResetRunspaceStateEvent):
            self._pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, GetAvailableRunspacesEvent):
            self._pool.runspace_availability_response(
                event.ci, max(self._pool.max_runspaces - self._busy(), 0)
            )
        elif isinstance(event, GetCommandMetadataEvent):
            # Answer at once (silence leaves the client polling forever): hvsim has no command metadata.
            run = self._runs[event.pipeline_id]
            psrp_compat.mark_running(run.pipeline)
            psrp_compat.fail(run.pipeline, _metadata_unsupported())
            run.finished = True

    def _busy(self) -> int:
        return sum(1 for r in self._runs.values() if r.slot)

    def _start_waiting(self) -> None:
        """Hand free runspaces to waiting pipelines, oldest first."""
        while self._waiting and self._busy() < max(self._pool.max_runspaces, 1):
            run = self._waiting.popleft()
            if (
                run.stopping.is_set()
                or run.finished
                or self.closed
                or self._runs.get(run.pipeline.pipeline_id) is not run
            ):
                continue
            run.slot = True
            psrp_compat.mark_running(run.pipeline)
            self._start(run)

    def _start(self, run: _Run) -> None:
        """Run the cmdlets once the pipeline has a runspace and all its input."""
        if run.started or not (run.slot and run.input_done):
            return
        run.started = run.active = True
        metadata = run.pipeline.metadata
        commands = list(metadata.commands) if metadata is not None else []
        worker = threading.Thread(
            target=self._execute, args=(run, commands), name=f"pipeline-{run.command_id}", daemon=True
        )
        starts = getattr(_deferred, "starts", None)
        if starts is None:
            worker.start()
        else:
            starts.append(worker)

    def _execute(self, run: _Run, commands: list[Any]) -> None:
        sink = _PipelineSink(self, run)
        failure: ErrorRecord | None = None
        try:
            self._executor(self.owner, commands, run.inputs, sink)
        except TerminatingError as exc:
            failure = exc.record
        except Exception as exc:  # an emulator bug must fail the pipeline, not hang the client
            failure = error_record(
                exception_type="System.Management.Automation.RuntimeException",
                message=f"hvsim internal error: {type(exc).__name__}: {exc}",
                error_id="HvsimInternalError",
                category=ErrorCategory.NotSpecified,
            )
        with self._cond:
            if not run.stopping.is_set() and not self.closed:
                if failure is not None:
                    psrp_compat.fail(run.pipeline, failure)
                else:
                    run.pipeline.complete()
                run.finished = True
                self._collect()
            run.active = run.slot = False
            self._release_if_idle(run)
            self._start_waiting()
        self._on_pipeline()

    def _emit(self, run: _Run, write: Callable[[ServerPipeline], None]) -> None:
        with self._cond:
            # After ctrl_c, output a cmdlet produces late is discarded.
            if run.stopping.is_set() or self.closed or run.finished:
                return
            write(run.pipeline)
            self._collect()

    def _collect(self) -> None:
        """Move everything psrpcore queued into the per-target queues and wake the receivers."""
        moved = False
        while (payload := self._pool.data_to_send()) is not None:
            run = self._runs.get(payload.pipeline_id) if payload.pipeline_id else None
            if payload.pipeline_id is not None and run is None:
                continue  # the pipeline was reaped; nobody will receive this
            queue = run.queue if run is not None else self._pool_queue
            data = bytearray(payload.data)
            while data:
                frag = unpack_fragment(data)
                queue.append(_Outgoing(frag.object_id, bytes(frag.data)))
                del data[: _FRAGMENT_HEADER + len(frag.data)]
            moved = True
        if moved:
            self._cond.notify_all()

    def _release_if_idle(self, run: _Run) -> None:
        """Reap a stopped/terminated pipeline once its worker thread has returned."""
        if run.stopping.is_set() and not run.active:
            self._reap(run)
            self._start_waiting()

    def _reap(self, run: _Run) -> None:
        # invoke() never sends Terminate: finished pipelines would otherwise pile up until the shell's Delete.
        self._runs.pop(run.pipeline.pipeline_id, None)
        self._pool.pipeline_table.pop(run.pipeline.pipeline_id, None)


def _pack(queue: deque[_Outgoing], max_envelope: int) -> list[bytes]:
    """Fragments for one ReceiveResponse, sized so the base64 envelope stays within the requester's limit."""
    room = max_envelope - _ENVELOPE_OVERHEAD
    fragments: list[bytes] = []
    while queue:
        msg = queue[0]
        capacity = (room - _STREAM_OVERHEAD) * 3 // 4 - _FRAGMENT_HEADER
        if capacity <= 0:
            break
        chunk = msg.data[msg.offset : msg.offset + capacity]
        end = msg.offset + len(chunk) >= len(msg.data)
        fragment = create_fragment(msg.object_id, msg.fragment_id, chunk, end)
        fragments.append(fragment)
        room -= _STREAM_OVERHEAD + (len(fragment) + 2) // 3 * 4
        if end:
            queue.popleft()
        else:
            msg.offset += len(chunk)
            msg.fragment_id += 1
            break
    if not fragments and queue:
        raise ValueError(f"MaxEnvelopeSize {max_envelope} is too small to carry any PSRP data")
    return fragments


def _whole_fragments(data: bytes) -> bool:
    """Whether `data` is complete PSRP fragments: each a 21-byte header whose last 4 bytes give its length."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < _FRAGMENT_HEADER:
            return False
        offset += _FRAGMENT_HEADER + int.from_bytes(data[offset + 17 : offset + _FRAGMENT_HEADER], "big")
    return offset == len(data)


class UnreadableMessage(Exception):
    """A PSRP message from the client that psrpcore could not deserialise (e.g. an <I32> out of range)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")


def _unreadable(exc: UnreadableMessage) -> ErrorRecord:
    return error_record(
        exception_type="System.Management.Automation.Remoting.PSRemotingDataStructureException",
        message=f"hvsim could not deserialize the pipeline data the client sent ({exc}). Send each value "
        "with a type that can hold it, e.g. an Int64 for numbers outside the Int32 range.",
        error_id="HvsimDeserializationFailed",
        category=ErrorCategory.InvalidData,
    )


def _metadata_unsupported() -> ErrorRecord:
    return error_record(
        exception_type="System.Management.Automation.PSNotSupportedException",
        message="hvsim does not serve command metadata (GetCommandMetadata); invoke cmdlets by name.",
        error_id="GetCommandMetadataNotSupported",
        category=ErrorCategory.NotImplemented,
    )


class ShellTable:
    """The shells of one host, with the per-user MaxShellsPerUser quota."""

    def __init__(self, max_shells_per_user: int = MAX_SHELLS_PER_USER) -> None:
        self._lock = threading.Lock()
        self._shells: dict[str, Shell] = {}
        self._max = max_shells_per_user

    def add(self, shell: Shell) -> None:
        with self._lock:
            owned = sum(1 for s in self._shells.values() if s.owner.lower() == shell.owner.lower())
            if owned >= self._max:
                raise quota_max_shells(self._max)
            self._shells[shell.id.upper()] = shell

    def get(self, shell_id: str | None) -> Shell:
        with self._lock:
            shell = self._shells.get((shell_id or "").upper())
        if shell is None:
            raise shell_not_found(shell_id or "")
        shell.last_used = time.monotonic()
        return shell

    def remove(self, shell_id: str) -> None:
        with self._lock:
            shell = self._shells.pop(shell_id.upper(), None)
        if shell is None:
            raise shell_not_found(shell_id)
        shell.close()

    def drop_all(self) -> int:
        """Close every shell (a VMMS/WinRM restart): clients get the unknown-shell fault next time."""
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            shell.close()
        return len(shells)

    def __len__(self) -> int:
        with self._lock:
            return len(self._shells)

    def pipelines(self) -> int:
        with self._lock:
            shells = list(self._shells.values())
        return sum(s.pipeline_count for s in shells)
