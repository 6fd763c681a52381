"""HostCertificateProvider driven with engine-shaped payloads (numbers as floats, olds = old inputs
for check and old outputs for diff/update/read), without the gRPC server (tests/engine does that)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pulumi.output import Unknown

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider, clock, pki
from tests.support.engine import decode, encode

PROVIDER = HostCertificateProvider()
Created = tuple[str, dict[str, Any]]


def wire(props: dict[str, Any]) -> dict[str, Any]:
    """What the provider receives after a trip through the engine (protobuf Struct)."""
    return decode(encode(props))


def make_ca(name: str, validity_days: float = 3650.0) -> dict[str, Any]:
    provider = CertificateAuthorityProvider()
    inputs = provider.check({}, {"common_name": name, "rsa_bits": 2048.0, "validity_days": validity_days})
    return wire(provider.create(inputs.inputs).outs)


@pytest.fixture(scope="module")
def ca() -> dict[str, Any]:
    return make_ca("Site A Replica CA")


@pytest.fixture(scope="module")
def inputs(ca: dict[str, Any]) -> dict[str, Any]:
    return {"ca_cert_pem": ca["cert_pem"], "ca_private_key_pem": ca["private_key_pem"],
            "fqdn": "hv1.site-a.example", "additional_dns_names": ["broker.site-a.example"],
            "rsa_bits": 2048.0, "validity_days": 365.0, "early_renewal_days": 30.0}


def checked(news: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, Any]:
    result = PROVIDER.check(olds or {}, wire(news))
    assert result.failures == []
    return result.inputs


def reasons(news: dict[str, Any], olds: dict[str, Any] | None = None) -> dict[str, str]:
    return {f.property: f.reason for f in PROVIDER.check(olds or {}, wire(news)).failures}


@pytest.fixture(scope="module")
def created(inputs: dict[str, Any]) -> Created:
    result = PROVIDER.create(checked(inputs))
    return result.id, wire(result.outs)


def test_check_normalises_and_fills_defaults_without_generating_secrets(inputs: dict[str, Any]) -> None:
    minimal = {k: inputs[k] for k in ("ca_cert_pem", "ca_private_key_pem", "fqdn")}
    result = checked(minimal)
    assert result["rsa_bits"] == 4096 and type(result["rsa_bits"]) is int
    assert (result["validity_days"], result["early_renewal_days"]) == (730, 30)
    assert result["pfx_encryption"] == "legacy" and result["additional_dns_names"] == []
    assert "pfx_password" not in result  # generated only in create: check must stay deterministic
    assert checked(minimal) == result


# ---- every check rejection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "prop", "fragment"),
    [
        ({"fqdn": "192.0.2.7"}, "fqdn", "IP address"),
        ({"fqdn": "hv1"}, "fqdn", "single label"),
        ({"fqdn": "hv_1.site-a.example"}, "fqdn", "label 'hv_1' is invalid"),
        ({"fqdn": ("a" * 60 + ".") * 5 + "example"}, "fqdn", "at most 253"),
        ({"fqdn": "*.site-a.example"}, "fqdn", "wildcards are not allowed"),
        ({"fqdn": None}, "fqdn", "fqdn is required"),
        ({"additional_dns_names": ["ok.site-a.example", "10.1.1.1"]}, "additional_dns_names",
         "additional_dns_names[1] '10.1.1.1' is not acceptable: it is an IP address"),
        ({"additional_dns_names": ["HV1.site-a.example"]}, "additional_dns_names", "repeats the fqdn"),
        ({"additional_dns_names": "broker.site-a.example"}, "additional_dns_names", "must be a list"),
        ({"rsa_bits": 1024.0}, "rsa_bits", "must be one of 2048, 3072, 4096"),
        ({"rsa_bits": 5000.0}, "rsa_bits", "must be one of 2048, 3072, 4096"),
        ({"validity_days": 0.0}, "validity_days", "at least 1"),
        ({"validity_days": -1.0}, "validity_days", "at least 1"),
        ({"early_renewal_days": 365.0}, "early_renewal_days", "less than validity_days (365)"),
        ({"validity_days": 3700.0, "early_renewal_days": 30.0}, "validity_days",
         "after its CA expires"),
        ({"pfx_encryption": "rc2"}, "pfx_encryption", "must be one of 'legacy', 'aes256', got 'rc2'"),
        ({"pfx_password": ""}, "pfx_password", "omit pfx_password to have one generated"),
        ({"friendly_name": 5.0}, "friendly_name", "friendly_name must be a string"),
        ({"ca_cert_pem": "not a certificate"}, "ca_cert_pem", "ca_cert_pem is not a PEM certificate"),
        ({"ca_cert_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, "ca_cert_pem",
         "ca_cert_pem does not parse"),
        ({"ca_private_key_pem": "junk"}, "ca_private_key_pem", "ca_private_key_pem is not a PEM private key"),
    ],
)
def test_check_rejections(inputs: dict[str, Any], change: dict[str, Any], prop: str, fragment: str) -> None:
    found = reasons({**inputs, **change})
    assert list(found) == [prop], found
    assert fragment in found[prop]


def test_check_rejects_key_of_another_ca(inputs: dict[str, Any]) -> None:
    other = make_ca("Site B Replica CA")
    found = reasons({**inputs, "ca_private_key_pem": other["private_key_pem"]})
    assert list(found) == ["ca_private_key_pem"]
    assert "does not match ca_cert_pem" in found["ca_private_key_pem"]


def test_check_rejects_a_ca_that_is_not_a_ca(inputs: dict[str, Any], created: Created) -> None:
    _, host = created
    not_a_ca = {"ca_cert_pem": host["cert_pem"], "ca_private_key_pem": host["private_key_pem"]}
    found = reasons({**inputs, **not_a_ca})
    assert list(found) == ["ca_cert_pem"]
    assert "not a CA certificate (BasicConstraints CA:TRUE is missing)" in found["ca_cert_pem"]


def test_check_rejects_a_ca_whose_key_usage_forbids_signing(inputs: dict[str, Any]) -> None:
    key = pki.load_private_key(inputs["ca_private_key_pem"])
    original = pki.load_certificate(inputs["ca_cert_pem"])
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    crippled = (x509.CertificateBuilder().subject_name(original.subject).issuer_name(original.subject)
                .public_key(key.public_key()).serial_number(9)
                .not_valid_before(original.not_valid_before_utc).not_valid_after(original.not_valid_after_utc)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(usage, critical=True)
                .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    found = reasons({**inputs, "ca_cert_pem": pki.certificate_to_pem(crippled)})
    assert list(found) == ["ca_cert_pem"] and "does not allow keyCertSign" in found["ca_cert_pem"]


def test_check_rejects_expired_ca_for_new_certificates(
    inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_end = pki.load_certificate(inputs["ca_cert_pem"]).not_valid_after_utc
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(ca_end + timedelta(days=1)))
    found = reasons(inputs)
    assert list(found) == ["ca_cert_pem"] and "expired at" in found["ca_cert_pem"]
    assert "renew the CertificateAuthority" in found["ca_cert_pem"]


def test_outlive_check_names_dates_and_fix(inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ca_end = pki.load_certificate(inputs["ca_cert_pem"]).not_valid_after_utc
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(ca_end - timedelta(days=200)))
    reason = reasons(inputs)["validity_days"]
    assert pki.iso_utc(ca_end) in reason
    assert "set validity_days to at most 199" in reason or "set validity_days to at most 200" in reason
    assert reasons({**inputs, "validity_days": 199.0}) == {}


def test_outlive_is_not_rechecked_for_an_unchanged_existing_certificate(
    inputs: dict[str, Any], created: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time passing must not make a no-change `pulumi up` fail; issuing (olds empty) still checks."""
    old_inputs = wire(checked(inputs))
    ca_end = pki.load_certificate(inputs["ca_cert_pem"]).not_valid_after_utc
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(ca_end - timedelta(days=100)))
    assert reasons(inputs, olds=old_inputs) == {}
    assert "validity_days" in reasons(inputs)  # create / replacement
    assert "validity_days" in reasons({**inputs, "fqdn": "hv2.site-a.example"}, olds=old_inputs)


def test_check_skips_unknowns_during_preview(inputs: dict[str, Any]) -> None:
    result = PROVIDER.check({}, {**inputs, "ca_cert_pem": Unknown(), "ca_private_key_pem": Unknown(),
                                 "additional_dns_names": [Unknown()], "pfx_password": Unknown()})
    assert result.failures == []


# ---- create / read / delete --------------------------------------------------------------------


def test_create_outputs(created: Created, ca: dict[str, Any]) -> None:
    id_, outs = created
    cert = pki.load_certificate(outs["cert_pem"])
    assert id_ == outs["thumbprint"] == pki.thumbprint(cert)
    assert pki.issued_by(cert, pki.load_certificate(ca["cert_pem"]))
    assert pki.dns_names(cert) == ["hv1.site-a.example", "broker.site-a.example"]
    assert outs["chain_pem"] == outs["cert_pem"] + ca["cert_pem"]
    assert outs["serial_number"] == pki.serial_hex(cert)
    assert pki.parse_iso_utc(outs["not_after"]) == cert.not_valid_after_utc
    assert outs["ready_for_renewal"] is False
    assert outs["pfx_password_generated"] is True and len(outs["pfx_password"]) >= 32
    opened = pki.load_pfx(base64.b64decode(outs["pfx_base64"]), outs["pfx_password"])
    assert pki.thumbprint(opened.certificate) == id_
    assert opened.friendly_name == "hv1.site-a.example"  # defaults to the fqdn
    assert opened.additional_certificates == []  # the CA goes into Root explicitly, not via the PFX
    assert opened.private_key is not None
    assert pki.key_matches_certificate(pki.load_private_key(outs["private_key_pem"]), cert)


def test_create_with_user_password_and_friendly_name(inputs: dict[str, Any]) -> None:
    outs = PROVIDER.create(checked({**inputs, "pfx_password": "Correct-Horse-9", "friendly_name": "Replica",
                                    "pfx_encryption": "aes256"})).outs
    assert outs["pfx_password"] == "Correct-Horse-9" and outs["pfx_password_generated"] is False
    opened = pki.load_pfx(base64.b64decode(outs["pfx_base64"]), "Correct-Horse-9")
    assert opened.friendly_name == "Replica"


def test_generated_passwords_differ_per_certificate(inputs: dict[str, Any], created: Created) -> None:
    again = PROVIDER.create(checked(inputs)).outs
    assert again["pfx_password"] != created[1]["pfx_password"]
    assert again["thumbprint"] != created[1]["thumbprint"]


def test_read_recomputes_renewal_and_keeps_outputs(created: Created, monkeypatch: pytest.MonkeyPatch) -> None:
    id_, outs = created
    read = PROVIDER.read(id_, {**outs, "__provider": "blob"})
    assert read.id == id_ and read.outs == outs
    not_after = pki.parse_iso_utc(outs["not_after"])
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(not_after - timedelta(days=10)))
    assert PROVIDER.read(id_, outs).outs == {**outs, "ready_for_renewal": True}


def test_read_without_stored_outputs_is_refused() -> None:
    with pytest.raises(ValueError, match="HostCertificate 'X' has no stored certificate outputs"):
        PROVIDER.read("X", {"fqdn": "hv1.site-a.example"})


def test_delete_is_a_no_op(created: Created) -> None:
    assert PROVIDER.delete(*created) is None


# ---- diff ----------------------------------------------------------------------------------------


def test_second_up_with_unchanged_inputs_is_no_change(inputs: dict[str, Any], created: Created) -> None:
    id_, outs = created
    news = checked(inputs, olds=wire(checked(inputs)))
    diff = PROVIDER.diff(id_, outs, wire(news))
    assert diff.changes is False and diff.replaces == []


@pytest.mark.parametrize(
    "change",
    [{"fqdn": "hv2.site-a.example"}, {"additional_dns_names": []}, {"rsa_bits": 3072.0},
     {"validity_days": 300.0}],
)
def test_diff_replaces_on_key_material_inputs(inputs: dict[str, Any], created: Created, change: dict) -> None:
    id_, outs = created
    diff = PROVIDER.diff(id_, outs, wire(checked({**inputs, **change})))
    assert diff.changes is True and diff.replaces == list(change)


def test_diff_replaces_when_the_ca_changes(inputs: dict[str, Any], created: Created) -> None:
    id_, outs = created
    other = make_ca("Site A Replica CA v2")
    new_ca = {"ca_cert_pem": other["cert_pem"], "ca_private_key_pem": other["private_key_pem"]}
    news = wire(checked({**inputs, **new_ca}))
    assert PROVIDER.diff(id_, outs, news).replaces == ["ca_cert_pem", "ca_private_key_pem"]
    preview = {**news, "ca_cert_pem": Unknown(), "ca_private_key_pem": Unknown()}
    assert PROVIDER.diff(id_, outs, preview).replaces == ["ca_cert_pem", "ca_private_key_pem"]


@pytest.mark.parametrize(
    "change",
    [{"early_renewal_days": 10.0}, {"pfx_encryption": "aes256"}, {"friendly_name": "HV1"},
     {"pfx_password": "user-chosen-1"}],
)
def test_diff_updates_in_place(inputs: dict[str, Any], created: Created, change: dict) -> None:
    id_, outs = created
    diff = PROVIDER.diff(id_, outs, wire(checked({**inputs, **change})))
    assert diff.changes is True and diff.replaces == []


def test_diff_password_transitions(inputs: dict[str, Any], created: Created) -> None:
    id_, generated = created
    user_outs = wire({**generated, "pfx_password": "user-1", "pfx_password_generated": False})
    same_user = wire(checked({**inputs, "pfx_password": "user-1"}))
    assert PROVIDER.diff(id_, user_outs, same_user).changes is False
    assert PROVIDER.diff(id_, user_outs, wire(checked({**inputs, "pfx_password": "user-2"}))).changes is True
    assert PROVIDER.diff(id_, user_outs, wire(checked(inputs))).changes is True  # removed: regenerate
    unknown = {**wire(checked(inputs)), "pfx_password": Unknown()}
    assert PROVIDER.diff(id_, generated, unknown).changes is True


def test_renewal_window_replaces(
    inputs: dict[str, Any], created: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    id_, outs = created
    not_after = pki.parse_iso_utc(outs["not_after"])
    news = wire(checked(inputs))
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(not_after - timedelta(days=30, minutes=1)))
    assert PROVIDER.diff(id_, outs, news).changes is False
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(not_after - timedelta(days=29)))
    diff = PROVIDER.diff(id_, outs, news)
    assert diff.changes is True and diff.replaces == ["ready_for_renewal"]


# ---- update --------------------------------------------------------------------------------------


def test_update_reexports_pfx_with_same_key_and_certificate(inputs: dict[str, Any], created: Created) -> None:
    id_, outs = created
    news = wire(checked({**inputs, "pfx_encryption": "aes256", "friendly_name": "HV1 replica"}))
    updated = wire(PROVIDER.update(id_, outs, news).outs)
    for key in ("cert_pem", "private_key_pem", "chain_pem", "thumbprint", "serial_number", "not_after"):
        assert updated[key] == outs[key]
    assert updated["pfx_password"] == outs["pfx_password"] and updated["pfx_password_generated"] is True
    assert updated["pfx_base64"] != outs["pfx_base64"]
    opened = pki.load_pfx(base64.b64decode(updated["pfx_base64"]), outs["pfx_password"])
    assert pki.thumbprint(opened.certificate) == id_ and opened.friendly_name == "HV1 replica"
    assert opened.private_key is not None
    assert pki.key_matches_certificate(opened.private_key, pki.load_certificate(outs["cert_pem"]))
    assert updated["pfx_encryption"] == "aes256" and "__provider" not in updated
    # The next up with the same inputs is a no-change: the generated password is remembered.
    assert PROVIDER.diff(id_, updated, news).changes is False


def test_update_of_renewal_days_keeps_the_pfx(inputs: dict[str, Any], created: Created) -> None:
    id_, outs = created
    updated = PROVIDER.update(id_, outs, wire(checked({**inputs, "early_renewal_days": 10.0}))).outs
    assert updated["pfx_base64"] == outs["pfx_base64"] and updated["early_renewal_days"] == 10
    assert updated["ready_for_renewal"] is False


def test_update_password_changes(inputs: dict[str, Any], created: Created) -> None:
    id_, outs = created
    user = wire(PROVIDER.update(id_, outs, wire(checked({**inputs, "pfx_password": "user-chosen-1"}))).outs)
    assert user["pfx_password"] == "user-chosen-1" and user["pfx_password_generated"] is False
    assert pki.load_pfx(base64.b64decode(user["pfx_base64"]), "user-chosen-1").friendly_name
    regenerated = PROVIDER.update(id_, user, wire(checked(inputs))).outs
    assert regenerated["pfx_password_generated"] is True
    assert regenerated["pfx_password"] not in ("user-chosen-1", outs["pfx_password"])
    pki.load_pfx(base64.b64decode(regenerated["pfx_base64"]), regenerated["pfx_password"])


# ---- secrets -------------------------------------------------------------------------------------


def test_no_secret_in_check_failures_or_errors(inputs: dict[str, Any], ca: dict[str, Any]) -> None:
    secret_password = "Sup3r-Secret-Pfx-Pw"
    truncated_key = ca["private_key_pem"][:400] + "\n-----END PRIVATE KEY-----\n"
    found = reasons({**inputs, "ca_private_key_pem": truncated_key, "pfx_password": 12345.0,
                     "fqdn": "bad name.example"})
    texts = " ".join(found.values())
    assert set(found) == {"ca_private_key_pem", "pfx_password", "fqdn"}
    key_body = "".join(ca["private_key_pem"].splitlines()[1:-1])
    for line in ca["private_key_pem"].splitlines()[1:-1]:
        assert line not in texts
    assert "12345" not in texts
    # A wrong PFX password and a broken key raise errors that do not contain them either.
    with pytest.raises(ValueError) as wrong_password:
        pki.load_pfx(base64.b64decode(PROVIDER.create(checked(inputs)).outs["pfx_base64"]), secret_password)
    with pytest.raises(ValueError) as broken_key:
        PROVIDER.create({**checked(inputs), "ca_private_key_pem": truncated_key})
    for error in (wrong_password.value, broken_key.value):
        assert secret_password not in str(error) and key_body[20:80] not in str(error)
        assert error.__suppress_context__  # raised `from None`: no chained library text either


def test_create_guards_outliving_even_without_check(
    inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    props = checked(inputs)
    ca_end = pki.load_certificate(inputs["ca_cert_pem"]).not_valid_after_utc
    monkeypatch.setenv(clock.FAKE_NOW_ENV, pki.iso_utc(ca_end - timedelta(days=10)))
    with pytest.raises(ValueError, match="after its CA expires"):
        PROVIDER.create(props)
