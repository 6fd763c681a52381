"""The opt-in real-host suite's configuration: a TOML file named by HVREPLICA_REALHOST_CONFIG that lists two
or three hosts (format: tests/realhost/README.md). Passwords come only from environment variables."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_ENV = "HVREPLICA_REALHOST_CONFIG"
RECORD_ENV = "HVREPLICA_RECORD"
RECORDINGS_ENV = "HVREPLICA_RECORDINGS_DIR"  # where recordings go instead of tests/recordings/
SKIP_REASON = (
    f"real Hyper-V hosts are opt-in: set {CONFIG_ENV} to a hosts file (tests/realhost/README.md, "
    "docs/real-hosts.md)"
)
_HOST_KEYS = ("fqdn", "address", "storage_location", "vms", "connection")
_CONNECTION_KEYS = (
    "host", "port", "transport", "auth", "username", "password_env", "ca_cert_file", "verify_tls",
    "operation_timeout_sec", "read_timeout_sec", "connect_timeout_sec",
)  # fmt: skip


@dataclass(frozen=True)
class RealHost:
    alias: str  # primary, replica, third: what recordings call it
    fqdn: str
    address: str
    storage_location: str
    vms: tuple[str, ...]  # replicated to the next host of the file
    connection: dict[str, Any]  # a HostConnection input, password included


def load(path: Path) -> list[RealHost]:
    raw = tomllib.loads(path.read_text())
    entries = raw.get("host")
    if set(raw) != {"host"} or not isinstance(entries, list) or not 2 <= len(entries) <= 3:
        raise ValueError(f"{path}: expected two or three [[host]] tables and nothing else")
    hosts = []
    for alias, entry in zip(("primary", "replica", "third"), entries, strict=False):
        unknown = set(entry) - set(_HOST_KEYS) | set(entry.get("connection", {})) - set(_CONNECTION_KEYS)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {sorted(unknown)} in the {alias} host")
        connection = dict(entry["connection"])
        variable = connection.pop("password_env", None)
        if variable is not None:
            if variable not in os.environ:
                raise ValueError(f"{path}: the {alias} host's password variable {variable} is not set")
            connection["password"] = os.environ[variable]
        if "ca_cert_file" in connection:
            connection["ca_cert_pem"] = (path.parent / connection.pop("ca_cert_file")).read_text()
        hosts.append(
            RealHost(
                alias=alias,
                fqdn=entry["fqdn"].lower(),
                address=entry["address"],
                storage_location=entry["storage_location"],
                vms=tuple(entry.get("vms", ())),
                connection=connection,
            )
        )
    if not any(h.vms for h in hosts[:-1]):
        raise ValueError(f"{path}: name at least one VM (vms) on a host that has a next host to replicate to")
    return hosts
