"""hvreplica_provider.resources.base: the engine-shape helpers every resource provider uses."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from hvreplica_provider import engine_values
from hvreplica_provider.resources import base


def test_whole_number() -> None:
    assert engine_values.whole_number(2048.0) == 2048 and type(engine_values.whole_number(2048.0)) is int
    assert engine_values.whole_number(7) == 7
    for bad in (2048.5, "2048", True, None, float("nan")):
        assert engine_values.whole_number(bad) is None


def test_normalise_ints_at_any_depth() -> None:
    shape = {"port": int, "nested": {"limits": [int]}, "entries": [{"weight": int}]}
    value = {"port": 5986.0, "name": "x", "ratio": 0.5, "nested": {"limits": [1.0, 2.0, 2.5]},
             "entries": [{"weight": 3.0, "label": "a"}, {"weight": "heavy"}]}
    result = engine_values.normalise_ints(value, shape)
    assert result == {"port": 5986, "name": "x", "ratio": 0.5, "nested": {"limits": [1, 2, 2.5]},
                      "entries": [{"weight": 3, "label": "a"}, {"weight": "heavy"}]}
    assert type(result["port"]) is int and type(result["entries"][0]["weight"]) is int
    assert value["port"] == 5986.0 and type(value["port"]) is float  # input left alone


def test_unknown_detection() -> None:
    assert base.is_unknown(Unknown()) and base.is_unknown(UNKNOWN)
    assert not base.is_unknown("x") and not base.is_unknown(None)
    assert base.contains_unknown({"a": [1, {"b": Unknown()}]})
    assert not base.contains_unknown({"a": [1, {"b": 2}]})


def test_check_failures_validators_fill_defaults_and_report() -> None:
    checked = base.CheckFailures({"count": 3.0, "mode": "fast", "names": ["a", 1], "secret": 42.0},
                                 secret_keys=["secret"])
    assert checked.integer("count", minimum=1) == 3
    assert checked.integer("absent", default=10) == 10
    assert checked.integer("needed", required=True) is None
    assert checked.integer("count", maximum=2) is None
    assert checked.choice("mode", ["slow", "steady"]) is None
    assert checked.string("title", required=True) is None
    assert checked.string_list("names") == ["a"]
    assert checked.integer("secret", allowed=[1, 2]) is None
    result = checked.result()
    assert result.inputs["count"] == 3 and result.inputs["absent"] == 10
    reasons = [(f.property, f.reason) for f in result.failures]
    assert reasons == [
        ("needed", "needed is required"),
        ("count", "count must be at most 2, got 3"),
        ("mode", "mode must be one of 'slow', 'steady', got 'fast'"),
        ("title", "title is required"),
        ("names", "names[1] 1 is not acceptable: it must be a string"),
        ("secret", "secret must be one of 1, 2"),  # the value of a secret is never shown
    ]


def test_check_failures_skip_unknowns() -> None:
    checked = base.CheckFailures({"count": Unknown(), "names": [Unknown(), "ok"], "mode": UNKNOWN})
    assert checked.integer("count", required=True) is None
    assert checked.string_list("names") == ["ok"]
    assert checked.choice("mode", ["a"]) is None
    assert checked.result().failures == []


def test_diff_result_explicit_replaces() -> None:
    olds = {"a": 1.0, "b": "x", "c": [1.0], "d": "keep", "__provider": "old"}
    news = {"a": 1, "b": "y", "c": [1], "d": Unknown(), "__provider": "new"}
    diff = base.diff_result(olds, news, replace_keys=["a", "b"], update_keys=["c", "d"])
    assert diff.changes is True and diff.replaces == ["b"]
    keys = {"replace_keys": ["a", "b"], "update_keys": ["c", "d"]}
    same = base.diff_result(olds, {**news, "b": "x", "d": "keep"}, **keys)
    assert same.changes is False and same.replaces == []
    extra = base.diff_result(olds, olds, **keys, extra_replaces=["ready_for_renewal"])
    assert extra.changes is True and extra.replaces == ["ready_for_renewal"]


def test_args_props_and_secret_options() -> None:
    @dataclass
    class Args:
        name: str
        size: int | None = None

    props = base.args_props(Args("n"), ["out", "size"])
    assert props == {"out": None, "size": None, "name": "n"}
    assert base.user_properties({"__provider": "blob", "x": 1}) == {"x": 1}
    opts = base.with_secret_outputs(None, ["private_key_pem"])
    assert isinstance(opts, pulumi.ResourceOptions) and opts.additional_secret_outputs == ["private_key_pem"]
