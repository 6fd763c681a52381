"""Windows host primitives over a remoting session: certificate stores, registry, firewall, hosts file.

Every operation is a pipeline of cmdlets with named parameters; several statements share one
invocation where that saves round trips. Reads that may find nothing tell "absent" (NotFound) apart
from every other failure, so a permission problem never looks like "gone".
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

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
# Where failover-cluster brokers and many guides also set the value; which of the two VMMS honours is not
# documented, so both are written (and undone) alike.
FAILOVER_REPLICATION_KEY = (
    r"HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\FailoverReplication"
)
REVOCATION_KEYS = (REPLICATION_KEY, FAILOVER_REPLICATION_KEY)
HOSTS_PATH = r"C:\Windows\System32\drivers\etc\hosts"
UPLOAD_DIR = r"C:\Windows\Temp"
FIREWALL_HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
FIREWALL_HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
# Rules hvreplica creates for listener ports other than 443/80 are named HVR-HTTPS-<port> / HVR-HTTP-<port>;
# this pattern reads all of them (a wildcard that matches nothing is not an error).
LISTENER_RULE_PATTERN = "HVR-HTTP*"
HOSTS_BEGIN = "# BEGIN hvreplica managed entries (edited by Pulumi; do not change by hand)"
HOSTS_END = "# END hvreplica managed entries"
LEDGER_ROOT = r"HKLM:\SOFTWARE\hvreplica"
_ITEM_NOTES = frozenset(("PSPath", "PSParentPath", "PSChildName", "PSDrive", "PSProvider"))

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


_PATH_COMPONENT = re.compile(r'[^<>:"/\\|?*\x00-\x1f]+')
MAX_PATH = 260


def path_problem(value: str) -> str | None:
    """Why `value` is not an absolute local Windows path (`D:\\Replica`, `D:\\`), or None: a drive letter,
    then names without the characters Windows forbids in them (control characters included)."""
    drive, separator, rest = value.partition(":\\")
    names = rest.removesuffix("\\")
    parts = names.split("\\") if names else []
    valid = (
        bool(separator)
        and len(drive) == 1
        and drive.isascii()
        and drive.isalpha()
        and len(value) <= MAX_PATH
        and all(_PATH_COMPONENT.fullmatch(n) and n.rstrip(". ") == n for n in parts)
    )
    if not valid:
        return (
            "it must be an absolute local Windows path such as D:\\Hyper-V\\Replica: a drive letter, then "
            'names without < > : " / | ? * or control characters, at most 260 characters'
        )
    return None


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
    first: Sequence[Statement] = (),
) -> None:
    """Trust CA certificates (LocalMachine\\Root) and import a PFX into LocalMachine\\My in ONE invocation:
    the `first` statements (ledger records), then upload every file, import each, delete the uploads. The
    uploads are removed even when an import fails."""
    statements: list[Statement] = list(first)
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
    if not uploads:
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


def remove_key_cmd(key: str) -> Statement:
    return [cmd("Remove-Item", Path=key, Recurse=True, ErrorAction="Stop")]


@dataclass(frozen=True)
class RegistryKeyInfo:
    """A registry key as Get-Item shows it: the names of its values and how many subkeys it has."""

    value_names: frozenset[str]
    subkeys: int


def key_info_cmd(key: str) -> Statement:
    return [cmd("Get-Item", Path=key)]  # an absent key is NotFound


def parse_key_info(objects: Sequence[Any], key: str) -> RegistryKeyInfo | None:
    for o in registry_objects(objects, key):
        if prop(o, "SubKeyCount") is not None:
            names = prop(o, "Property") or []
            return RegistryKeyInfo(frozenset(map(text, names)), int(prop(o, "SubKeyCount")))
    return None


def registry_objects(objects: Sequence[Any], key: str) -> list[Any]:
    """The Get-Item/Get-ItemProperty results that belong to `key` itself (an HKLM: path)."""
    tail = "\\" + key.split(":\\", 1)[1].lower()
    return [
        o
        for o in objects
        if text(prop(o, "PSPath")).lower().endswith(tail) or text(prop(o, "Name")).lower().endswith(tail)
    ]


# ---------------------------------------------------------------------------------------------- ledger


@dataclass
class LedgerState:
    """An ownership ledger as read from the host: registry String values in a key under LEDGER_ROOT, one
    per thing hvreplica changed, so that a re-run after a failure half-way finds its own earlier changes."""

    key: str
    exists: bool = False
    values: dict[str, str] = field(default_factory=dict)
    root_has_others: bool = True  # LEDGER_ROOT holds more than this ledger (or could not be read)


def ledger_key(resource: str) -> str:
    return f"{LEDGER_ROOT}\\{resource}"


def ledger_read_cmds(key: str) -> list[Statement]:
    # Get-Item tells whether the keys exist and what else the root holds; Get-ItemProperty gives the data.
    # Both report an absent key as NotFound.
    return [[cmd("Get-Item", Path=[LEDGER_ROOT, key])], registry_values_cmd(key)]


def parse_ledger(objects: Sequence[Any], key: str) -> LedgerState:
    state = LedgerState(key)
    for o in registry_objects(objects, key):
        if prop(o, "SubKeyCount") is not None:
            state.exists = True
        else:
            props = {
                **(getattr(o, "adapted_properties", None) or {}),
                **(getattr(o, "extended_properties", None) or {}),
            }
            state.values = {name: text(value) for name, value in props.items() if name not in _ITEM_NOTES}
    root = registry_objects(objects, LEDGER_ROOT)
    if root:
        subkeys, values = int(prop(root[0], "SubKeyCount") or 0), int(prop(root[0], "ValueCount") or 0)
        state.root_has_others = values > 0 or subkeys > (1 if state.exists else 0)
    return state


def ledger_value_name(kind: str, item: str) -> str:
    """A value name for one owned item, free of wildcard characters (Remove-ItemProperty -Name expands
    them): `*.contoso.com` becomes `%2A.contoso.com`."""
    return f"{kind}.{quote(item, safe='.-_')}"


def ledger_change_cmds(
    key: str, old: Mapping[str, str], new: Mapping[str, str]
) -> tuple[list[Statement], list[Statement]]:
    """(records to write BEFORE the changes they describe, records to drop AFTER them) for one invocation.
    Creating the keys is silent when they exist, so a replayed invocation does not fail on them."""
    writes: list[Statement] = [
        [
            cmd(
                "New-ItemProperty",
                Path=key,
                Name=name,
                PropertyType="String",
                Value=data,
                Force=True,
                ErrorAction="Stop",
            )
        ]
        for name, data in sorted(new.items())
        if old.get(name) != data
    ]
    if writes:
        writes = [
            [cmd("New-Item", Path=LEDGER_ROOT, ErrorAction="SilentlyContinue")],
            [cmd("New-Item", Path=key, ErrorAction="SilentlyContinue")],
            *writes,
        ]
    drops = [
        [cmd("Remove-ItemProperty", Path=key, Name=name, ErrorAction="SilentlyContinue")]
        for name in sorted(set(old) - set(new))
    ]
    return writes, drops


def ledger_remove_cmds(state: LedgerState) -> list[Statement]:
    """Remove the ledger (last, once everything it records is undone) and the root key when it is empty."""
    if not state.exists:
        return []
    return [remove_key_cmd(LEDGER_ROOT if not state.root_has_others else state.key)]


# -------------------------------------------------------------------------------------------- firewall


def firewall_rules_cmd(names: Sequence[str]) -> Statement:
    return [cmd("Get-NetFirewallRule", Name=list(names))]


def parse_firewall_rules(objects: Sequence[Any]) -> dict[str, FirewallRule]:
    rules = {}
    for o in objects:
        # Name is the type data's alias of the CIM key InstanceID; a serializer that leaves type-data members
        # out (another depth, a runspace without the NetSecurity type data) still sends InstanceID.
        identity = prop(o, "Name") if prop(o, "Name") is not None else prop(o, "InstanceID")
        if is_type(o, _FIREWALL_TYPE) and identity is not None:
            name = text(identity)
            # The CIM property Enabled is 1/2 (enabled/disabled); PowerShell's type data adds the script
            # property of the same name with 'True'/'False', which is what Get-NetFirewallRule shows.
            shown = (getattr(o, "extended_properties", None) or {}).get("Enabled")
            enabled = _truthy(shown) if shown is not None else prop(o, "Enabled") == 1
            rules[name] = FirewallRule(name=name, enabled=enabled)
    return rules


@dataclass(frozen=True)
class ListenerRule:
    """An inbound allow rule of its own for a replica listener on a port the stock rules do not cover."""

    scheme: str  # HTTPS (certificate listener) | HTTP (Kerberos listener)
    port: int

    @property
    def name(self) -> str:
        return f"HVR-{self.scheme}-{self.port}"

    @property
    def display_name(self) -> str:
        return f"Hyper-V Replica {self.scheme} Listener (TCP-In, port {self.port})"


def new_listener_rule_cmd(rule: ListenerRule) -> Statement:
    return [
        cmd(
            "New-NetFirewallRule",
            Name=rule.name,
            DisplayName=rule.display_name,
            Direction="Inbound",
            Action="Allow",
            Protocol="TCP",
            LocalPort=[str(rule.port)],
            ErrorAction="Stop",
        )
    ]


def remove_firewall_rule_cmd(name: str) -> Statement:
    return [cmd("Remove-NetFirewallRule", Name=name, ErrorAction="Stop")]


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
