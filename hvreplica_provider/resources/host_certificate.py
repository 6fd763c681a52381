"""HostCertificate: a Hyper-V Replica host certificate signed by a CertificateAuthority, plus its PFX.

Lives only in Pulumi state. Key material is immutable, so the CA inputs, the names, the key size
and the validity replace it, as does reaching the renewal window at diff time.
`early_renewal_days`, `pfx_password`, `pfx_encryption` and `friendly_name` update in place: the
PFX is re-exported from the same key and certificate.

PFX password: when `pfx_password` is absent, `create` generates one (192 bits) and records
`pfx_password_generated = True` in the outputs; later updates keep that password for as long as
the input stays absent, and `diff` does not report it as a change. `check` never generates it, so
a second `pulumi up` with unchanged inputs shows no change.

Validity against the CA: `check` rejects a `validity_days` that would end after the CA's
`not_after` instead of clamping it silently. A clamped certificate would expire earlier than the
user asked for without anyone noticing; a failing check names both dates and the two fixes
(shorter validity, or renew the CA). The time-dependent CA checks (CA expired, outliving it) run
when a certificate is about to be issued: on create (`olds` empty) and when an input that replaces
the certificate changed. An existing certificate with unchanged inputs does not start failing
`check` merely because time passed; reaching its renewal window replaces it, and that replacement
runs the full check again.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pulumi
from cryptography import x509
from pulumi.dynamic import (
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from hvreplica_provider import clock, pki
from hvreplica_provider.inputs import PfxEncryption, RsaBits
from hvreplica_provider.resources.base import (
    CheckFailures,
    args_props,
    changed_keys,
    contains_unknown,
    diff_result,
    secret_inputs,
    user_properties,
    with_secret_outputs,
)
from hvreplica_provider.resources.certificate_authority import (
    certificate_outputs,
    check_validity,
    renewal_outputs,
    renewal_reached,
    stored_outputs,
)

DEFAULT_RSA_BITS = 4096
DEFAULT_VALIDITY_DAYS = 730
DEFAULT_EARLY_RENEWAL_DAYS = 30
DEFAULT_PFX_ENCRYPTION = "legacy"

CA_KEYS = ("ca_cert_pem", "ca_private_key_pem")
REPLACE_KEYS = (*CA_KEYS, "fqdn", "additional_dns_names", "rsa_bits", "validity_days")
UPDATE_KEYS = ("early_renewal_days", "pfx_encryption", "friendly_name")
PFX_KEYS = ("pfx_encryption", "friendly_name")
SECRET_INPUTS = ("ca_private_key_pem", "pfx_password")
SECRET_OUTPUTS = ("ca_private_key_pem", "private_key_pem", "pfx_base64", "pfx_password")
CERT_KEYS = (
    "cert_pem", "private_key_pem", "chain_pem", "thumbprint", "serial_number", "not_before", "not_after",
)
OUTPUT_KEYS = (*CERT_KEYS, "pfx_base64", "pfx_password", "pfx_password_generated", "ready_for_renewal")


class HostCertificateProvider(ResourceProvider):
    """Dynamic provider of `HostCertificate` (stateless, pickled by reference)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checked = CheckFailures(news, secret_keys=SECRET_INPUTS)
        fqdn = checked.string("fqdn", required=True, problem=_fqdn_problem)
        names = checked.string_list("additional_dns_names", problem=pki.dns_name_problem)
        if fqdn is not None and names and fqdn.lower() in (name.lower() for name in names):
            checked.add("additional_dns_names", f"additional_dns_names repeats the fqdn {fqdn!r}; remove it")
        checked.integer("rsa_bits", default=DEFAULT_RSA_BITS, allowed=pki.RSA_KEY_SIZES)
        validity = check_validity(checked, DEFAULT_VALIDITY_DAYS, DEFAULT_EARLY_RENEWAL_DAYS)
        checked.choice("pfx_encryption", pki.PFX_ENCRYPTIONS, default=DEFAULT_PFX_ENCRYPTION)
        checked.string("friendly_name")
        checked.string("pfx_password", problem=_password_problem, text=True)
        ca_cert = _check_ca(checked)
        issuing = not user_properties(olds) or bool(changed_keys(olds, checked.inputs, REPLACE_KEYS))
        if ca_cert is not None and validity is not None and issuing:
            _check_ca_timing(checked, ca_cert, validity, clock.now())
        return checked.result()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        due = ["ready_for_renewal"] if renewal_reached(olds, news) else []
        password = ["pfx_password"] if _password_changed(olds, news) else []
        return diff_result(
            olds, news, replace_keys=REPLACE_KEYS, update_keys=UPDATE_KEYS,
            extra_changes=password, extra_replaces=due,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = user_properties(props)
        now = clock.now()
        ca_cert = pki.load_certificate(inputs["ca_cert_pem"], "ca_cert_pem")
        validity = int(inputs["validity_days"])
        outlive = _outlive_problem(ca_cert, validity, now)
        if outlive:  # check() reports this too; this guards a create whose check ran earlier in time
            raise ValueError(outlive)
        issued = pki.issue_host_certificate(
            ca_cert,
            pki.load_private_key(inputs["ca_private_key_pem"], "ca_private_key_pem"),
            inputs["fqdn"],
            inputs.get("additional_dns_names") or [],
            int(inputs["rsa_bits"]),
            validity,
            now,
        )
        certificate = {
            **certificate_outputs(issued),
            "chain_pem": _full_chain(issued.cert_pem, inputs["ca_cert_pem"]),
        }
        outputs = renewal_outputs({**inputs, **certificate, **_pfx_outputs(inputs, certificate, None)}, now)
        return CreateResult(outputs["thumbprint"], outputs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outputs = stored_outputs(id_, props, "HostCertificate")
        return ReadResult(id_, renewal_outputs(outputs, clock.now()))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = user_properties(news)
        certificate = {key: olds[key] for key in CERT_KEYS}
        outputs = {**inputs, **certificate, **_pfx_outputs(inputs, certificate, olds)}
        return UpdateResult(renewal_outputs(outputs, clock.now()))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing exists outside Pulumi state, so there is nothing to remove."""


def _check_ca(checked: CheckFailures) -> x509.Certificate | None:
    """Parse the CA certificate and key and check they belong together; the CA cert or None."""
    cert_pem = checked.string("ca_cert_pem", required=True, text=True)
    key_pem = checked.string("ca_private_key_pem", required=True, text=True)
    cert = key = None
    if cert_pem is not None:
        try:
            cert = pki.load_certificate(cert_pem, "ca_cert_pem")
        except ValueError as exc:
            checked.add("ca_cert_pem", f"{exc}; pass the CertificateAuthority's cert_pem output")
        else:
            if not pki.is_ca(cert):
                checked.add("ca_cert_pem", "ca_cert_pem is not a CA certificate (BasicConstraints CA:TRUE is "
                            "missing); pass the CertificateAuthority's cert_pem, not a host certificate")
                cert = None
            elif not pki.may_sign_certificates(cert):
                checked.add("ca_cert_pem", "ca_cert_pem's KeyUsage does not allow keyCertSign; use a CA "
                            "certificate that may sign certificates")
                cert = None
    if key_pem is not None:
        try:
            key = pki.load_private_key(key_pem, "ca_private_key_pem")
        except ValueError as exc:
            checked.add("ca_private_key_pem", f"{exc}; pass the CertificateAuthority's private_key_pem")
    if cert is not None and key is not None and not pki.key_matches_certificate(key, cert):
        checked.add("ca_private_key_pem", "ca_private_key_pem does not match ca_cert_pem; pass the key and "
                    "the certificate of the same CertificateAuthority")
        return None
    return cert if key is not None else None


def _fqdn_problem(fqdn: str) -> str | None:
    """A DNS name that fits the subject CN (the profile puts the FQDN there; RFC 5280 caps a CN at 64
    characters, and certificate creation fails beyond)."""
    problem = pki.dns_name_problem(fqdn)
    if problem is None and len(fqdn) > pki.MAX_COMMON_NAME:
        return (
            f"it is {len(fqdn)} characters long, and a certificate's subject CN holds at most "
            f"{pki.MAX_COMMON_NAME}; use a shorter name for replication (for example a CNAME) and list the "
            "long one in additional_dns_names"
        )
    return problem


def _password_problem(password: str) -> str | None:
    if not password:
        return "it is empty; omit pfx_password to have one generated"
    return pki.pfx_password_problem(password)


def _check_ca_timing(checked: CheckFailures, ca_cert: x509.Certificate, validity: int, now: datetime) -> None:
    problem = pki.validity_problem(ca_cert, now)
    if problem:
        checked.add("ca_cert_pem", f"the CA certificate {problem}; renew the CertificateAuthority first")
    else:
        outlive = _outlive_problem(ca_cert, validity, now)
        if outlive:
            checked.add("validity_days", outlive)


def _outlive_problem(ca_cert: x509.Certificate, validity: int, now: datetime) -> str | None:
    if not pki.outlives(now, validity, ca_cert):
        return None
    ca_end = pki.iso_utc(ca_cert.not_valid_after_utc)
    wanted = pki.iso_utc(pki.validity_end(now, validity))
    remaining = (ca_cert.not_valid_after_utc - now).days
    return (
        f"validity_days ({validity}) would make the certificate valid until {wanted}, after its CA "
        f"expires ({ca_end}); set validity_days to at most {remaining} or renew the CertificateAuthority"
    )


def _password_changed(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """Whether the PFX password must change: a new or different user password, or the user
    removed theirs (a fresh one is generated). A kept generated password is no change."""
    new = news.get("pfx_password")
    if contains_unknown(new):
        return True
    generated = bool(olds.get("pfx_password_generated"))
    if new is None:
        return not generated
    return generated or new != olds.get("pfx_password")


def _pfx_outputs(
    inputs: dict[str, Any], certificate: dict[str, Any], olds: dict[str, Any] | None
) -> dict[str, Any]:
    """pfx_base64 / pfx_password / pfx_password_generated for these inputs.

    On update (`olds` given) the stored PFX is kept when nothing it depends on changed, because
    every export uses a fresh salt and would otherwise churn the state for no reason.
    """
    given = inputs.get("pfx_password")
    if given is not None:
        password, generated = given, False
    elif olds is not None and olds.get("pfx_password_generated"):
        password, generated = olds["pfx_password"], True
    else:
        password, generated = pki.generate_pfx_password(), True
    unchanged = (
        olds is not None
        and password == olds.get("pfx_password")
        and not changed_keys(olds, inputs, PFX_KEYS)
        and olds.get("pfx_base64")
    )
    if unchanged:
        pfx_base64 = olds["pfx_base64"]
    else:
        pfx = pki.export_pfx(
            certificate["cert_pem"],
            certificate["private_key_pem"],
            password,
            inputs.get("pfx_encryption") or DEFAULT_PFX_ENCRYPTION,
            inputs.get("friendly_name") or inputs["fqdn"],
        )
        pfx_base64 = base64.b64encode(pfx).decode("ascii")
    return {"pfx_base64": pfx_base64, "pfx_password": password, "pfx_password_generated": generated}


def _full_chain(cert_pem: str, ca_cert_pem: str) -> str:
    """The host certificate followed by its CA certificate (leaf first, as TLS servers send it)."""
    ca = pki.certificate_to_pem(pki.load_certificate(ca_cert_pem, "ca_cert_pem"))
    return cert_pem + ca


@dataclass
class HostCertificateArgs:
    """Inputs of `HostCertificate`: a Hyper-V Replica host certificate (Server and Client
    Authentication, CN and SAN = `fqdn`) signed by a CA, with a PFX to import on the host."""

    ca_cert_pem: pulumi.Input[str]
    """The signing CA's certificate (a CertificateAuthority's `cert_pem`)."""
    ca_private_key_pem: pulumi.Input[str]
    """The signing CA's private key (its `private_key_pem`). Secret."""
    fqdn: pulumi.Input[str]
    """The name partners use for the host; CN and first SAN. No IP, single label or wildcard."""
    additional_dns_names: pulumi.Input[list[pulumi.Input[str]]] | None = None
    """Further SAN DNS names, e.g. a Hyper-V Replica Broker's client access point."""
    rsa_bits: pulumi.Input[RsaBits] | None = None
    """RSA key size: 2048, 3072 or 4096 (default 4096)."""
    validity_days: pulumi.Input[int] | None = None
    """Lifetime in days (default 730); never past the CA's own expiry."""
    early_renewal_days: pulumi.Input[int] | None = None
    """`pulumi up` replaces the certificate once fewer days than this remain (default 30)."""
    pfx_password: pulumi.Input[str] | None = None
    """Password of the PFX. Secret; generated (192 bits) and kept when absent."""
    pfx_encryption: pulumi.Input[PfxEncryption] | None = None
    """`legacy` (default; Server 2012 R2/2016 import it) or `aes256` (Server 2019+)."""
    friendly_name: pulumi.Input[str] | None = None
    """Friendly name stored in the PFX (default `fqdn`)."""


class HostCertificate(Resource, module="hvreplica", name="HostCertificate"):
    """A host certificate with its key, chain and PFX. Keys, PFX and password are secret outputs."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    chain_pem: pulumi.Output[str]
    pfx_base64: pulumi.Output[str]
    pfx_password: pulumi.Output[str]
    pfx_password_generated: pulumi.Output[bool]
    thumbprint: pulumi.Output[str]
    serial_number: pulumi.Output[str]
    not_before: pulumi.Output[str]
    not_after: pulumi.Output[str]
    ready_for_renewal: pulumi.Output[bool]

    def __init__(
        self, resource_name: str, args: HostCertificateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            HostCertificateProvider(),
            resource_name,
            secret_inputs(args_props(args, OUTPUT_KEYS), SECRET_INPUTS),
            with_secret_outputs(opts, SECRET_OUTPUTS),
        )
