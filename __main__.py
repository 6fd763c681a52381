"""Root (demo) program: the certificate set of the cross-domain Hyper-V Replica scenario.

From the stack config (see Pulumi.dev.yaml and README.md, "Stack configuration") it creates one
CertificateAuthority per site, or one shared CA, and a HostCertificate per host, and exports
thumbprints and expiry dates. Keys, PFX blobs and passwords stay in (encrypted) state and are never
exported. The provider classes live in the installed `hvreplica_provider` package, never here, so
they are pickled by reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi

from hvreplica_provider import (
    CertificateAuthority,
    CertificateAuthorityArgs,
    HostCertificate,
    HostCertificateArgs,
)

SHARED_CA = "shared"
_SITE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_CA_KEYS = ("common_name", "organization", "organizational_unit", "country", "state", "locality")
_PKI_KEYS = (
    "rsa_bits",
    "ca_validity_days",
    "ca_early_renewal_days",
    "host_validity_days",
    "host_early_renewal_days",
    "pfx_encryption",
    "shared_ca",
)


class ConfigError(ValueError):
    """The stack config is unusable; the message names the key and what to change."""


@dataclass(frozen=True)
class CaSettings:
    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None


@dataclass(frozen=True)
class HostSettings:
    fqdn: str
    additional_dns_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SiteSettings:
    name: str
    domain: str
    ca: CaSettings | None
    hosts: tuple[HostSettings, ...]


@dataclass(frozen=True)
class PkiSettings:
    """Stack-wide certificate settings; None leaves the resource's own default in force."""

    rsa_bits: int | None = None
    ca_validity_days: int | None = None
    ca_early_renewal_days: int | None = None
    host_validity_days: int | None = None
    host_early_renewal_days: int | None = None
    pfx_encryption: str | None = None
    shared_ca: CaSettings | None = None


def _mapping(
    value: Any, where: str, known: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object with keys {', '.join(known)}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    missing = [key for key in required if value.get(key) in (None, "")]
    if missing:
        raise ConfigError(f"{where} needs {', '.join(missing)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list")
    return value


def _ca(value: Any, where: str) -> CaSettings:
    return CaSettings(**_mapping(value, where, _CA_KEYS, ("common_name",)))


def _host(value: Any, where: str, domain: str) -> HostSettings:
    host = _mapping(value, where, ("fqdn", "additional_dns_names"), ("fqdn",))
    fqdn = str(host["fqdn"])
    if not fqdn.lower().endswith("." + domain.lower()):
        raise ConfigError(
            f"{where}.fqdn {fqdn!r} is not in the site's domain {domain!r}; use <name>.{domain}"
        )
    names = host.get("additional_dns_names") or []
    if not isinstance(names, list):
        raise ConfigError(f"{where}.additional_dns_names must be a list of DNS names")
    return HostSettings(fqdn, tuple(names))


def _site(value: Any, where: str, shared_ca: bool) -> SiteSettings:
    site = _mapping(value, where, ("name", "domain", "ca", "hosts"), ("name", "domain"))
    name = str(site["name"])
    if not _SITE_NAME.match(name) or name == SHARED_CA:
        raise ConfigError(
            f"{where}.name {name!r} must be lower-case letters, digits and dashes (it names resources), "
            f"and not {SHARED_CA!r}"
        )
    if shared_ca and site.get("ca") is not None:
        raise ConfigError(
            f"{where}.ca is set, but hvreplica:pki.shared_ca signs every host: remove one of the two"
        )
    if not shared_ca and site.get("ca") is None:
        raise ConfigError(f"{where}.ca is missing: give the site a CA, or set hvreplica:pki.shared_ca")
    domain = str(site["domain"])
    hosts = tuple(
        _host(host, f"{where}.hosts[{i}]", domain)
        for i, host in enumerate(_list(site.get("hosts"), f"{where}.hosts"))
    )
    return SiteSettings(name, domain, None if shared_ca else _ca(site["ca"], f"{where}.ca"), hosts)


def load_settings(config: pulumi.Config) -> tuple[PkiSettings, tuple[SiteSettings, ...]]:
    """Parse and cross-check `hvreplica:pki` and `hvreplica:sites`, before any resource exists."""
    pki = dict(_mapping(config.get_object("pki") or {}, "hvreplica:pki", _PKI_KEYS))
    if pki.get("shared_ca") is not None:
        pki["shared_ca"] = _ca(pki["shared_ca"], "hvreplica:pki.shared_ca")
    settings = PkiSettings(**pki)
    sites = tuple(
        _site(site, f"hvreplica:sites[{i}]", settings.shared_ca is not None)
        for i, site in enumerate(_list(config.require_object("sites"), "hvreplica:sites"))
    )
    for label, values in (
        ("site name", [site.name for site in sites]),
        ("host fqdn", [host.fqdn.lower() for site in sites for host in site.hosts]),
    ):
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ConfigError(
                f"hvreplica:sites repeats the {label} {', '.join(duplicates)}; each must be unique"
            )
    return settings, sites


def _certificate_authority(key: str, ca: CaSettings, pki: PkiSettings) -> CertificateAuthority:
    return CertificateAuthority(
        f"ca-{key}",
        CertificateAuthorityArgs(
            **vars(ca),
            rsa_bits=pki.rsa_bits,
            validity_days=pki.ca_validity_days,
            early_renewal_days=pki.ca_early_renewal_days,
        ),
    )


def _host_certificate(host: HostSettings, ca: CertificateAuthority, pki: PkiSettings) -> HostCertificate:
    return HostCertificate(
        f"cert-{host.fqdn.lower()}",
        HostCertificateArgs(
            ca_cert_pem=ca.cert_pem,
            ca_private_key_pem=ca.private_key_pem,
            fqdn=host.fqdn,
            additional_dns_names=list(host.additional_dns_names) or None,
            rsa_bits=pki.rsa_bits,
            validity_days=pki.host_validity_days,
            early_renewal_days=pki.host_early_renewal_days,
            pfx_encryption=pki.pfx_encryption,
        ),
    )


def _summary(cert: CertificateAuthority | HostCertificate, **extra: str) -> pulumi.Output[dict[str, Any]]:
    """Thumbprint and expiry (plus plain labels): the public facts an operator checks on a host."""
    return pulumi.Output.all(thumbprint=cert.thumbprint, not_after=cert.not_after).apply(
        lambda facts: {**facts, **extra}
    )


def main() -> None:
    pki, sites = load_settings(pulumi.Config())
    if pki.shared_ca is not None:
        shared = _certificate_authority(SHARED_CA, pki.shared_ca, pki)
        authorities = {SHARED_CA: shared}
    else:
        authorities = {
            site.name: _certificate_authority(site.name, site.ca, pki) for site in sites if site.ca
        }
    hosts: dict[str, pulumi.Output[dict[str, Any]]] = {}
    for site in sites:
        ca_key = SHARED_CA if pki.shared_ca is not None else site.name
        for host in site.hosts:
            cert = _host_certificate(host, authorities[ca_key], pki)
            hosts[host.fqdn.lower()] = _summary(cert, ca=ca_key, site=site.name)
    pulumi.export("certificate_authorities", {key: _summary(ca) for key, ca in authorities.items()})
    pulumi.export("host_certificates", hosts)


main()
