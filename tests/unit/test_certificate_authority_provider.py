"""CertificateAuthorityProvider driven with engine-shaped payloads (numbers as floats, olds = old
outputs for diff/update/read), without the gRPC server (tests/engine covers that path)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pulumi.output import Unknown

from hvreplica_provider import CertificateAuthorityProvider, clock, pki
from tests.support.engine import decode, encode

PROVIDER = CertificateAuthorityProvider()
Created = tuple[str, dict[str, Any]]
INPUTS = {"common_name": "Site A Replica CA", "organization": "Contoso", "country": "DE",
          "rsa_bits": 2048.0, "validity_days": 400.0, "early_renewal_days": 30.0}


def wire(props: dict[str, Any]) -> dict[str, Any]:
    """What the provider receives after a trip through the engine (protobuf Struct)."""
    return decode(encode(props))


def checked(news: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, Any]:
    result = PROVIDER.check(olds or {}, wire(news))
    assert result.failures == []
    return result.inputs


@pytest.fixture(scope="module")
def created() -> Created:
    result = PROVIDER.create(checked(INPUTS))
    return result.id, wire(result.outs)


def reasons(news: dict[str, Any]) -> dict[str, str]:
    return {f.property: f.reason for f in PROVIDER.check({}, wire(news)).failures}


def test_check_normalises_floats_and_fills_defaults() -> None:
    inputs = checked({"common_name": "CA", "rsa_bits": 3072.0})
    assert inputs == {"common_name": "CA", "rsa_bits": 3072, "validity_days": 3650, "early_renewal_days": 90}
    assert all(type(inputs[key]) is int for key in ("rsa_bits", "validity_days", "early_renewal_days"))
    assert checked({"common_name": "CA"})["rsa_bits"] == 4096


@pytest.mark.parametrize(
    ("change", "prop", "fragment"),
    [
        ({"common_name": None}, "common_name", "common_name is required"),
        ({"common_name": "  "}, "common_name", "non-empty string"),
        ({"common_name": "C" * 65}, "common_name", "limit is 64"),
        ({"organization": "O" * 65}, "organization", "limit is 64"),
        ({"country": "DEU"}, "country", "two-letter ISO 3166"),
        ({"country": "1"}, "country", "two-letter ISO 3166"),
        ({"rsa_bits": 1024.0}, "rsa_bits", "must be one of 2048, 3072, 4096, got 1024"),
        ({"rsa_bits": 2048.5}, "rsa_bits", "whole number"),
        ({"rsa_bits": "2048"}, "rsa_bits", "whole number"),
        ({"validity_days": 0.0}, "validity_days", "at least 1"),
        ({"validity_days": -5.0}, "validity_days", "at least 1"),
        ({"validity_days": 100000.0}, "validity_days", "at most 36500"),
        ({"early_renewal_days": 400.0}, "early_renewal_days", "must be less than validity_days (400)"),
        ({"early_renewal_days": -1.0}, "early_renewal_days", "at least 0"),
    ],
)
def test_check_rejections_name_property_and_fix(change: dict[str, Any], prop: str, fragment: str) -> None:
    found = reasons({**INPUTS, **change})
    assert list(found) == [prop]
    assert fragment in found[prop] and prop in found[prop]


def test_check_skips_unknowns_during_preview() -> None:
    result = PROVIDER.check({}, {**INPUTS, "common_name": Unknown(), "validity_days": Unknown()})
    assert result.failures == []
    assert isinstance(result.inputs["common_name"], Unknown)


def test_create_outputs(created: Created) -> None:
    id_, outs = created
    cert = pki.load_certificate(outs["cert_pem"])
    assert id_ == outs["thumbprint"] == pki.thumbprint(cert)
    assert outs["serial_number"] == pki.serial_hex(cert)
    assert pki.parse_iso_utc(outs["not_after"]) == cert.not_valid_after_utc
    assert pki.parse_iso_utc(outs["not_before"]) == cert.not_valid_before_utc
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == timedelta(days=400) + pki.CLOCK_SKEW_ALLOWANCE
    assert pki.key_matches_certificate(pki.load_private_key(outs["private_key_pem"]), cert)
    assert outs["ready_for_renewal"] is False
    assert outs["common_name"] == "Site A Replica CA" and outs["rsa_bits"] == 2048
    assert pki.load_private_key(outs["private_key_pem"]).key_size == 2048  # type: ignore[union-attr]


def test_second_up_with_same_inputs_is_no_change(created: Created) -> None:
    id_, outs = created
    old_inputs = checked(INPUTS)
    news = checked(INPUTS, olds=wire(old_inputs))
    diff = PROVIDER.diff(id_, outs, wire(news))
    assert diff.changes is False and diff.replaces == []


@pytest.mark.parametrize(
    "change",
    [{"common_name": "Other CA"}, {"organization": "Fabrikam"}, {"organizational_unit": "Ops"},
     {"country": "FR"}, {"state": "Bavaria"}, {"locality": "Munich"}, {"rsa_bits": 4096.0},
     {"validity_days": 500.0}],
)
def test_diff_replaces_on_key_and_subject_changes(created: Created, change: dict[str, Any]) -> None:
    id_, outs = created
    diff = PROVIDER.diff(id_, outs, wire(checked({**INPUTS, **change})))
    assert diff.changes is True and diff.replaces == list(change)


def test_diff_updates_early_renewal_in_place(created: Created) -> None:
    id_, outs = created
    diff = PROVIDER.diff(id_, outs, wire(checked({**INPUTS, "early_renewal_days": 60.0})))
    assert diff.changes is True and diff.replaces == []


def test_diff_treats_unknown_replace_input_as_replace(created: Created) -> None:
    id_, outs = created
    diff = PROVIDER.diff(id_, outs, {**checked(INPUTS), "common_name": Unknown()})
    assert diff.replaces == ["common_name"]


def test_update_returns_full_outputs_with_same_certificate(created: Created) -> None:
    id_, outs = created
    news = wire(checked({**INPUTS, "early_renewal_days": 60.0}))
    updated = PROVIDER.update(id_, outs, news).outs
    assert updated is not None
    for key in ("cert_pem", "private_key_pem", "thumbprint", "serial_number", "not_before", "not_after"):
        assert updated[key] == outs[key]
    assert updated["early_renewal_days"] == 60 and updated["ready_for_renewal"] is False
    assert "__provider" not in updated


def test_renewal_window_replaces_and_read_recomputes(
    created: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    id_, outs = created
    not_after = pki.parse_iso_utc(outs["not_after"])
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(not_after - timedelta(days=31)))
    assert PROVIDER.diff(id_, outs, wire(checked(INPUTS))).changes is False
    assert PROVIDER.read(id_, outs).outs["ready_for_renewal"] is False
    # A longer window (in-place input) that already covers now replaces at once.
    longer = PROVIDER.diff(id_, outs, wire(checked({**INPUTS, "early_renewal_days": 45.0})))
    assert longer.replaces == ["ready_for_renewal"]

    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(not_after - timedelta(days=29)))
    diff = PROVIDER.diff(id_, outs, wire(checked(INPUTS)))
    assert diff.changes is True and diff.replaces == ["ready_for_renewal"]
    read = PROVIDER.read(id_, {**outs, "__provider": "blob"})
    assert read.id == id_ and read.outs["ready_for_renewal"] is True
    assert {k: v for k, v in read.outs.items() if k != "ready_for_renewal"} == {
        k: v for k, v in outs.items() if k != "ready_for_renewal"}


def test_create_uses_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.FAKE_NOW_ENV, "2031-01-01T00:00:00Z")
    outs = PROVIDER.create(checked({"common_name": "Future CA", "rsa_bits": 2048.0, "validity_days": 10.0,
                                    "early_renewal_days": 1.0})).outs
    assert outs["not_after"] == "2031-01-11T00:00:00Z"
    assert outs["not_before"] == "2030-12-31T23:55:00Z"


def test_read_without_stored_outputs_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be imported"):
        PROVIDER.read("ABC", {"common_name": "CA"})


def test_delete_is_a_no_op(created: Created) -> None:
    id_, outs = created
    assert PROVIDER.delete(id_, outs) is None
    assert PROVIDER.delete(id_, outs) is None  # idempotent
