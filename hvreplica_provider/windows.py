"""Windows host primitives over a remoting session: certificate stores, registry, firewall, hosts file.

Every operation is a pipeline of cmdlets with named parameters; several statements share one
invocation where that saves round trips. Reads that may find nothing tell "absent" (NotFound) apart
from every other failure, so a permission problem never looks like "gone".
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hvreplica_provider.remoting import (
    NotFound,
    RemoteError,
    SecureText,
    Session,
    Statement,
    cmd,
    is_type,
    prop,
    text,
)

MY_STORE = r"Cert:\LocalMachine\My"
ROOT_STORE = r"Cert:\LocalMachine\Root"
REPLICATION_KEY = r"HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\Replication"
REVOCATION_VALUE = "DisableCertRevocationCheck"
HOSTS_PATH = r"C:\Windows\System32\drivers\etc\hosts"
UPLOAD_DIR = r"C:\Windows\Temp"
FIREWALL_HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
FIREWALL_HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
HOSTS_BEGIN = "# BEGIN hvreplica managed entries (edited by Pulumi; do not change by hand)"
HOSTS_END = "# END hvreplica managed entries"

_CERT_TYPE = "System.Security.Cryptography.X509Certificates.X509Certificate2"
_FIREWALL_TYPE = "Microsoft.Management.Infrastructure.CimInstance"


@dataclass(frozen=True)
class StoreCertificate:
    thumbprint: str
    subject: str
    has_private_key: bool


@dataclass(frozen=True)
class FirewallRule:
    name: str
    enabled: bool


# ---------------------------------------------------------------------------------------- certificates


def store_path(store: str, thumbprint: str | None = None) -> str:
    return f"{store}\\{thumbprint}" if thumbprint else store


def list_certificates_cmd(store: str) -> Statement:
    return [cmd("Get-ChildItem", Path=store)]


def parse_certificates(objects: Sequence[Any]) -> list[StoreCertificate]:
    return [
        StoreCertificate(
            thumbprint=text(prop(o, "Thumbprint")).upper(),
            subject=text(prop(o, "Subject")),
            has_private_key=_truthy(prop(o, "HasPrivateKey")),
        )
        for o in objects
        if is_type(o, _CERT_TYPE)
    ]


def _upload_path(suffix: str) -> str:
    return f"{UPLOAD_DIR}\\hvreplica-{secrets.token_hex(8)}{suffix}"


def _upload(path: str, data: bytes) -> Statement:
    # Windows PowerShell 5.1 writes a byte[] verbatim with -Encoding Byte.
    return [cmd("Set-Content", Path=path, Value=data, Encoding="Byte", ErrorAction="Stop")]


def install_certificates(
    session: Session,
    *,
    ca_pems: Sequence[str] = (),
    pfx: bytes | None = None,
    pfx_password: str | None = None,
) -> None:
    """Trust CA certificates (LocalMachine\\Root) and import a PFX into LocalMachine\\My in ONE invocation:
    upload every file, import each, delete the uploads. The uploads are removed even when an import fails."""
    statements: list[Statement] = []
    uploads: list[str] = []
    for pem in ca_pems:
        for cert in x509.load_pem_x509_certificates(pem.encode()):
            path = _upload_path(".cer")
            uploads.append(path)
            statements.append(_upload(path, cert.public_bytes(serialization.Encoding.DER)))
            statements.append(
                [cmd("Import-Certificate", FilePath=path, CertStoreLocation=ROOT_STORE, ErrorAction="Stop")]
            )
    if pfx is not None:
        path = _upload_path(".pfx")
        uploads.append(path)
        statements.append(_upload(path, pfx))
        statements.append(
            [
                cmd(
                    "Import-PfxCertificate",
                    FilePath=path,
                    CertStoreLocation=MY_STORE,
                    Password=SecureText(pfx_password or ""),
                    ErrorAction="Stop",
                )
            ]
        )
    if not statements:
        return
    removals = [[cmd("Remove-Item", Path=p, Force=True)] for p in uploads]
    try:
        session.run(*statements, *removals).raise_errors()
    except RemoteError as failure:
        # A failed import stops the invocation before its removals: clean up on our own.
        try:
            session.run(*removals).raise_errors(allow=(NotFound,))
        except RemoteError as cleanup:
            failure.add_note(f"removing the uploaded files failed too: {cleanup}")
        raise


def remove_certificate_cmd(store: str, thumbprint: str) -> Statement:
    """Remove one certificate; from LocalMachine\\My together with its private key."""
    key = {"DeleteKey": True} if store == MY_STORE else {}
    return [cmd("Remove-Item", Path=store_path(store, thumbprint), **key, ErrorAction="Stop")]


# -------------------------------------------------------------------------------------------- registry


def registry_values_cmd(key: str) -> Statement:
    # Without -Name: a missing key is NotFound, a missing value simply is not in the object.
    return [cmd("Get-ItemProperty", Path=key)]


def parse_dword(objects: Sequence[Any], name: str) -> int | None:
    for o in objects:
        value = prop(o, name)
        if value is not None:
            return int(value)
    return None


def set_dword_cmds(key: str, name: str, value: int, *, key_exists: bool) -> list[Statement]:
    # New-Item -Force on an existing key wipes its other values: create the key only when absent.
    create = [] if key_exists else [[cmd("New-Item", Path=key, ErrorAction="Stop")]]
    return [
        *create,
        [
            cmd(
                "New-ItemProperty",
                Path=key,
                Name=name,
                PropertyType="DWord",
                Value=value,
                Force=True,
                ErrorAction="Stop",
            )
        ],
    ]


def remove_value_cmd(key: str, name: str) -> Statement:
    return [cmd("Remove-ItemProperty", Path=key, Name=name)]


# -------------------------------------------------------------------------------------------- firewall


def firewall_rules_cmd(names: Sequence[str]) -> Statement:
    return [cmd("Get-NetFirewallRule", Name=list(names))]


def parse_firewall_rules(objects: Sequence[Any]) -> dict[str, FirewallRule]:
    rules = {}
    for o in objects:
        if is_type(o, _FIREWALL_TYPE) and prop(o, "Name") is not None:
            name = text(prop(o, "Name"))
            # The CIM property Enabled is 1/2 (enabled/disabled); PowerShell's type data adds the script
            # property of the same name with 'True'/'False', which is what Get-NetFirewallRule shows.
            shown = (getattr(o, "extended_properties", None) or {}).get("Enabled")
            enabled = _truthy(shown) if shown is not None else prop(o, "Enabled") == 1
            rules[name] = FirewallRule(name=name, enabled=enabled)
    return rules


def set_firewall_rule_cmd(name: str, enabled: bool) -> Statement:
    verb = "Enable-NetFirewallRule" if enabled else "Disable-NetFirewallRule"
    return [cmd(verb, Name=name, ErrorAction="Stop")]


# ------------------------------------------------------------------------------------------ hosts file


def hosts_read_cmd() -> Statement:
    return [cmd("Get-Content", Path=HOSTS_PATH)]


def hosts_lines(objects: Sequence[Any]) -> list[str]:
    """The lines of Get-Content output: strings carrying PSPath/ReadCount note properties, which pypsrp hands
    over as objects whose value is their only property-set entry."""
    lines = []
    for o in objects:
        if isinstance(o, str):
            lines.append(o)
        elif prop(o, "ReadCount") is not None and getattr(o, "property_sets", None):
            lines.append(text(o.property_sets[0]))
    return lines


def parse_managed_block(lines: Sequence[str]) -> dict[str, str]:
    """FQDN -> IP from the managed block (empty when there is none)."""
    entries: dict[str, str] = {}
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped == HOSTS_BEGIN:
            inside = True
        elif stripped == HOSTS_END:
            inside = False
        elif inside and stripped and not stripped.startswith("#"):
            address, *names = stripped.split()
            for name in names:
                entries[name.lower()] = address
    return entries


def render_hosts(lines: Sequence[str], entries: Mapping[str, str]) -> list[str]:
    """The file with its managed block replaced by `entries` (removed when empty); other lines unchanged."""
    kept: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped == HOSTS_BEGIN:
            inside = True
        elif stripped == HOSTS_END:
            inside = False
        elif not inside:
            kept.append(line)
    if not entries:
        return kept
    block = [HOSTS_BEGIN, *(f"{ip} {name}" for name, ip in sorted(entries.items())), HOSTS_END]
    return [*kept, *block]


def hosts_write_cmd(lines: Sequence[str]) -> Statement:
    return [cmd("Set-Content", Path=HOSTS_PATH, Value=list(lines), ErrorAction="Stop")]


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return text(value).strip().lower() in ("true", "1")
