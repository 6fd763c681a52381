"""The cmdlet framework driven directly: `hvsim.cmdlets.invoke` with psrpcore Command objects (exactly what
the WSMan layer hands it) and the binder on declared parameter lists. Wire-level behaviour is covered by the
test_cmdlets_windows_*.py conformance tests through the real pypsrp client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from psrpcore import Command
from psrpcore.types import (
    ErrorCategory,
    ErrorRecord,
    PSInt,
    PSInt64,
    PSObject,
    PSSecureString,
    PSString,
    add_note_property,
)

from hvsim.cmdlets import TerminatingError, invoke
from hvsim.cmdlets.base import (
    BOOL,
    INT32,
    STRING,
    SWITCH,
    Binder,
    CmdletContext,
    CmdletSpec,
    CommonParameters,
    Param,
)
from hvsim.config import parse_config
from hvsim.lab import Lab
from hvsim.windows import Host

FQDN = "w1.contoso.com"
TEMP_FILE = "C:\\Windows\\Temp\\dispatch.txt"


@dataclass
class RecordingSink:
    """An OutputSink that keeps what a pipeline wrote."""

    stopping: threading.Event = field(default_factory=threading.Event)
    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)

    def write_output(self, obj: Any) -> None:
        self.output.append(obj)

    def write_error(self, record: ErrorRecord) -> None:
        self.errors.append(record)

    def write_warning(self, message: str) -> None:
        self.warnings.append(message)

    def write_verbose(self, message: str) -> None:
        self.verbose.append(message)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    config = parse_config({"host": [{"fqdn": FQDN, "address": "127.63.0.1"}]})
    yield Lab(config, tmp_path)


@pytest.fixture
def host(lab: Lab) -> Host:
    return lab.host(FQDN)


def cmd(name: str, *positional: Any, end: bool = False, script: bool = False, **params: Any) -> Command:
    """A Command as psrpcore deserialises it: named parameters as (name, value), arguments (None, value)."""
    command = Command(name, is_script=script)
    command.parameters.extend((None, value) for value in positional)
    command.parameters.extend(params.items())
    command.end_of_statement = end
    return command


def run(lab: Lab, *commands: Command, inputs: list[Any] | None = None) -> RecordingSink:
    sink = RecordingSink()
    invoke(lab, lab.host(FQDN), "Administrator", list(commands), inputs or [], sink)
    return sink


def fails(lab: Lab, *commands: Command, inputs: list[Any] | None = None) -> ErrorRecord:
    with pytest.raises(TerminatingError) as info:
        run(lab, *commands, inputs=inputs)
    return info.value.record


# --- rules of dispatch -----------------------------------------------------------------------------------


def test_script_text_is_refused_and_nothing_runs(lab: Lab, host: Host) -> None:
    record = fails(
        lab,
        cmd("Set-Content", Path=TEMP_FILE, Value="x", end=True),
        cmd("Get-Date | Out-String", script=True),
    )
    assert "hvsim executes cmdlets, not scripts" in str(record)
    assert record.FullyQualifiedErrorId == "ScriptNotSupported"
    assert not host.files.exists(TEMP_FILE)  # refused before the first statement ran


def test_invoke_expression_is_refused_by_name(lab: Lab) -> None:
    record = fails(lab, cmd("Invoke-Expression", Command="Get-Date"))
    assert "hvsim executes cmdlets, not scripts" in str(record)


def test_unknown_cmdlet_is_command_not_found(lab: Lab) -> None:
    record = fails(lab, cmd("Get-Nothing"))
    assert record.FullyQualifiedErrorId == "CommandNotFoundException"
    assert record.CategoryInfo.Category == ErrorCategory.ObjectNotFound
    assert record.CategoryInfo.TargetName == "Get-Nothing"
    assert record.Exception.PSObject.type_names[:2] == [
        "System.Management.Automation.CommandNotFoundException",
        "System.Management.Automation.RuntimeException",
    ]
    assert str(record).startswith("The term 'Get-Nothing' is not recognized as the name of a cmdlet")


def test_cmdlet_names_are_case_insensitive_and_may_be_module_qualified(lab: Lab) -> None:
    assert run(lab, cmd("test-path", Path="C:\\Windows")).output == [True]
    assert run(lab, cmd("Microsoft.PowerShell.Management\\Test-Path", Path="C:\\Windows")).output == [True]


def test_statements_run_in_order_and_a_terminating_error_stops_the_rest(lab: Lab, host: Host) -> None:
    sink = RecordingSink()
    commands = [
        cmd("Test-Path", Path="C:\\Windows", end=True),
        cmd("Get-Item", Path="C:\\Missing", ErrorAction="Stop", end=True),
        cmd("Set-Content", Path=TEMP_FILE, Value="never"),
    ]
    with pytest.raises(TerminatingError) as info:
        invoke(lab, host, "Administrator", commands, [], sink)
    assert sink.output == [True]  # the first statement's output reached the client
    assert (
        info.value.record.FullyQualifiedErrorId == "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
    )
    assert not host.files.exists(TEMP_FILE)


def test_a_set_stopping_event_runs_nothing(lab: Lab, host: Host) -> None:
    sink = RecordingSink()
    sink.stopping.set()
    invoke(lab, host, "Administrator", [cmd("Set-Content", Path=TEMP_FILE, Value="x")], [], sink)
    assert not host.files.exists(TEMP_FILE)


# --- parameter binding -----------------------------------------------------------------------------------


def test_unknown_parameter(lab: Lab) -> None:
    record = fails(lab, cmd("Test-Path", Path="C:\\", Bogus=1))
    assert str(record) == "A parameter cannot be found that matches parameter name 'Bogus'."
    assert (
        record.FullyQualifiedErrorId == "NamedParameterNotFound,Microsoft.PowerShell.Commands.TestPathCommand"
    )
    assert record.CategoryInfo.Category == ErrorCategory.InvalidArgument
    assert record.Exception.PSObject.type_names[0] == "System.Management.Automation.ParameterBindingException"


def test_parameter_names_aliases_and_unique_prefixes(lab: Lab) -> None:
    assert run(lab, cmd("Test-Path", path="C:\\Windows")).output == [True]
    assert run(lab, cmd("Test-Path", Lit="C:\\Windows")).output == [True]  # unique prefix of -LiteralPath
    assert run(lab, cmd("Test-Path", PSPath="C:\\Windows")).output == [True]  # alias of -LiteralPath
    record = fails(lab, cmd("Get-ChildItem", P="C:\\"))
    assert record.FullyQualifiedErrorId.startswith("AmbiguousParameter,")
    assert "Possible matches include: -Path -PipelineVariable." in str(record)


def test_missing_mandatory_parameter(lab: Lab) -> None:
    record = fails(lab, cmd("Get-Item"))
    assert str(record) == "Cannot process command because of one or more missing mandatory parameters: Path."
    assert (
        record.FullyQualifiedErrorId
        == "MissingMandatoryParameter,Microsoft.PowerShell.Commands.GetItemCommand"
    )


def test_positional_arguments_and_leftovers(lab: Lab) -> None:
    assert run(lab, cmd("Test-Path", "C:\\Windows")).output == [True]
    record = fails(lab, cmd("Test-Path", "C:\\Windows", "extra"))
    assert str(record) == "A positional parameter cannot be found that accepts argument 'extra'."
    assert record.FullyQualifiedErrorId.startswith("PositionalParameterNotFound,")


def test_parameter_given_twice(lab: Lab) -> None:
    command = cmd("Test-Path", Path="C:\\")
    command.parameters.append(("path", "C:\\Windows"))
    record = fails(lab, command)
    assert record.FullyQualifiedErrorId.startswith("ParameterAlreadyBound,")


def test_parameter_without_argument_is_missing_argument_unless_a_switch(lab: Lab, host: Host) -> None:
    record = fails(lab, cmd("Get-Content", Path=None))
    assert (
        str(record)
        == "Missing an argument for parameter 'Path'. Specify a parameter of type 'System.String[]' "
        "and try again."
    )
    host.files.write(TEMP_FILE, b"a\r\nb\r\n")
    # pypsrp's add_parameter("Raw") sends a switch with no value: present.
    assert [str(o) for o in run(lab, cmd("Get-Content", Path=TEMP_FILE, Raw=None)).output] == ["a\r\nb\r\n"]


def test_empty_string_for_a_mandatory_path(lab: Lab) -> None:
    record = fails(lab, cmd("Test-Path", Path=""))
    assert str(record) == "Cannot bind argument to parameter 'Path' because it is an empty string."
    assert record.FullyQualifiedErrorId.startswith("ParameterArgumentValidationErrorEmptyStringNotAllowed,")


def test_argument_conversion_like_powershell(lab: Lab, host: Host) -> None:
    host.files.write(TEMP_FILE, b"1\r\n2\r\n3\r\n")
    assert [str(o) for o in run(lab, cmd("Get-Content", Path=TEMP_FILE, TotalCount="2")).output] == ["1", "2"]
    record = fails(lab, cmd("Get-Content", Path=TEMP_FILE, TotalCount="two"))
    assert str(record) == (
        'Cannot bind parameter \'TotalCount\'. Cannot convert value "two" to type "System.Int64". '
        'Error: "Input string was not in a correct format."'
    )
    assert (
        record.FullyQualifiedErrorId
        == "CannotConvertArgumentNoMessage,Microsoft.PowerShell.Commands.GetContentCommand"
    )


def test_validate_set(lab: Lab) -> None:
    record = fails(lab, cmd("Get-Content", Path=TEMP_FILE, Encoding="EBCDIC"))
    assert str(record).startswith(
        "Cannot validate argument on parameter 'Encoding'. The argument \"EBCDIC\" does not belong to the "
        'set "Unknown,String,Unicode,Byte,'
    )
    assert record.FullyQualifiedErrorId.startswith("ParameterArgumentValidationError,")
    assert record.CategoryInfo.Category == ErrorCategory.InvalidData


def test_secure_string_parameter_refuses_plain_text_without_echoing_it(lab: Lab) -> None:
    record = fails(
        lab,
        cmd(
            "Import-PfxCertificate",
            FilePath="C:\\x.pfx",
            CertStoreLocation="Cert:\\LocalMachine\\My",
            Password="Sup3r-Secret",
        ),
    )
    assert record.FullyQualifiedErrorId.startswith("ParameterArgumentTransformationError,")
    assert "System.Security.SecureString" in str(record)
    assert "Sup3r-Secret" not in str(record)


def test_switch_accepts_pypsrp_confirm_false_and_rejects_strings(lab: Lab, host: Host) -> None:
    host.files.write(TEMP_FILE, b"x")
    run(lab, cmd("Remove-Item", Path=TEMP_FILE, Confirm=False))
    assert not host.files.exists(TEMP_FILE)
    record = fails(lab, cmd("Remove-Item", Path=TEMP_FILE, Force="yes"))
    assert record.FullyQualifiedErrorId.startswith("ParameterArgumentTransformationError,")
    assert "Boolean parameters accept only Boolean values and numbers" in str(record)


def test_ambiguous_parameter_set(lab: Lab) -> None:
    record = fails(lab, cmd("Get-NetFirewallRule", Name="a", DisplayName="b"))
    assert str(record) == "Parameter set cannot be resolved using the specified named parameters."
    assert record.FullyQualifiedErrorId == "AmbiguousParameterSet,Get-NetFirewallRule"


# --- common parameters -----------------------------------------------------------------------------------


def test_error_action_decides_what_a_non_terminating_error_does(lab: Lab) -> None:
    missing = "C:\\Nowhere\\file.txt"
    continued = run(lab, cmd("Get-Item", Path=missing))
    assert [r.FullyQualifiedErrorId for r in continued.errors] == [
        "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
    ]
    assert run(lab, cmd("Get-Item", Path=missing, ErrorAction="SilentlyContinue")).errors == []
    assert run(lab, cmd("Get-Item", Path=missing, ea=0)).errors == []  # alias, numeric enum value
    stopped = fails(lab, cmd("Get-Item", Path=missing, ErrorAction="Stop"))
    assert stopped.CategoryInfo.Category == ErrorCategory.ObjectNotFound
    assert stopped.CategoryInfo.TargetName == missing
    record = fails(lab, cmd("Get-Item", Path=missing, ErrorAction="Sometimes"))
    assert "Unable to match the identifier name Sometimes to a valid enumerator name" in str(record)


def test_whatif_changes_nothing(lab: Lab, host: Host) -> None:
    host.files.write(TEMP_FILE, b"keep")
    assert run(lab, cmd("Remove-Item", Path=TEMP_FILE, WhatIf=None)).errors == []
    assert host.files.read(TEMP_FILE) == b"keep"


def test_confirm_prompt_fails_without_an_interactive_host(lab: Lab, host: Host) -> None:
    host.files.write(TEMP_FILE, b"keep")
    record = fails(lab, cmd("Remove-Item", Path=TEMP_FILE, Confirm=True))
    assert record.FullyQualifiedErrorId == "HostException,Microsoft.PowerShell.Commands.RemoveItemCommand"
    assert "does not support user interaction" in str(record)
    assert host.files.read(TEMP_FILE) == b"keep"


def test_confirm_impact_high_prompts_unless_confirm_false(lab: Lab, host: Host) -> None:
    spec = CmdletSpec(
        "Remove-Thing",
        "Test.RemoveThing",
        lambda ctx, args: None,
        (),
        supports_should_process=True,
        confirm_impact="High",
    )

    def context(confirm: bool | None) -> CmdletContext:
        return CmdletContext(
            lab, host, "Administrator", spec, CommonParameters(confirm=confirm), threading.Event()
        )

    assert context(False).should_process("thing") is True
    with pytest.raises(TerminatingError) as info:
        context(None).should_process("thing")
    assert 'Performing the operation "Remove-Thing" on target "thing".' in str(info.value.record)


def test_verbose_only_with_the_switch(lab: Lab, host: Host) -> None:
    spec = CmdletSpec("Get-Thing", "Test.GetThing", lambda ctx, args: None, ())
    quiet = CmdletContext(lab, host, "Administrator", spec, CommonParameters(), threading.Event())
    loud = CmdletContext(lab, host, "Administrator", spec, CommonParameters(verbose=True), threading.Event())
    quiet.write_verbose("x")
    loud.write_verbose("x")
    assert quiet.events == [] and loud.events == [("verbose", "x")]


# --- pipeline input --------------------------------------------------------------------------------------


def test_client_input_binds_to_value_from_pipeline(lab: Lab) -> None:
    sink = run(lab, cmd("Test-Path"), inputs=["C:\\Windows", "C:\\Nope"])
    assert sink.output == [True, False]


def test_objects_flow_between_commands_by_property_name(lab: Lab, host: Host) -> None:
    host.files.write(TEMP_FILE, b"x")
    # Get-Item writes a FileInfo whose PSPath note binds Remove-Item's -LiteralPath (alias PSPath).
    sink = run(lab, cmd("Get-Item", Path=TEMP_FILE), cmd("Remove-Item"))
    assert sink.errors == [] and sink.output == []
    assert not host.files.exists(TEMP_FILE)


def test_downstream_command_without_upstream_output_does_not_run(lab: Lab, host: Host) -> None:
    sink = run(lab, cmd("Get-Item", Path="C:\\Missing", ErrorAction="SilentlyContinue"), cmd("Remove-Item"))
    assert sink.errors == [] and sink.output == []


def test_input_that_binds_to_nothing_is_a_non_terminating_error(lab: Lab) -> None:
    sink = run(lab, cmd("Get-CimInstance", ClassName="Win32_ComputerSystem"), inputs=[42])
    assert [r.FullyQualifiedErrorId for r in sink.errors] == [
        "InputObjectNotBound,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand"
    ]
    assert sink.output == []


# --- the binder on declared parameters ------------------------------------------------------------------

SPEC = CmdletSpec(
    "Set-Thing",
    "Test.SetThing",
    lambda ctx, args: None,
    (
        Param("Name", STRING, mandatory=True, position=0),
        Param("Count", INT32, value_range=(0, 24)),
        Param("Enabled", BOOL),
        Param("Mode", STRING, choices=("Fast", "Slow"), sets=("ByMode",), mandatory=("ByMode",)),
        Param("Level", INT32, sets=("ByLevel",)),
        Param("Quiet", SWITCH),
    ),
    default_set="ByLevel",
)


def bind(*params: tuple[str | None, Any], has_input: bool = False) -> Any:
    return Binder(SPEC).bind(list(params), has_input)


def binding_error(*params: tuple[str | None, Any]) -> ErrorRecord:
    with pytest.raises(TerminatingError) as info:
        bind(*params)
    return info.value.record


def test_bound_arguments_know_what_was_passed() -> None:
    bound = bind(("Name", "a"), ("Count", "7"))
    assert bound["Count"] == 7 and "Count" in bound and "Enabled" not in bound
    assert bound.get("Enabled") is None
    assert bound.parameter_set == "ByLevel"  # the default set wins when several fit


def test_boolean_parameters_take_booleans_and_numbers_only() -> None:
    assert bind(("Name", "a"), ("Enabled", True))["Enabled"] is True
    assert bind(("Name", "a"), ("Enabled", 0))["Enabled"] is False
    record = binding_error(("Name", "a"), ("Enabled", "true"))
    assert str(record) == (
        "Cannot process argument transformation on parameter 'Enabled'. Cannot convert value "
        '"System.String" to type "System.Boolean". Boolean parameters accept only Boolean values and '
        "numbers, such as $True, $False, 1 or 0."
    )


def test_validate_range() -> None:
    record = binding_error(("Name", "a"), ("Count", 25))
    assert str(record) == (
        "Cannot validate argument on parameter 'Count'. The 25 argument is greater than the maximum allowed "
        "range of 24. Supply an argument that is less than or equal to 24 and then try the command again."
    )
    assert "less than the minimum allowed range of 0" in str(binding_error(("Name", "a"), ("Count", -1)))


def test_integer_overflow_and_rounding() -> None:
    assert bind(("Name", "a"), ("Count", 2.5))["Count"] == 2  # banker's rounding, like [int]2.5
    record = binding_error(("Name", "a"), ("Level", 2**40))
    assert 'Error: "Value was either too large or too small for an Int32."' in str(record)


def test_scalar_arguments_arrive_as_plain_python_values() -> None:
    # psrpcore deserialises <I32>/<S> into sized types that overflow in arithmetic; the binder unwraps them.
    bound = bind((None, PSString("a")), ("Count", PSInt(3)), ("Level", PSInt64(5)), ("Enabled", PSInt(1)))
    assert [type(bound[n]) for n in ("Name", "Count", "Level", "Enabled")] == [str, int, int, bool]
    assert bound["Count"] * 2**40 == 3 * 2**40


def test_parameter_sets_choose_and_require() -> None:
    assert bind(("Name", "a"), ("Mode", "fast")).parameter_set == "ByMode"
    assert str(binding_error(("Name", "a"), ("Mode", "Fast"), ("Level", 1))) == (
        "Parameter set cannot be resolved using the specified named parameters."
    )


def test_pipeline_object_binds_by_property_name() -> None:
    spec = CmdletSpec(
        "Use-Thing",
        "Test.UseThing",
        lambda ctx, args: None,
        (Param("Path", STRING, mandatory=True, aliases=("PSPath",), from_pipeline_by_property=True),),
    )
    binder = Binder(spec)
    bound = binder.bind([], has_input=True)
    item = PSObject()
    add_note_property(item, "PSPath", "C:\\x")
    assert binder.bind_pipeline_object(bound, item)["Path"] == "C:\\x"
    assert binder.bind_pipeline_object(bound, PSSecureString("s")) is None


# --- wildcards in -Path ----------------------------------------------------------------------------------


def test_path_wildcards_match_child_names_and_literal_paths_do_not(lab: Lab, host: Host) -> None:
    for name in ("a.log", "b.log", "c.txt"):
        host.files.write(f"C:\\Windows\\Temp\\{name}", b"x")
    found = run(lab, cmd("Get-Item", Path="C:\\Windows\\Temp\\*.LOG")).output
    assert sorted(o.PSChildName for o in found) == ["a.log", "b.log"]
    assert run(lab, cmd("Test-Path", Path="C:\\Windows\\Temp\\?.txt")).output == [True]
    assert run(lab, cmd("Test-Path", Path="C:\\Windows\\Temp\\*.none")).output == [False]
    quiet = run(lab, cmd("Get-Item", Path="C:\\Windows\\Temp\\*.none"))
    assert quiet.output == [] and quiet.errors == []  # globbing that matches nothing is not an error
    literal = run(lab, cmd("Get-Item", LiteralPath="C:\\Windows\\Temp\\*.log"))
    assert [r.FullyQualifiedErrorId for r in literal.errors] == [
        "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
    ]
    run(lab, cmd("Remove-Item", Path="C:\\Windows\\Temp\\*.log"))
    assert not host.files.exists("C:\\Windows\\Temp\\a.log") and host.files.exists("C:\\Windows\\Temp\\c.txt")


def test_set_content_accepts_an_empty_value_to_empty_a_file(lab: Lab, host: Host) -> None:
    host.files.write(TEMP_FILE, b"old")
    assert run(lab, cmd("Set-Content", Path=TEMP_FILE, Value=[])).errors == []
    assert host.files.read(TEMP_FILE) == b""


def test_relative_paths_start_in_the_users_documents(lab: Lab, host: Host) -> None:
    assert run(lab, cmd("Set-Content", Path="notes.txt", Value="x")).errors == []
    assert host.files.read("C:\\Users\\Administrator\\Documents\\notes.txt") == b"x\r\n"
