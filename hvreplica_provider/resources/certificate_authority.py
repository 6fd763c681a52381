"""CertificateAuthority: a private root CA kept in Pulumi state (nothing remote).

Replaces on any change of the subject, key size or validity, and when the renewal window is
reached at diff time. `early_renewal_days` updates in place: it only moves the window, and
replacing the CA for it would re-issue every host certificate below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pulumi
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
from hvreplica_provider.engine_values import whole_number
from hvreplica_provider.inputs import RsaBits
from hvreplica_provider.resources.base import (
    CheckFailures,
    args_props,
    diff_result,
    user_properties,
    with_secret_outputs,
)

DEFAULT_RSA_BITS = 4096
DEFAULT_VALIDITY_DAYS = 3650
DEFAULT_EARLY_RENEWAL_DAYS = 90
# Keeps not_after well inside x509 GeneralizedTime (year 9999) for any plausible issuing date.
_MAX_DAYS = 36500
# RFC 5280 upper bounds for the subject attributes we accept.
_SUBJECT_MAX = {
    "common_name": 64, "organization": 64, "organizational_unit": 64, "state": 128, "locality": 128,
}

SUBJECT_KEYS = ("common_name", "organization", "organizational_unit", "country", "state", "locality")
REPLACE_KEYS = (*SUBJECT_KEYS, "rsa_bits", "validity_days")
UPDATE_KEYS = ("early_renewal_days",)
SECRET_OUTPUTS = ("private_key_pem",)
COMPUTED_KEYS = ("cert_pem", "private_key_pem", "thumbprint", "serial_number", "not_before", "not_after")
OUTPUT_KEYS = (*COMPUTED_KEYS, "ready_for_renewal")


def check_validity(checked: CheckFailures, default_validity: int, default_early: int) -> int | None:
    """validity_days > 0 (and representable), early_renewal_days in [0, validity_days)."""
    validity = checked.integer("validity_days", default=default_validity, minimum=1, maximum=_MAX_DAYS)
    early = checked.integer("early_renewal_days", default=default_early, minimum=0)
    if validity is not None and early is not None and early >= validity:
        checked.add(
            "early_renewal_days",
            f"early_renewal_days ({early}) must be less than validity_days ({validity}), "
            "or the certificate would be due for renewal as soon as it is issued",
        )
    return validity


def renewal_outputs(outputs: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`outputs` with ready_for_renewal recomputed from not_after and early_renewal_days."""
    early = whole_number(outputs.get("early_renewal_days")) or 0
    due = pki.renewal_due(pki.parse_iso_utc(outputs["not_after"]), early, now)
    return {**outputs, "ready_for_renewal": due}


def renewal_reached(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """Diff-time renewal check: the new early_renewal_days (when known) against the stored expiry."""
    if "not_after" not in olds:
        return False
    early = whole_number(news.get("early_renewal_days"))
    if early is None:
        early = whole_number(olds.get("early_renewal_days")) or 0
    return pki.renewal_due(pki.parse_iso_utc(olds["not_after"]), early, clock.now())


def certificate_outputs(issued: pki.IssuedCertificate) -> dict[str, Any]:
    info = issued.info
    return {
        "cert_pem": issued.cert_pem,
        "private_key_pem": issued.private_key_pem,
        "thumbprint": info.thumbprint,
        "serial_number": info.serial_number,
        "not_before": pki.iso_utc(info.not_before),
        "not_after": pki.iso_utc(info.not_after),
    }


def stored_outputs(id_: str, props: dict[str, Any], what: str) -> dict[str, Any]:
    """The stored outputs of a state-only resource; refuse a read without them (import)."""
    outputs = user_properties(props)
    if "cert_pem" not in outputs or "not_after" not in outputs:
        raise ValueError(
            f"{what} {id_!r} has no stored certificate outputs; it exists only in Pulumi state "
            "and cannot be imported or read from anywhere else"
        )
    return outputs


class CertificateAuthorityProvider(ResourceProvider):
    """Dynamic provider of `CertificateAuthority` (stateless, pickled by reference)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checked = CheckFailures(news)
        checked.string("common_name", required=True, problem=_length_problem("common_name"))
        for key in ("organization", "organizational_unit", "state", "locality"):
            checked.string(key, problem=_length_problem(key))
        checked.string("country", problem=pki.country_problem)
        checked.integer("rsa_bits", default=DEFAULT_RSA_BITS, allowed=pki.RSA_KEY_SIZES)
        check_validity(checked, DEFAULT_VALIDITY_DAYS, DEFAULT_EARLY_RENEWAL_DAYS)
        return checked.result()

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        due = ["ready_for_renewal"] if renewal_reached(olds, news) else []
        return diff_result(olds, news, replace_keys=REPLACE_KEYS, update_keys=UPDATE_KEYS, extra_replaces=due)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = user_properties(props)
        subject = pki.Subject(**{key: inputs.get(key) for key in SUBJECT_KEYS})
        now = clock.now()
        issued = pki.create_ca(subject, int(inputs["rsa_bits"]), int(inputs["validity_days"]), now)
        outputs = renewal_outputs({**inputs, **certificate_outputs(issued)}, now)
        return CreateResult(outputs["thumbprint"], outputs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outputs = stored_outputs(id_, props, "CertificateAuthority")
        return ReadResult(id_, renewal_outputs(outputs, clock.now()))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        computed = {key: olds[key] for key in COMPUTED_KEYS}
        return UpdateResult(renewal_outputs({**user_properties(news), **computed}, clock.now()))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing exists outside Pulumi state, so there is nothing to remove."""


def _length_problem(key: str) -> Callable[[str], str | None]:
    limit = _SUBJECT_MAX[key]

    def problem(value: str) -> str | None:
        return f"it is {len(value)} characters long; the limit is {limit}" if len(value) > limit else None

    return problem


@dataclass
class CertificateAuthorityArgs:
    """Inputs of `CertificateAuthority`: a self-signed root CA for Hyper-V Replica host certificates.
    Every input but `early_renewal_days` replaces the CA (and so every certificate it signed)."""

    common_name: pulumi.Input[str]
    """Subject CN (at most 64 characters), e.g. `Contoso Hyper-V Replica CA`."""
    organization: pulumi.Input[str] | None = None
    """Subject O (at most 64 characters)."""
    organizational_unit: pulumi.Input[str] | None = None
    """Subject OU (at most 64 characters)."""
    country: pulumi.Input[str] | None = None
    """Subject C: a two-letter ISO 3166 code such as `PL`."""
    state: pulumi.Input[str] | None = None
    """Subject ST (at most 128 characters)."""
    locality: pulumi.Input[str] | None = None
    """Subject L (at most 128 characters)."""
    rsa_bits: pulumi.Input[RsaBits] | None = None
    """RSA key size: 2048, 3072 or 4096 (default 4096)."""
    validity_days: pulumi.Input[int] | None = None
    """Lifetime in days, 1..36500 (default 3650)."""
    early_renewal_days: pulumi.Input[int] | None = None
    """`pulumi up` replaces the CA once fewer days than this remain (default 90); changes in place."""


class CertificateAuthority(Resource, module="hvreplica", name="CertificateAuthority"):
    """A private root CA. `private_key_pem` is a secret output."""

    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    thumbprint: pulumi.Output[str]
    serial_number: pulumi.Output[str]
    not_before: pulumi.Output[str]
    not_after: pulumi.Output[str]
    ready_for_renewal: pulumi.Output[bool]

    def __init__(
        self, resource_name: str, args: CertificateAuthorityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            CertificateAuthorityProvider(),
            resource_name,
            args_props(args, OUTPUT_KEYS),
            with_secret_outputs(opts, SECRET_OUTPUTS),
        )
