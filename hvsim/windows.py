"""The Windows side of an emulated host: certificate stores, registry, file system, firewall, users and facts.

Everything here is plain model state with to_dict/from_dict; the cmdlets in hvsim/cmdlets/ read and change it
under the Lab lock. Paths are case-insensitive and keep the case they were created with, as on NTFS and in the
registry.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hvsim.config import HostConfig
from hvsim.stock_roots import stock_root_certificates

if TYPE_CHECKING:
    from hvsim.hyperv import HyperVHost

# --------------------------------------------------------------------------------------------- certificates

CERT_STORES = ("My", "Root", "CA")  # LocalMachine stores hvsim models


@dataclass
class StoredCertificate:
    """A certificate in a LocalMachine store, with its private key when one was imported (PKCS#8 PEM)."""

    der: bytes
    key_pem: bytes | None = None
    exportable: bool = False
    friendly_name: str = ""

    @functools.cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER in upper-case hex: how Windows names a certificate in its stores."""
        return hashlib.sha1(self.der).hexdigest().upper()

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def has_private_key(self) -> bool:
        return self.key_pem is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "der": base64.b64encode(self.der).decode(),
            "key_pem": self.key_pem.decode() if self.key_pem else None,
            "exportable": self.exportable,
            "friendly_name": self.friendly_name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredCertificate:
        return cls(
            der=base64.b64decode(data["der"]),
            key_pem=data["key_pem"].encode() if data.get("key_pem") else None,
            exportable=bool(data.get("exportable", False)),
            friendly_name=data.get("friendly_name", ""),
        )


@dataclass
class CertificateStores:
    """LocalMachine\\My, \\Root and \\CA, each thumbprint -> certificate in insertion order."""

    stores: dict[str, dict[str, StoredCertificate]] = field(
        default_factory=lambda: {name: {} for name in CERT_STORES}
    )

    def store_name(self, name: str) -> str | None:
        """The canonical store name for `name` (case-insensitive), None when hvsim has no such store."""
        return next((s for s in self.stores if s.lower() == name.lower()), None)

    def store(self, name: str) -> dict[str, StoredCertificate]:
        canonical = self.store_name(name)
        if canonical is None:
            raise KeyError(name)
        return self.stores[canonical]

    def get(self, store: str, thumbprint: str) -> StoredCertificate | None:
        return self.store(store).get(thumbprint.upper())

    def add(self, store: str, cert: StoredCertificate) -> StoredCertificate:
        """Add or update; re-adding a certificate keeps a key it already had (as
        CertAddCertificateContextToStore with CERT_STORE_ADD_REPLACE_EXISTING_INHERIT_PROPERTIES does)."""
        existing = self.store(store).get(cert.thumbprint)
        if existing is not None and cert.key_pem is None:
            cert.key_pem, cert.exportable = existing.key_pem, existing.exportable
        self.store(store)[cert.thumbprint] = cert
        return cert

    def remove(self, store: str, thumbprint: str) -> bool:
        return self.store(store).pop(thumbprint.upper(), None) is not None

    def pem_bundle(self, store: str) -> bytes:
        """All certificates of `store` as concatenated PEM (what an SSLContext loads as its trust anchors)."""
        return b"".join(c.pem for c in self.store(store).values())

    def to_dict(self) -> dict[str, Any]:
        return {name: [c.to_dict() for c in certs.values()] for name, certs in self.stores.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CertificateStores:
        stores = cls()
        for name in CERT_STORES:
            for item in data.get(name, []):
                stored = StoredCertificate.from_dict(item)
                stores.stores[name][stored.thumbprint] = stored
        return stores


def _stock_certificates() -> CertificateStores:
    """A fresh install's stores: LocalMachine\\Root holds the stock roots (stand-ins, see stock_roots.py)."""
    stores = CertificateStores()
    for der, friendly_name in stock_root_certificates():
        stores.add("Root", StoredCertificate(der, friendly_name=friendly_name))
    return stores


# ------------------------------------------------------------------------------------------------- registry

# PowerShell's RegistryValueKind names, in the order of their numeric values where they have one.
VALUE_KINDS = ("String", "ExpandString", "Binary", "DWord", "MultiString", "QWord")


@dataclass
class RegistryValue:
    name: str
    kind: str  # one of VALUE_KINDS
    data: Any  # str | int | bytes | list[str]

    def to_dict(self) -> dict[str, Any]:
        data = base64.b64encode(self.data).decode() if self.kind == "Binary" else self.data
        return {"name": self.name, "kind": self.kind, "data": data}

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> RegistryValue:
        data = base64.b64decode(item["data"]) if item["kind"] == "Binary" else item["data"]
        return cls(item["name"], item["kind"], data)


@dataclass
class RegistryKey:
    name: str
    subkeys: dict[str, RegistryKey] = field(default_factory=dict)  # lower-case name -> key
    values: dict[str, RegistryValue] = field(default_factory=dict)  # lower-case name -> value

    def child(self, name: str) -> RegistryKey | None:
        return self.subkeys.get(name.lower())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "values": [v.to_dict() for v in self.values.values()],
            "subkeys": [k.to_dict() for k in self.subkeys.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegistryKey:
        key = cls(data["name"])
        for v in data.get("values", []):
            value = RegistryValue.from_dict(v)
            key.values[value.name.lower()] = value
        for k in data.get("subkeys", []):
            sub = cls.from_dict(k)
            key.subkeys[sub.name.lower()] = sub
        return key


def split_key_path(path: str) -> list[str]:
    return [part for part in path.replace("/", "\\").split("\\") if part]


@dataclass
class Registry:
    """HKEY_LOCAL_MACHINE. Key paths are relative to it ("SOFTWARE\\Microsoft\\...")."""

    root: RegistryKey = field(default_factory=lambda: RegistryKey("HKEY_LOCAL_MACHINE"))

    def key(self, path: str) -> RegistryKey | None:
        node: RegistryKey | None = self.root
        for part in split_key_path(path):
            node = node.child(part) if node else None
        return node

    def create_key(self, path: str, *, replace: bool = False) -> RegistryKey:
        """Create `path` and missing parents; `replace` recreates an existing leaf key empty
        (New-Item -Force)."""
        parts = split_key_path(path)
        node = self.root
        for index, part in enumerate(parts):
            child = node.child(part)
            if child is None or (replace and index == len(parts) - 1):
                child = RegistryKey(part if child is None else child.name)
                node.subkeys[part.lower()] = child
            node = child
        return node

    def delete_key(self, path: str) -> bool:
        parts = split_key_path(path)
        parent = self.key("\\".join(parts[:-1])) if parts else None
        return bool(parent and parent.subkeys.pop(parts[-1].lower(), None))

    def get_value(self, key_path: str, name: str) -> RegistryValue | None:
        key = self.key(key_path)
        return key.values.get(name.lower()) if key else None

    def set_value(self, key_path: str, name: str, kind: str, data: Any) -> RegistryValue:
        key = self.key(key_path)
        if key is None:
            raise KeyError(key_path)
        existing = key.values.get(name.lower())
        value = RegistryValue(existing.name if existing else name, kind, data)
        key.values[name.lower()] = value
        return value

    def dword(self, key_path: str, name: str) -> int | None:
        """A numeric value (DWord/QWord) or None when absent or of another kind."""
        value = self.get_value(key_path, name)
        return int(value.data) if value and value.kind in ("DWord", "QWord") else None

    def to_dict(self) -> dict[str, Any]:
        return self.root.to_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registry:
        return cls(RegistryKey.from_dict(data))


REPLICATION_KEY = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication"


def _stock_registry(config: HostConfig, facts: HostFacts) -> Registry:
    reg = Registry()
    current = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
    reg.create_key(current)
    for name, kind, data in (
        ("ProductName", "String", facts.product_name),
        ("EditionID", "String", facts.edition_id),
        ("CurrentBuild", "String", facts.build_number),
        ("CurrentBuildNumber", "String", facts.build_number),
        ("CurrentMajorVersionNumber", "DWord", 10),
        ("CurrentMinorVersionNumber", "DWord", 0),
        ("InstallationType", "String", "Server"),
        ("SystemRoot", "String", "C:\\Windows"),
        ("RegisteredOwner", "String", "Windows User"),
    ):
        reg.set_value(current, name, kind, data)
    reg.create_key(f"{current}\\Virtualization")
    reg.set_value(
        f"{current}\\Virtualization",
        "DefaultExternalDataRoot",
        "String",
        "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V",
    )
    reg.create_key("SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System")
    reg.create_key("SYSTEM\\CurrentControlSet\\Services\\vmms")
    reg.set_value("SYSTEM\\CurrentControlSet\\Services\\vmms", "Start", "DWord", 2)
    reg.set_value(
        "SYSTEM\\CurrentControlSet\\Services\\vmms",
        "ImagePath",
        "ExpandString",
        "%SystemRoot%\\system32\\vmms.exe",
    )
    reg.create_key("SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName")
    reg.set_value(
        "SYSTEM\\CurrentControlSet\\Control\\ComputerName\\ComputerName",
        "ComputerName",
        "String",
        config.computer_name,
    )
    tcpip = "SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters"
    reg.create_key(tcpip)
    reg.set_value(tcpip, "Hostname", "String", config.computer_name)
    reg.set_value(tcpip, "Domain", "String", config.domain)
    reg.set_value(tcpip, "DataBasePath", "ExpandString", "%SystemRoot%\\System32\\drivers\\etc")
    return reg


# ----------------------------------------------------------------------------------------------- file system

HOSTS_FILE = "C:\\Windows\\System32\\drivers\\etc\\hosts"

# The hosts file of a fresh Windows install (CRLF line ends, as Windows writes it).
STOCK_HOSTS = "\r\n".join(
    [
        "# Copyright (c) 1993-2009 Microsoft Corp.",
        "#",
        "# This is a sample HOSTS file used by Microsoft TCP/IP for Windows.",
        "#",
        "# This file contains the mappings of IP addresses to host names. Each",
        "# entry should be kept on an individual line. The IP address should",
        "# be placed in the first column followed by the corresponding host name.",
        "# The IP address and the host name should be separated by at least one",
        "# space.",
        "#",
        "# Additionally, comments (such as these) may be inserted on individual",
        "# lines or following the machine name denoted by a '#' symbol.",
        "#",
        "# For example:",
        "#",
        "#      102.54.94.97     rhino.acme.com          # source server",
        "#       38.25.63.10     x.acme.com              # x client host",
        "",
        "# localhost name resolution is handled within DNS itself.",
        "#\t127.0.0.1       localhost",
        "#\t::1             localhost",
        "",
    ]
)

_STOCK_DIRECTORIES = (
    "C:\\",
    "C:\\Windows",
    "C:\\Windows\\System32",
    "C:\\Windows\\System32\\drivers",
    "C:\\Windows\\System32\\drivers\\etc",
    "C:\\Windows\\Temp",
    "C:\\ProgramData",
    "C:\\ProgramData\\Microsoft",
    "C:\\ProgramData\\Microsoft\\Windows",
    "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V",
    "C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks",
    "C:\\Users",
    "C:\\Users\\Public",
)


def normalize_file_path(path: str) -> str:
    """C:\\A\\b from c:/A/b\\ (upper-case drive letter, backslashes, no trailing separator but the root's)."""
    p = path.replace("/", "\\")
    while "\\\\" in p[1:]:
        p = p[0] + p[1:].replace("\\\\", "\\")
    if len(p) >= 2 and p[1] == ":":
        p = p[0].upper() + p[1:]
    if len(p) > 3 and p.endswith("\\"):
        p = p.rstrip("\\")
    if len(p) == 2 and p[1] == ":":
        p += "\\"
    return p


def parent_path(path: str) -> str:
    p = normalize_file_path(path)
    head = p.rsplit("\\", 1)[0]
    return head + "\\" if len(head) == 2 and head[1] == ":" else head


@dataclass
class FileEntry:
    path: str
    data: bytes
    last_write: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass
class FileSystem:
    """Files (bytes) and directories of drive C:, keyed by lower-case normalized path."""

    files: dict[str, FileEntry] = field(default_factory=dict)
    directories: dict[str, str] = field(default_factory=dict)  # lower -> path as created

    def is_file(self, path: str) -> bool:
        return normalize_file_path(path).lower() in self.files

    def is_dir(self, path: str) -> bool:
        return normalize_file_path(path).lower() in self.directories

    def exists(self, path: str) -> bool:
        return self.is_file(path) or self.is_dir(path)

    def read(self, path: str) -> bytes | None:
        entry = self.files.get(normalize_file_path(path).lower())
        return entry.data if entry else None

    def read_text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else decode_text(data)

    def entry(self, path: str) -> FileEntry | None:
        return self.files.get(normalize_file_path(path).lower())

    def write(self, path: str, data: bytes, now: dt.datetime | None = None) -> FileEntry:
        """Write a file whose directory exists (callers check and report a missing parent)."""
        p = normalize_file_path(path)
        existing = self.files.get(p.lower())
        entry = FileEntry(existing.path if existing else p, data, now or dt.datetime.now(dt.UTC))
        self.files[p.lower()] = entry
        return entry

    def make_dirs(self, path: str) -> None:
        p = normalize_file_path(path)
        while p.lower() not in self.directories:
            self.directories[p.lower()] = p
            parent = parent_path(p)
            if parent == p:
                break
            p = parent

    def remove(self, path: str, recurse: bool = False) -> None:
        key = normalize_file_path(path).lower()
        if key in self.files:
            del self.files[key]
            return
        prefix = key.rstrip("\\") + "\\"
        for k in [k for k in self.files if k.startswith(prefix)]:
            del self.files[k]
        for k in [k for k in self.directories if k.startswith(prefix) or k == key]:
            del self.directories[k]

    def children(self, path: str) -> Iterator[tuple[str, bool]]:
        """(path, is_directory) of the direct children of directory `path`, directories first, by name."""
        key = normalize_file_path(path).lower()
        dirs = sorted(
            (p for k, p in self.directories.items() if k != key and parent_path(k).lower() == key),
            key=str.lower,
        )
        files = sorted(
            (e.path for k, e in self.files.items() if parent_path(k).lower() == key), key=str.lower
        )
        yield from ((d, True) for d in dirs)
        yield from ((f, False) for f in files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directories": sorted(self.directories.values(), key=str.lower),
            "files": [
                {
                    "path": e.path,
                    "data": base64.b64encode(e.data).decode(),
                    "last_write": e.last_write.isoformat(),
                }
                for e in self.files.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileSystem:
        fs = cls()
        for d in data.get("directories", []):
            fs.directories[d.lower()] = d
        for f in data.get("files", []):
            fs.files[f["path"].lower()] = FileEntry(
                f["path"], base64.b64decode(f["data"]), dt.datetime.fromisoformat(f["last_write"])
            )
        return fs


def decode_text(data: bytes) -> str:
    """Text as Windows PowerShell reads it: BOM-detected UTF-8/UTF-16, else the ANSI code page."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    return data.decode("cp1252", errors="replace")


def _stock_files(config: HostConfig, now: dt.datetime) -> FileSystem:
    fs = FileSystem()
    for d in _STOCK_DIRECTORIES:
        fs.make_dirs(d)
    for user in config.users:  # profiles: a remote session starts in the user's Documents
        fs.make_dirs(f"C:\\Users\\{user}\\Documents")
    fs.write(HOSTS_FILE, STOCK_HOSTS.encode("ascii"), now)
    return fs


# -------------------------------------------------------------------------------------------------- firewall


@dataclass
class FirewallRule:
    """An MSFT_NetFirewallRule with its port filter (Get-NetFirewallPortFilter) folded in."""

    name: str
    display_name: str
    group: str  # the resource-string form Windows stores ("@vmms.exe,-251"); display_group is what users see
    display_group: str
    description: str
    enabled: bool
    direction: str = "Inbound"  # Inbound | Outbound
    action: str = "Allow"  # Allow | Block
    profile: str = "Any"
    protocol: str = "TCP"
    local_port: str = "Any"
    program: str = "Any"
    service: str = "Any"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FirewallRule:
        return cls(**data)


HVR_HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
HVR_HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"


def _stock_firewall() -> list[FirewallRule]:
    return [
        FirewallRule(
            HVR_HTTP_RULE,
            "Hyper-V Replica HTTP Listener (TCP-In)",
            "@%systemroot%\\system32\\vmms.exe,-253",
            "Hyper-V Replica HTTP",
            "Inbound rule for Hyper-V Replica listener to accept HTTP connection for replication. [TCP]",
            False,
            local_port="80",
            program="System",
        ),
        FirewallRule(
            HVR_HTTPS_RULE,
            "Hyper-V Replica HTTPS Listener (TCP-In)",
            "@%systemroot%\\system32\\vmms.exe,-254",
            "Hyper-V Replica HTTPS",
            "Inbound rule for Hyper-V Replica listener to accept HTTPS connection for replication. [TCP]",
            False,
            local_port="443",
            program="System",
        ),
        FirewallRule(
            "WINRM-HTTP-In-TCP",
            "Windows Remote Management (HTTP-In)",
            "@FirewallAPI.dll,-30267",
            "Windows Remote Management",
            "Inbound rule for Windows Remote Management via WS-Management. [TCP 5985]",
            True,
            profile="Domain, Private",
            local_port="5985",
            program="System",
        ),
        FirewallRule(
            "WINRM-HTTP-In-TCP-PUBLIC",
            "Windows Remote Management (HTTP-In)",
            "@FirewallAPI.dll,-30267",
            "Windows Remote Management",
            "Inbound rule for Windows Remote Management via WS-Management. [TCP 5985]",
            True,
            profile="Public",
            local_port="5985",
            program="System",
        ),
        FirewallRule(
            "FPS-SMB-In-TCP",
            "File and Printer Sharing (SMB-In)",
            "@FirewallAPI.dll,-28502",
            "File and Printer Sharing",
            "Inbound rule for File and Printer Sharing to allow Server Message Block transmission and "
            "reception via Named Pipes. [TCP 445]",
            False,
            local_port="445",
            program="System",
        ),
        FirewallRule(
            "RemoteDesktop-UserMode-In-TCP",
            "Remote Desktop - User Mode (TCP-In)",
            "@FirewallAPI.dll,-28775",
            "Remote Desktop",
            "Inbound rule for the Remote Desktop service to allow RDP traffic. [TCP 3389]",
            False,
            local_port="3389",
            program="%SystemRoot%\\system32\\svchost.exe",
            service="termservice",
        ),
    ]


@dataclass
class Firewall:
    rules: list[FirewallRule] = field(default_factory=_stock_firewall)

    def rule(self, name: str) -> FirewallRule | None:
        return next((r for r in self.rules if r.name.lower() == name.lower()), None)

    def port_open(self, port: int, protocol: str = "TCP") -> bool:
        """An enabled inbound Allow rule admits `port`."""
        return any(
            r.enabled
            and r.direction == "Inbound"
            and r.action == "Allow"
            and r.protocol.upper() in (protocol.upper(), "ANY")
            and _port_matches(r.local_port, port)
            for r in self.rules
        )

    def to_dict(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rules]

    @classmethod
    def from_dict(cls, data: list[dict[str, Any]]) -> Firewall:
        return cls([FirewallRule.from_dict(r) for r in data])


def _port_matches(spec: str, port: int) -> bool:
    for part in spec.split(","):
        part = part.strip()
        if part == "Any":
            return True
        if "-" in part:
            low, high = part.split("-", 1)
            if low.isdigit() and high.isdigit() and int(low) <= port <= int(high):
                return True
        elif part.isdigit() and int(part) == port:
            return True
    return False


# ------------------------------------------------------------------------------------------------ host facts

_OS_BUILDS = {
    "2016": ("10.0.14393", "14393"),
    "2019": ("10.0.17763", "17763"),
    "2022": ("10.0.20348", "20348"),
    "2025": ("10.0.26100", "26100"),
}


_FACT_TIMES = ("install_date", "last_boot", "vmms_started")


@dataclass
class HostFacts:
    """What Win32_ComputerSystem / Win32_OperatingSystem report; generated once per host, then persisted."""

    product_name: str
    edition_id: str
    caption: str
    version: str
    build_number: str
    serial_number: str
    install_date: dt.datetime
    last_boot: dt.datetime
    vmms_started: dt.datetime
    total_memory_bytes: int = 64 * 1024**3
    processors: int = 2
    logical_processors: int = 8

    @classmethod
    def fresh(cls, config: HostConfig, now: dt.datetime) -> HostFacts:
        release = next((year for year in _OS_BUILDS if year in config.os), "2022")
        version, build = _OS_BUILDS[release]
        serial = uuid.uuid5(uuid.NAMESPACE_DNS, config.fqdn).int
        return cls(
            product_name=f"Windows Server {release} Datacenter",
            edition_id="ServerDatacenter",
            caption=f"Microsoft Windows Server {release} Datacenter",
            version=version,
            build_number=build,
            serial_number=f"00454-{serial % 10**5:05d}-00000-AA{release[-3:]}",
            install_date=(now - dt.timedelta(days=30)).replace(microsecond=0),
            last_boot=now.replace(microsecond=0),
            vmms_started=now.replace(microsecond=0),
        )

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in _FACT_TIMES:
            data[key] = getattr(self, key).isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostFacts:
        return cls(**{**data, **{key: dt.datetime.fromisoformat(data[key]) for key in _FACT_TIMES}})


# ------------------------------------------------------------------------------------------------------ host


@dataclass
class Host:
    """One emulated Windows host: its config entry, the Windows model and its Hyper-V role (`hyperv`)."""

    config: HostConfig
    facts: HostFacts
    certificates: CertificateStores
    registry: Registry
    files: FileSystem
    firewall: Firewall
    hyperv: HyperVHost

    @property
    def fqdn(self) -> str:
        return self.config.fqdn

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def computer_name(self) -> str:
        return self.config.computer_name

    def check_password(self, user: str, password: str) -> bool:
        """Local accounts: "user", "COMPUTER\\user", ".\\user" or "user@fqdn"; names are case-insensitive."""
        name = self.local_user_name(user)
        if name is None:
            return False
        return hmac.compare_digest(self.config.users[name].encode(), password.encode())

    def local_user_name(self, user: str) -> str | None:
        """The configured account `user` refers to, None when it is not a local account of this host."""
        name = user
        if "\\" in name:
            prefix, name = name.split("\\", 1)
            if prefix not in (".", "") and prefix.upper() != self.computer_name:
                return None
        elif "@" in name:
            name, suffix = name.split("@", 1)
            if suffix.lower() not in (self.fqdn, self.computer_name.lower()):
                return None
        return next((u for u in self.config.users if u.lower() == name.lower()), None)

    @classmethod
    def fresh(cls, config: HostConfig, hyperv: HyperVHost, now: dt.datetime) -> Host:
        facts = HostFacts.fresh(config, now)
        return cls(
            config=config,
            facts=facts,
            certificates=_stock_certificates(),
            registry=_stock_registry(config, facts),
            files=_stock_files(config, now),
            firewall=Firewall(),
            hyperv=hyperv,
        )

    def to_dict(self) -> dict[str, Any]:
        """Full state for lab.json (including private keys of the emulated stores)."""
        return {
            "fqdn": self.fqdn,
            "facts": self.facts.to_dict(),
            "certificates": self.certificates.to_dict(),
            "registry": self.registry.to_dict(),
            "files": self.files.to_dict(),
            "firewall": self.firewall.to_dict(),
            "hyperv": self.hyperv.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: HostConfig, hyperv: HyperVHost) -> Host:
        return cls(
            config=config,
            facts=HostFacts.from_dict(data["facts"]),
            certificates=CertificateStores.from_dict(data["certificates"]),
            registry=Registry.from_dict(data["registry"]),
            files=FileSystem.from_dict(data["files"]),
            firewall=Firewall.from_dict(data["firewall"]),
            hyperv=hyperv,
        )

    def public_dict(self) -> dict[str, Any]:
        """State for `dump_host`: like to_dict, but private keys are replaced by a HasPrivateKey flag."""
        data = self.to_dict()
        data["certificates"] = {
            store: [
                {
                    "thumbprint": c.thumbprint,
                    "subject": c.cert.subject.rfc4514_string(),
                    "issuer": c.cert.issuer.rfc4514_string(),
                    "not_after": c.cert.not_valid_after_utc.isoformat(),
                    "has_private_key": c.has_private_key,
                    "exportable": c.exportable,
                }
                for c in certs.values()
            ]
            for store, certs in self.certificates.stores.items()
        }
        data["files"] = {
            "directories": data["files"]["directories"],
            "files": [{"path": e.path, "size": len(e.data)} for e in self.files.files.values()],
        }
        data["users"] = sorted(self.config.users)
        data["hosts_file"] = self.files.read_text(HOSTS_FILE)
        return data
