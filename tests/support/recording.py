"""Recordings of what a host answered, and their replay against hvsim (format: tests/recordings/README.md).

A `Recorder` observes every invocation the provider's remoting layer runs (`remoting.observe`) and keeps,
per invocation, the statements sent (cmdlets and named parameters; secrets and binary data redacted) and the
answer as the client saw it: each output object's type names, property names and scalar values, and each
error record's FullyQualifiedErrorId, category, message and whether it failed the pipeline. `replay` sends
the same statements to an hvsim lab and lists every difference in that answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psrpcore.types import ErrorCategory
from pypsrp.powershell import PowerShell, RunspacePool

from hvreplica_provider import remoting
from hvreplica_provider.remoting import SecureText, Statement

FORMAT = "hvreplica-recording/1"
REDACTED = "<redacted>"
RECORDINGS_DIR = Path(__file__).resolve().parents[1] / "recordings"
# Values compared by replay: stable facts. GUIDs, thumbprints, times and sizes differ between any two hosts.
_SCALARS = (str, bool, int, float)
_VOLATILE = ("Id", "VMId", "Thumbprint", "Time", "Date", "Size", "Bytes", "Started", "Uptime", "Path")


@dataclass
class RecordedError:
    fq_error_id: str
    category: str
    message: str
    terminating: bool


@dataclass
class RecordedObject:
    types: list[str]
    properties: dict[str, Any]  # name -> scalar value, or None for a value that is not a scalar


@dataclass
class Exchange:
    host: str  # the alias of the host in the recording ("primary", "replica", ...)
    statements: list[list[dict[str, Any]]]  # [[{"cmdlet": name, "parameters": {name: value}}]]
    output: list[RecordedObject] = field(default_factory=list)
    errors: list[RecordedError] = field(default_factory=list)


@dataclass
class Recording:
    synthetic: bool  # true: generated or hand-written, NOT an answer of Windows
    source: str  # what answered: "Windows Server 2022 (build ...)", or how a synthetic one was made
    hosts: dict[str, dict[str, Any]]  # alias -> {"fqdn": ..., "vms": [{"name": ..., "id": ...}]}
    exchanges: list[Exchange] = field(default_factory=list)
    recorded_at: str = ""

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Recording:
        raw = json.loads(path.read_text())
        if raw.pop("format", None) != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} recording")
        exchanges = [
            Exchange(
                host=e["host"],
                statements=e["statements"],
                output=[RecordedObject(**o) for o in e["output"]],
                errors=[RecordedError(**r) for r in e["errors"]],
            )
            for e in raw.pop("exchanges")
        ]
        return cls(exchanges=exchanges, **raw)


# ------------------------------------------------------------------------------------------------ record


def _parameter(value: Any) -> Any:
    """A parameter value as stored: secrets and binary data never reach a recording."""
    if isinstance(value, SecureText):
        return REDACTED
    if isinstance(value, bytes | bytearray):
        return REDACTED
    if isinstance(value, list | tuple):
        return [_parameter(v) for v in value]
    if isinstance(value, _SCALARS) or value is None:
        return value
    return str(value)


def statement_record(statement: Statement) -> list[dict[str, Any]]:
    return [{"cmdlet": c.name, "parameters": {k: _parameter(v) for k, v in c.parameters}} for c in statement]


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, _SCALARS):
        return value
    text = str(value)
    return text if getattr(value, "types", None) and "System.Enum" in value.types else None


def object_record(obj: Any) -> RecordedObject:
    if not hasattr(obj, "adapted_properties"):  # a primitive (string, number, bool)
        return RecordedObject([type(obj).__name__], {"": _scalar(obj)})
    props = {**(obj.extended_properties or {}), **(obj.adapted_properties or {})}
    return RecordedObject(list(obj.types or []), {k: _scalar(v) for k, v in props.items()})


def answer(ps: PowerShell) -> tuple[list[RecordedObject], list[RecordedError]]:
    """What a finished pipeline answered; the record that failed it (if any) is the terminating one."""
    records = list(ps.streams.error)
    failed = ps.had_errors and bool(records)
    errors = [
        RecordedError(
            fq_error_id=str(r.fq_error or ""),
            category=ErrorCategory(int(r.category or 0)).name,
            message=str(r),
            terminating=failed and i == len(records) - 1,
        )
        for i, r in enumerate(records)
    ]
    return [object_record(o) for o in ps.output], errors


class Recorder:
    """Collects every invocation of the provider's remoting layer while `recording()` is active; hosts are
    named by alias (`aliases`: connection host -> alias) so a recording holds no address."""

    def __init__(self, recording: Recording, aliases: Mapping[str, str]) -> None:
        self.recording = recording
        self.aliases = dict(aliases)

    def __call__(self, host: str, statements: Sequence[Statement], ps: PowerShell) -> None:
        output, errors = answer(ps)
        self.recording.exchanges.append(
            Exchange(
                host=self.aliases.get(host, host),
                statements=[statement_record(s) for s in statements],
                output=output,
                errors=errors,
            )
        )

    @contextlib.contextmanager
    def recording_active(self) -> Iterator[Recorder]:
        with remoting.observe(self):
            yield self
        self.recording.recorded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ replay


def _replayable(statements: list[list[dict[str, Any]]]) -> bool:
    return REDACTED not in json.dumps(statements)


def run_statements(pool: RunspacePool, statements: list[list[dict[str, Any]]]) -> PowerShell:
    ps = PowerShell(pool)
    for i, statement in enumerate(statements):
        if i:
            ps.add_statement()
        for command in statement:
            ps.add_cmdlet(command["cmdlet"])
            for name, value in command["parameters"].items():
                ps.add_parameter(name, value)
    ps.invoke()
    return ps


def _comparable(value: Any, name: str) -> bool:
    return value is not None and not any(part in name for part in _VOLATILE)


def _type(obj: RecordedObject) -> str:
    return obj.types[0] if obj.types else "?"


def differences(
    index: int, recorded: Exchange, output: list[RecordedObject], errors: list[RecordedError]
) -> list[str]:
    """Every way hvsim's answer differs from the recorded one, each as one line."""
    cmdlets = "; ".join(" | ".join(c["cmdlet"] for c in st) for st in recorded.statements)
    where = f"exchange {index} ({recorded.host}: {cmdlets})"
    found: list[str] = []
    want_errors = [(e.fq_error_id, e.category, e.terminating) for e in recorded.errors]
    got_errors = [(e.fq_error_id, e.category, e.terminating) for e in errors]
    if want_errors != got_errors:
        found.append(f"{where}: errors (id, category, terminating) {got_errors} instead of {want_errors}")
    else:
        for want, got in zip(recorded.errors, errors, strict=True):
            if want.message != got.message:
                found.append(f"{where}: {want.fq_error_id} says {got.message!r} instead of {want.message!r}")
    want_types, got_types = [_type(o) for o in recorded.output], [_type(o) for o in output]
    if want_types != got_types:
        missing, extra = Counter(want_types) - Counter(got_types), Counter(got_types) - Counter(want_types)
        what = f"lacks {dict(missing)}, has extra {dict(extra)}" if missing or extra else "in another order"
        found.append(f"{where}: output objects {what}")
        return found
    for n, (want, got) in enumerate(zip(recorded.output, output, strict=True)):
        if want.types != got.types:
            found.append(f"{where}: object {n} type chain {got.types} instead of {want.types}")
        missing = sorted(set(want.properties) - set(got.properties))
        extra = sorted(set(got.properties) - set(want.properties))
        if missing or extra:
            found.append(f"{where}: object {n} lacks properties {missing}, has extra {extra}")
        for name, value in want.properties.items():
            if name in got.properties and _comparable(value, name) and got.properties[name] != value:
                found.append(f"{where}: object {n} {name} = {got.properties[name]!r} instead of {value!r}")
    return found


@dataclass
class ReplayReport:
    differences: list[str]
    skipped: list[int]  # exchanges that cannot be sent again: a secret or binary data was redacted
    replayed: int


def replay(recording: Recording, pools: Mapping[str, RunspacePool]) -> ReplayReport:
    """Send every exchange of `recording` in order to the pool of its host alias and list the differences.
    An exchange whose statements were redacted is not sent; the report names it."""
    report = ReplayReport([], [], 0)
    for index, exchange in enumerate(recording.exchanges):
        if not _replayable(exchange.statements):
            report.skipped.append(index)
            continue
        ps = run_statements(pools[exchange.host], exchange.statements)
        output, errors = answer(ps)
        report.differences += differences(index, exchange, output, errors)
        report.replayed += 1
    return report
