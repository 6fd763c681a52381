"""A whole cross-domain Hyper-V Replica topology from stack configuration.

`topology_from_config()` is what the repository's root program runs, for any project that wants the
same schema (README.md, "Stack configuration"): sites in different AD domains, each with a CA (or one
shared CA) and hosts; flows of VMs between the hosts; WinRM connections, or an hvsim lab.

The keys live in ONE config namespace, `hvreplica` by default whatever the project is called (the
Pulumi convention for a library's settings: `hvreplica:sites`, `hvreplica:pki`, ...). Pass
`pulumi.Config("<namespace>")` to read them from another one, e.g. your project's own. Every
top-level key of that namespace must be one of `CONFIG_KEYS`, or be named in `other_keys` when your
program reads it itself: a misspelt key fails instead of being silently ignored (a typo in
`replication` would otherwise drop every VM's replication).

Everything that can be wrong in the config fails with a `ConfigError` naming the key and the fix,
before any resource is declared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pulumi

from hvreplica_provider.pki import Subject
from hvreplica_provider.resources.certificate_authority import (
    CertificateAuthority,
    CertificateAuthorityArgs,
)
from hvreplica_provider.topology import (
    RELATIONSHIP_SETTINGS,
    CertificateOptions,
    EmulatedHost,
    ReplicationFlow,
    ReplicationOptions,
    ReplicaTopology,
    TopologyHost,
    emulated_hosts,
    validate,
)

NAMESPACE = "hvreplica"
CONFIG_KEYS = ("pki", "sites", "replication", "hvsim", "winrm_passwords")
SHARED_CA = "shared"
_SITE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
_CA_KEYS = tuple(f.name for f in fields(Subject))
_HOST_KEYS = ("fqdn", "additional_dns_names", "address", "connection", "storage_location")
_PKI_KEYS = (
    "rsa_bits",
    "ca_validity_days",
    "ca_early_renewal_days",
    "host_validity_days",
    "host_early_renewal_days",
    "pfx_encryption",
    "shared_ca",
)
_REPLICATION_KEYS = ("flows", "settings", "disable_revocation_check", "certificate_port")


class ConfigError(ValueError):
    """The stack config is unusable; the message names the key and what to change."""


@dataclass(frozen=True)
class HostSettings:
    """One host of a site. Without `connection`/`address` they come from the hvsim lab."""

    fqdn: str
    additional_dns_names: tuple[str, ...] = ()
    address: str | None = None
    connection: dict[str, Any] | None = None
    storage_location: str | None = None


@dataclass(frozen=True)
class SiteSettings:
    """One site (AD domain): its CA (None when the stack's shared CA signs it) and its hosts."""

    name: str
    domain: str
    ca: Subject | None
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
    shared_ca: Subject | None = None


@dataclass(frozen=True)
class HvsimSettings:
    """The local emulator lab a dev stack targets."""

    config: str
    state_dir: str = ".hvsim"


@dataclass(frozen=True)
class ReplicationSettings:
    flows: tuple[ReplicationFlow, ...] = ()
    options: ReplicationOptions = field(default_factory=ReplicationOptions)


@dataclass(frozen=True)
class StackSettings:
    """The whole parsed and cross-checked stack config of one namespace."""

    namespace: str
    pki: PkiSettings
    sites: tuple[SiteSettings, ...]
    replication: ReplicationSettings
    hvsim: HvsimSettings | None


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


def _ca(value: Any, where: str) -> Subject:
    return Subject(**_mapping(value, where, _CA_KEYS, ("common_name",)))


def _host(value: Any, where: str, domain: str) -> HostSettings:
    host = _mapping(value, where, _HOST_KEYS, ("fqdn",))
    fqdn = str(host["fqdn"])
    if not fqdn.lower().endswith("." + domain.lower()):
        raise ConfigError(
            f"{where}.fqdn {fqdn!r} is not in the site's domain {domain!r}; use <name>.{domain}"
        )
    names = host.get("additional_dns_names") or []
    if not isinstance(names, list):
        raise ConfigError(f"{where}.additional_dns_names must be a list of DNS names")
    connection = host.get("connection")
    if connection is not None and not isinstance(connection, dict):
        raise ConfigError(f"{where}.connection must be an object (host, port, auth, username, ...)")
    return HostSettings(fqdn, tuple(names), host.get("address"), connection, host.get("storage_location"))


def _site(value: Any, where: str, ns: str, shared_ca: bool) -> SiteSettings:
    site = _mapping(value, where, ("name", "domain", "ca", "hosts"), ("name", "domain"))
    name = str(site["name"])
    if not _SITE_NAME.match(name) or name == SHARED_CA:
        raise ConfigError(
            f"{where}.name {name!r} must be lower-case letters, digits and dashes (it names resources), "
            f"and not {SHARED_CA!r}"
        )
    if shared_ca and site.get("ca") is not None:
        raise ConfigError(
            f"{where}.ca is set, but {ns}:pki.shared_ca signs every host: remove one of the two"
        )
    if not shared_ca and site.get("ca") is None:
        raise ConfigError(f"{where}.ca is missing: give the site a CA, or set {ns}:pki.shared_ca")
    domain = str(site["domain"])
    hosts = tuple(
        _host(host, f"{where}.hosts[{i}]", domain)
        for i, host in enumerate(_list(site.get("hosts"), f"{where}.hosts"))
    )
    return SiteSettings(name, domain, None if shared_ca else _ca(site["ca"], f"{where}.ca"), hosts)


def _present_keys(ns: str) -> set[str]:
    """Top-level keys of namespace `ns` that the stack sets: the program's config as the runtime holds it
    (the language host sends the stack config as PULUMI_CONFIG; tests and the automation API set it)."""
    present = set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.get_config_env())
    prefix = f"{ns}:"
    return {key.removeprefix(prefix) for key in present if key.startswith(prefix)}


def require_known_keys(config: pulumi.Config, known: Iterable[str]) -> None:
    """Refuse every top-level key of `config`'s namespace that is not in `known`, naming the allowed
    ones: a misspelt key must fail, not be ignored. The examples call it with their own keys."""
    ns, allowed = config.name, tuple(known)
    unknown = sorted(_present_keys(ns) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(f'{ns}:{key}' for key in unknown)}; the keys of namespace "
            f"{ns!r} are {', '.join(allowed)}: fix the spelling, or remove the key"
        )


def _replication(raw: Any, ns: str, hosts: set[str]) -> ReplicationSettings:
    if not raw:
        return ReplicationSettings()
    where = f"{ns}:replication"
    replication = _mapping(raw, where, _REPLICATION_KEYS)
    flows = []
    for i, flow in enumerate(replication.get("flows") or []):
        at = f"{where}.flows[{i}]"
        flow = _mapping(flow, at, ("primary", "replica", "vms", "extend_to"), ("primary", "replica"))
        for role in ("primary", "replica", "extend_to"):
            if role in flow and str(flow[role]).lower() not in hosts:
                raise ConfigError(f"{at}.{role} {flow[role]!r} is not a host of {ns}:sites; add it there")
        vms = _list(flow.get("vms"), f"{at}.vms")
        if not all(isinstance(vm, str) and vm for vm in vms):
            raise ConfigError(f"{at}.vms must list VM names (strings)")
        extend_to = str(flow["extend_to"]) if flow.get("extend_to") is not None else None
        flows.append(ReplicationFlow(str(flow["primary"]), str(flow["replica"]), tuple(vms), extend_to))
    settings = _mapping(replication.get("settings") or {}, f"{where}.settings", RELATIONSHIP_SETTINGS)
    options = ReplicationOptions(
        disable_revocation_check=replication.get("disable_revocation_check", True),
        certificate_port=replication.get("certificate_port"),
        relationship=settings,
    )
    return ReplicationSettings(tuple(flows), options)


def load_stack_config(
    config: pulumi.Config | None = None, *, other_keys: Iterable[str] = ()
) -> StackSettings:
    """Parse and cross-check the whole config of `config`'s namespace (default `hvreplica`) without
    declaring anything. Raises ConfigError (or pulumi.ConfigMissingError for a missing `sites`)."""
    config = config or pulumi.Config(NAMESPACE)
    ns = config.name
    require_known_keys(config, (*CONFIG_KEYS, *other_keys))
    pki = dict(_mapping(config.get_object("pki") or {}, f"{ns}:pki", _PKI_KEYS))
    if pki.get("shared_ca") is not None:
        pki["shared_ca"] = _ca(pki["shared_ca"], f"{ns}:pki.shared_ca")
    pki_settings = PkiSettings(**pki)
    sites = tuple(
        _site(site, f"{ns}:sites[{i}]", ns, pki_settings.shared_ca is not None)
        for i, site in enumerate(_list(config.require_object("sites"), f"{ns}:sites"))
    )
    for label, values in (
        ("site name", [site.name for site in sites]),
        ("host fqdn", [host.fqdn.lower() for site in sites for host in site.hosts]),
    ):
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise ConfigError(f"{ns}:sites repeats the {label} {', '.join(duplicates)}; each must be unique")
    hosts = {h.fqdn.lower() for site in sites for h in site.hosts}
    replication = _replication(config.get_object("replication"), ns, hosts)
    # An empty object is "not set" too: Pulumi.yaml declares `{}` as the default of the optional keys.
    raw_hvsim = config.get_object("hvsim")
    hvsim = (
        HvsimSettings(**_mapping(raw_hvsim, f"{ns}:hvsim", ("config", "state_dir"), ("config",)))
        if raw_hvsim
        else None
    )
    validate(sorted(hosts), replication.flows, replication.options.relationship)
    return StackSettings(ns, pki_settings, sites, replication, hvsim)


def _endpoint(
    host: HostSettings,
    where: str,
    ns: str,
    lab: Mapping[str, EmulatedHost] | None,
    passwords: pulumi.Output[Any],
) -> tuple[pulumi.Input[Mapping[str, Any]], str]:
    """(connection, address) from the host's own settings, else from the hvsim lab."""
    emulated = (lab or {}).get(host.fqdn.lower())
    set_password = (
        f"pulumi config set --secret --path '{ns}:winrm_passwords[\"{host.fqdn}\"]' <password>"
    )
    if host.connection is not None:
        connection = dict(host.connection)
        if "password" in connection:
            raise ConfigError(
                f"{where}.connection.password would sit in plain text in the stack file: remove it and run "
                f"{set_password}"
            )
        ca_file = connection.pop("ca_cert_file", None)
        if ca_file is not None:
            connection["ca_cert_pem"] = Path(ca_file).read_text()
        connection["password"] = passwords.apply(lambda known: _password(known, host.fqdn, set_password))
    elif emulated is not None:
        connection = emulated.connection
    else:
        raise ConfigError(
            f"{where} has no connection and is not a host of the hvsim lab: add connection "
            f"(host, port, auth, username) or set {ns}:hvsim"
        )
    address = host.address or (emulated.address if emulated is not None else None)
    if address is None:
        raise ConfigError(
            f"{where}.address is missing: the IP address its partners put into their hosts file"
        )
    return connection, address


def _password(known: Any, fqdn: str, set_password: str) -> str:
    for name, password in (known or {}).items():
        if name.lower() == fqdn.lower():
            return str(password)
    raise ConfigError(f"no WinRM password for {fqdn}: {set_password}")


def _certificate_authority(key: str, ca: Subject, pki: PkiSettings) -> CertificateAuthority:
    return CertificateAuthority(
        f"ca-{key}",
        CertificateAuthorityArgs(
            **vars(ca),
            rsa_bits=pki.rsa_bits,
            validity_days=pki.ca_validity_days,
            early_renewal_days=pki.ca_early_renewal_days,
        ),
    )


def topology_from_config(
    config: pulumi.Config | None = None, *, name: str = "replica", other_keys: Iterable[str] = ()
) -> ReplicaTopology:
    """Declare the CAs and the ReplicaTopology `name` that the stack config describes.

    `config` defaults to `pulumi.Config("hvreplica")` (see the module doc for the namespace rule);
    `other_keys` are further top-level keys of that namespace that your own program reads. The CAs are
    top-level resources `ca-<site>` (or `ca-shared`), the rest are children of the topology.
    """
    config = config or pulumi.Config(NAMESPACE)
    settings = load_stack_config(config, other_keys=other_keys)
    ns, pki = settings.namespace, settings.pki
    hvsim = settings.hvsim
    lab = emulated_hosts(hvsim.config, hvsim.state_dir) if hvsim is not None else None
    passwords = config.get_secret_object("winrm_passwords") or pulumi.Output.secret({})
    # Every connection is resolved (and can fail) before the first resource is declared.
    endpoints = {
        host.fqdn.lower(): _endpoint(host, f"{ns}:sites[{i}].hosts[{j}]", ns, lab, passwords)
        for i, site in enumerate(settings.sites)
        for j, host in enumerate(site.hosts)
    }
    if pki.shared_ca is not None:
        authorities = {SHARED_CA: _certificate_authority(SHARED_CA, pki.shared_ca, pki)}
    else:
        authorities = {
            site.name: _certificate_authority(site.name, site.ca, pki) for site in settings.sites if site.ca
        }
    hosts: list[TopologyHost] = []
    for site in settings.sites:
        ca = authorities[SHARED_CA if pki.shared_ca is not None else site.name]
        for host in site.hosts:
            connection, address = endpoints[host.fqdn.lower()]
            extra = {"storage_location": host.storage_location} if host.storage_location else {}
            hosts.append(
                TopologyHost(
                    host.fqdn,
                    connection,
                    address,
                    ca,
                    additional_dns_names=host.additional_dns_names,
                    site=site.name,
                    **extra,
                )
            )
    return ReplicaTopology(
        name,
        hosts,
        settings.replication.flows,
        CertificateOptions(
            rsa_bits=pki.rsa_bits,
            validity_days=pki.host_validity_days,
            early_renewal_days=pki.host_early_renewal_days,
            pfx_encryption=pki.pfx_encryption,
        ),
        settings.replication.options,
    )


def _summary(resource: pulumi.CustomResource, **labels: str) -> pulumi.Output[dict[str, Any]]:
    """Thumbprint and expiry (plus plain labels): the public facts an operator checks on a host."""
    return pulumi.Output.all(thumbprint=resource.thumbprint, not_after=resource.not_after).apply(
        lambda facts: {**facts, **labels}
    )


def export_stack_outputs(topology: ReplicaTopology) -> None:
    """Export public facts of a topology from `topology_from_config`, never keys or passwords:
    `certificate_authorities` {ca: {thumbprint, not_after}}, `host_certificates` {fqdn: {thumbprint,
    not_after, ca, site}} and `replication` {"<primary>/<vm>": {state, health, replica}}. A CA is labelled
    by the one site it signs, or `shared` when it signs several."""
    signs: dict[int, set[str]] = {}
    for host in topology.hosts.values():
        signs.setdefault(id(host.ca), set()).add(host.site or "")
    authorities: dict[str, CertificateAuthority] = {}
    labels: dict[str, dict[str, str]] = {}
    for fqdn, host in topology.hosts.items():
        sites = signs[id(host.ca)]
        ca_key = next(iter(sites)) if len(sites) == 1 else SHARED_CA
        authorities.setdefault(ca_key, host.ca)
        labels[fqdn] = {"ca": ca_key, "site": host.site or ""}
    pulumi.export("certificate_authorities", {key: _summary(ca) for key, ca in authorities.items()})
    pulumi.export(
        "host_certificates",
        {fqdn: _summary(cert, **labels[fqdn]) for fqdn, cert in topology.certificates.items()},
    )
    pulumi.export("replication", topology.replication_summary())
