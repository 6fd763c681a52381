"""Helpers shared by every dynamic resource provider of this package.

The Pulumi engine hands providers plain dicts with a few traps: integers arrive as floats at any
depth (`hvreplica_provider.engine_values` turns them back), preview-time values may be unknown,
`olds` carry the serialized provider under `__provider`, and `additional_secret_outputs` is the
only way to mark computed secrets. The helpers below deal with those once:

- unknowns: `is_unknown`, `contains_unknown`;
- check: `CheckFailures` collects `CheckFailure`s and owns the typed property validators
  (`integer`, `string`, `choice`, `string_list`) that also fill defaults and normalise in place;
- diff: `changed_keys` and `diff_result` (explicit `replaces`, unknown counts as changed);
- state: `user_properties` drops `__provider`;
- resources: `args_props` turns an Args dataclass into props, `secret_inputs` marks the secret-bearing
  inputs (so the state stays encrypted when a program passes plain strings), `with_secret_outputs`
  merges options.

Validators never echo the value of a property listed as secret in their failure text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, DiffResult
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from hvreplica_provider.engine_values import whole_number
from hvreplica_provider.remoting import connection_dict, parse_connection

PROVIDER_KEY = "__provider"


def is_unknown(value: object) -> bool:
    """A preview-time placeholder (the SDK passes `Unknown()` or, at the top level, the sentinel)."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN)


def contains_unknown(value: object) -> bool:
    """Whether `value` or anything nested in it is unknown."""
    if is_unknown(value):
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_unknown(v) for v in value)
    return False


def user_properties(props: Mapping[str, Any]) -> dict[str, Any]:
    """The properties without the engine's serialized provider."""
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


_MAX_ECHO = 100  # longer values are not repeated in failures (a pasted key or certificate)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def control_problem(value: str) -> str | None:
    """Why `value` may not go into a certificate, file, registry value or firewall rule: a control
    character (a line break would add a line to the hosts file, a field to a certificate name)."""
    if _CONTROL.search(value):
        return "it contains a control character (line break, tab, ...); remove it"
    return None


class CheckFailures:
    """Collects check failures while validating (and normalising) a copy of the inputs.

    Each validator reads `inputs[key]`, fills the default when it is absent, stores the
    normalised value back, and returns it, or returns None when the value is unknown (preview) or
    invalid (a failure naming the property and the fix is recorded). Secret properties are named
    in `secret_keys` so their values never reach a failure text.
    """

    def __init__(self, inputs: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> None:
        self.inputs: dict[str, Any] = dict(inputs)
        self.failures: list[CheckFailure] = []
        self._secret = frozenset(secret_keys)

    def add(self, key: str, reason: str) -> None:
        self.failures.append(CheckFailure(key, reason))

    def failed(self, key: str) -> bool:
        """Whether a failure was recorded for `key`: a later rule must not call that value missing."""
        return any(f.property == key for f in self.failures)

    def missing(self, key: str) -> bool:
        """Whether `key` is absent (neither unknown nor given); an invalid value was reported already."""
        return self.inputs.get(key) is None and not self.failed(key)

    def result(self) -> CheckResult:
        return CheckResult(self.inputs, self.failures)

    def label(self, key: str, value: object) -> str:
        """`key 'value'` for a failure text, or just `key` when the value may not be echoed."""
        return f"{key} {value!r}" if self._echoable(key, value) else key

    def got(self, key: str, value: object) -> str:
        """`, got 'value'` for a failure text, or nothing when the value may not be echoed."""
        return f", got {value!r}" if self._echoable(key, value) else ""

    def _echoable(self, key: str, value: object) -> bool:
        """A value is repeated in a failure only when it is short, plain and not from a secret property
        (`key`, `key[0]` or `key.field`): key material pasted into the wrong input is never printed."""
        base = key.split("[", 1)[0].split(".", 1)[0]
        if base in self._secret:
            return False
        if isinstance(value, bool | int | float) or value is None:
            return True
        return isinstance(value, str) and len(value) <= _MAX_ECHO and "-----" not in value

    def _value(self, key: str, default: Any, required: bool = False) -> Any:
        """The input (or its default, stored back) to validate; None when there is nothing to check: the
        value is a preview unknown or absent (a missing required value is reported here)."""
        value = self.inputs.get(key)
        if value is None:
            value = default
            if default is not None:
                self.inputs[key] = default
        if is_unknown(value):
            return None
        if value is None and required:
            self.add(key, f"{key} is required")
        return value

    def integer(
        self,
        key: str,
        *,
        default: int | None = None,
        required: bool = False,
        allowed: Sequence[int] | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._value(key, default, required)
        if value is None:
            return None
        number = whole_number(value)
        if number is None:
            self.add(key, f"{key} must be a whole number{self.got(key, value)}")
            return None
        self.inputs[key] = number
        if allowed is not None and number not in allowed:
            self.add(key, f"{key} must be one of {', '.join(map(str, allowed))}{self.got(key, number)}")
            return None
        if minimum is not None and number < minimum:
            self.add(key, f"{key} must be at least {minimum}{self.got(key, number)}")
            return None
        if maximum is not None and number > maximum:
            self.add(key, f"{key} must be at most {maximum}{self.got(key, number)}")
            return None
        return number

    def string(
        self,
        key: str,
        *,
        default: str | None = None,
        required: bool = False,
        problem: Callable[[str], str | None] | None = None,
        text: bool = False,
    ) -> str | None:
        """A string; `problem(value)` returns why a value is unacceptable (None when fine). Control characters
        are refused (values end up in certificates, files, the registry, firewall rules) unless `text`: PEM
        blocks and passwords, which go nowhere as they are."""
        value = self._value(key, default, required)
        if value is None:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.add(key, f"{key} must be a {'non-empty ' if required else ''}string")
            return None
        reason = (None if text else control_problem(value)) or (problem(value) if problem else None)
        if reason:
            self.add(key, f"{self.label(key, value)} is not acceptable: {reason}")
            return None
        return value

    def choice(self, key: str, options: Sequence[str], *, default: str | None = None) -> str | None:
        value = self._value(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or value not in options:
            listed = ", ".join(map(repr, options))
            self.add(key, f"{key} must be one of {listed}{self.got(key, value)}")
            return None
        return str(value)

    def boolean(self, key: str, *, default: bool) -> bool | None:
        """A real boolean: 0, "" or [] would pass a truthiness test and switch a safety setting off."""
        value = self._value(key, default)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.add(key, f"{key} must be true or false (a boolean){self.got(key, value)}")
            return None
        return value

    def string_list(
        self, key: str, *, problem: Callable[[str], str | None] | None = None, text: bool = False
    ) -> list[str] | None:
        """A list of strings (default empty); unknown elements are skipped, each known one is checked
        (control characters as `string` does)."""
        value = self._value(key, [])
        if value is None:
            return None
        if not isinstance(value, list):
            self.add(key, f"{key} must be a list of strings")
            return None
        good: list[str] = []
        for index, item in enumerate(value):
            if is_unknown(item):
                continue
            if not isinstance(item, str):
                reason: str | None = "it must be a string"
            else:
                reason = (None if text else control_problem(item)) or (problem(item) if problem else None)
            if reason:
                self.add(key, f"{self.label(f'{key}[{index}]', item)} is not acceptable: {reason}")
            else:
                good.append(item)
        return good


def check_connection(checked: CheckFailures, key: str, resource: str) -> None:
    """Validate (strictly typed) and normalise a connection input in place; warn when TLS is off."""
    raw = checked.inputs.get(key)
    if raw is None:
        checked.add(key, f"{key} is required: the WinRM host and credentials of the Hyper-V host")
        return
    if contains_unknown(raw):
        return
    conn, problems = parse_connection(raw, key)
    for prop_, reason in problems:
        checked.add(prop_, reason)
    if conn is not None:
        checked.inputs[key] = connection_dict(conn)
        for warning in conn.warnings(key):
            pulumi.log.warn(f"{resource}: {warning}")


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """Keys whose new value differs from the old one. An unknown new value counts as changed:
    it will only be known during the update, so preview must assume the worst."""
    changed = []
    for key in keys:
        new = news.get(key)
        if contains_unknown(new) or new != olds.get(key):
            changed.append(key)
    return changed


def diff_result(
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    *,
    replace_keys: Iterable[str],
    update_keys: Iterable[str],
    extra_changes: Iterable[str] = (),
    extra_replaces: Iterable[str] = (),
) -> DiffResult:
    """A `DiffResult` with explicit replaces (the engine gets no detailed diff from dynamic
    providers, so `replaces` is the only way to ask for a replacement).

    `extra_changes`/`extra_replaces` name changes the caller detected itself (for example a
    computed renewal window, reported as the output that triggers it).
    """
    replaces = [*changed_keys(olds, news, replace_keys), *extra_replaces]
    updates = [*changed_keys(olds, news, update_keys), *extra_changes]
    return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=False)


def args_props(args: Any, output_keys: Iterable[str]) -> dict[str, Any]:
    """Resource props from an Args dataclass, with the output keys seeded None so they appear
    as outputs (keys that are also inputs keep the given value)."""
    props = {f.name: getattr(args, f.name) for f in fields(args)}
    return {**dict.fromkeys(output_keys), **props}


def secret_inputs(props: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """`props` with the inputs at `paths` (`"key"` or `"key.field"`) wrapped in `Output.secret`.

    `additional_secret_outputs` covers outputs only: an input passed as a plain string would be stored
    in clear in the state's inputs. Marking a field of an object input (a connection's password)
    rather than the whole object keeps the rest of it readable in `pulumi preview --diff`; the engine
    carries nested secretness over to the matching output field.
    """
    fields_by_key: dict[str, list[str]] = {}
    for path in paths:
        key, _, field = path.partition(".")
        fields_by_key.setdefault(key, []).append(field)
    marked = dict(props)
    for key, names in fields_by_key.items():
        value = marked.get(key)
        if value is None:
            continue
        if "" in names:
            marked[key] = pulumi.Output.secret(value)
        elif isinstance(value, Mapping):
            marked[key] = _secret_fields(value, names)
        else:  # an Output (or awaitable) of the whole object: mark the fields once it resolves
            marked[key] = pulumi.Output.from_input(value).apply(lambda v, n=names: _secret_fields(v, n))
    return marked


def _secret_fields(value: Any, names: Sequence[str]) -> Any:
    if not isinstance(value, Mapping):
        return value  # check() reports the wrong type; nothing to mark
    return {k: pulumi.Output.secret(v) if k in names and v is not None else v for k, v in value.items()}


def with_secret_outputs(opts: pulumi.ResourceOptions | None, keys: Sequence[str]) -> pulumi.ResourceOptions:
    """The caller's options plus `additional_secret_outputs` for the computed secrets."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=list(keys)))
