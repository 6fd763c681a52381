"""Cmdlet dispatch: runs one PSRP pipeline (statements of commands with named parameters) on a host model.

`invoke` is what the WSMan layer calls for every pipeline. Cmdlets live in the sibling modules and register
themselves through hvsim.cmdlets.base; they are imported on first use so that model modules may import the
framework (objects, errors) without an import cycle."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from psrpcore import Command
from psrpcore.types import ErrorCategory

from hvsim.cmdlets.base import Binder, BoundArguments, CmdletContext, CommonParameters, OutputSink, lookup
from hvsim.cmdlets.errors import TerminatingError, WrittenError, error_record

if TYPE_CHECKING:
    from hvsim.lab import Lab
    from hvsim.windows import Host

__all__ = ["OutputSink", "TerminatingError", "invoke", "load_cmdlets"]

_log = logging.getLogger(__name__)
_FRAMEWORK_MODULES = {"base", "errors", "objects"}
_load_lock = threading.Lock()
_loaded = False

# Commands that evaluate script text: a cmdlet dispatcher cannot honour them, so they are refused by rule.
_SCRIPT_COMMANDS = {"invoke-expression", "iex"}
SCRIPT_RULE = "hvsim executes cmdlets, not scripts"


def load_cmdlets() -> None:
    """Import every cmdlet module of this package once (each registers its cmdlets)."""
    global _loaded
    with _load_lock:
        if _loaded:
            return
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _FRAMEWORK_MODULES:
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True


def invoke(
    lab: Lab,
    host: Host,
    user: str,
    commands: list[Command],
    input_objects: list[Any],
    sink: OutputSink,
) -> None:
    """Run one pipeline. Statements run in order; pipeline input feeds the first statement's first command.

    Raises TerminatingError for a terminating failure (the caller fails the pipeline with its record);
    non-terminating errors, warnings and verbose messages go to `sink`. Stops early once `sink.stopping`
    is set."""
    load_cmdlets()
    _reject_scripts(commands)
    for index, statement in enumerate(_statements(commands)):
        if sink.stopping.is_set():
            return
        _run_statement(lab, host, user, statement, input_objects if index == 0 else [], sink)


def _statements(commands: Sequence[Command]) -> Iterator[list[Command]]:
    current: list[Command] = []
    for command in commands:
        current.append(command)
        if command.end_of_statement:
            yield current
            current = []
    if current:
        yield current


def _reject_scripts(commands: Sequence[Command]) -> None:
    for command in commands:
        name = command.command_text.strip()
        if command.is_script or name.rsplit("\\", 1)[-1].lower() in _SCRIPT_COMMANDS:
            shown = "script text" if command.is_script else name
            raise TerminatingError(
                error_record(
                    exception_type="System.Management.Automation.PSNotSupportedException",
                    message=f"{SCRIPT_RULE}: {shown} was refused. Send cmdlets with named parameters "
                    "(add_cmdlet/add_parameter) instead of add_script or Invoke-Expression.",
                    error_id="ScriptNotSupported",
                    category=ErrorCategory.NotImplemented,
                    target=name if not command.is_script else None,
                )
            )


def _command_not_found(name: str) -> TerminatingError:
    return TerminatingError(
        error_record(
            exception_type="System.Management.Automation.CommandNotFoundException",
            message=f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
            "operable program. Check the spelling of the name, or if a path was included, verify that the "
            "path is correct and try again.",
            error_id="CommandNotFoundException",
            category=ErrorCategory.ObjectNotFound,
            target=name,
        )
    )


def _run_statement(
    lab: Lab, host: Host, user: str, statement: list[Command], input_objects: list[Any], sink: OutputSink
) -> None:
    # The engine prepares (finds and binds) every command of a statement before any of them runs.
    prepared: list[tuple[Binder, BoundArguments]] = []
    for position, command in enumerate(statement):
        spec = lookup(command.command_text.strip())
        if spec is None:
            raise _command_not_found(command.command_text.strip())
        binder = Binder(spec)
        has_input = position > 0 or bool(input_objects)
        prepared.append((binder, binder.bind(command.parameters, has_input)))

    stage_input: list[Any] | None = list(input_objects) if input_objects else None
    for position, (binder, bound) in enumerate(prepared):
        last = position == len(prepared) - 1
        ctx = CmdletContext(
            lab=lab,
            host=host,
            user=user,
            spec=binder.spec,
            common=CommonParameters.from_bound(bound),
            stopping=sink.stopping,
            pipeline_position=position + 1,
            pipeline_length=len(prepared),
            expecting_input=stage_input is not None or position > 0,
            bound=bound,
        )
        produced: list[Any] = []
        if stage_input is None and position == 0:
            records: list[tuple[BoundArguments | None, Any]] = [(bound, None)]
        else:
            # A downstream command whose upstream wrote nothing never processes a record.
            records = [(binder.bind_pipeline_object(bound, obj), obj) for obj in stage_input or []]
        for args, obj in records:
            if sink.stopping.is_set():
                return
            try:
                if args is None:
                    ctx.write_error(binder.input_not_bound(obj, ctx.invocation()))
                else:
                    _run_record(lab, ctx, args)
            finally:
                _flush(ctx, sink, produced, last)
        stage_input = produced


def _run_record(lab: Lab, ctx: CmdletContext, args: BoundArguments) -> None:
    ctx.bound = args  # this record's $PSBoundParameters, pipeline-bound ones included
    with lab.lock:
        try:
            ctx.spec.function(ctx, args)
        except WrittenError as exc:
            ctx.write_error(exc.record)  # -ErrorAction Stop turns it into a TerminatingError here
        except TerminatingError:
            raise
        except Exception as exc:
            # An emulator bug must still reach the client as a failed pipeline, not a hung one.
            _log.exception("cmdlet %s failed inside hvsim", ctx.spec.name)
            raise TerminatingError(
                ctx.error(
                    "System.Management.Automation.RuntimeException",
                    f"hvsim internal error in {ctx.spec.name}: {type(exc).__name__}",
                    "HvsimInternalError",
                    ErrorCategory.NotSpecified,
                )
            ) from exc


def _flush(ctx: CmdletContext, sink: OutputSink, produced: list[Any], last: bool) -> None:
    events, ctx.events = ctx.events, []
    for kind, payload in events:
        if kind == "output":
            if last:
                sink.write_output(payload)
            else:
                produced.append(payload)
        elif kind == "error":
            sink.write_error(payload)
        elif kind == "warning":
            sink.write_warning(payload)
        else:
            sink.write_verbose(payload)
