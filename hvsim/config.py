"""hvsim configuration: the TOML file that describes domains and emulated hosts."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIME_SCALE = 60.0
# Every key the file may hold, per table: a misspelt key (`winrm_prot`, `vm`) must fail, not fall back to
# a default silently.
_TOP_KEYS = ("settings", "domain", "host")
_SETTINGS_KEYS = ("time_scale", "admin")
_DOMAIN_KEYS = ("name", "trusts")
_HOST_KEYS = ("fqdn", "address", "winrm_port", "winrm_http_port", "https_listener", "users", "vms", "os")


class ConfigError(ValueError):
    """The configuration file is invalid; the message names the entry and the fix."""


@dataclass(frozen=True)
class Settings:
    time_scale: float = DEFAULT_TIME_SCALE
    admin: str | None = None  # "127.0.0.1:5990": admin endpoint, loopback only


@dataclass(frozen=True)
class DomainConfig:
    name: str
    trusts: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostConfig:
    fqdn: str
    address: str
    winrm_port: int = 5986
    winrm_http_port: int | None = None
    # false: no HTTPS listener, as on a fresh Windows Server (only the HTTP one, which winrm_http_port is)
    https_listener: bool = True
    users: dict[str, str] = field(default_factory=lambda: {"Administrator": "P@ssw0rd!"})
    vms: tuple[str, ...] = ()
    os: str = "Windows Server 2022"

    @property
    def domain(self) -> str:
        return self.fqdn.split(".", 1)[1].lower()

    @property
    def computer_name(self) -> str:
        return self.fqdn.split(".", 1)[0].upper()

    @property
    def listeners(self) -> tuple[tuple[str, int], ...]:
        """(scheme, port) of every WinRM listener the host has."""
        https = (("https", self.winrm_port),) if self.https_listener else ()
        http = (("http", self.winrm_http_port),) if self.winrm_http_port is not None else ()
        return https + http


@dataclass(frozen=True)
class SimConfig:
    settings: Settings
    domains: tuple[DomainConfig, ...]
    hosts: tuple[HostConfig, ...]

    def domain(self, name: str) -> DomainConfig | None:
        return next((d for d in self.domains if d.name == name.lower()), None)

    def trusted(self, a: str, b: str) -> bool:
        """True when Kerberos works between domains a and b (same domain or a trust either way)."""
        a, b = a.lower(), b.lower()
        if a == b:
            return True
        da, db = self.domain(a), self.domain(b)
        return bool((da and b in da.trusts) or (db and a in db.trusts))


def load_config(path: str | Path) -> SimConfig:
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _known(table: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with the keys {', '.join(allowed)}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {where}; allowed: {', '.join(allowed)}"
        )
    return table


def _tables(raw: dict[str, Any], name: str) -> list[Any]:
    tables = raw.get(name, [])
    if not isinstance(tables, list):
        raise ConfigError(f"{name} must be an array of tables: write [[{name}]] for each entry")
    return tables


def parse_config(raw: dict[str, Any]) -> SimConfig:
    _known(raw, "the top level", _TOP_KEYS)
    settings_raw = _known(raw.get("settings", {}), "[settings]", _SETTINGS_KEYS)
    settings = Settings(
        time_scale=float(settings_raw.get("time_scale", DEFAULT_TIME_SCALE)),
        admin=settings_raw.get("admin"),
    )
    if settings.time_scale <= 0:
        raise ConfigError("settings.time_scale must be > 0")
    if settings.admin is not None:
        _require_loopback(settings.admin.rsplit(":", 1)[0], "settings.admin")

    domains = tuple(
        DomainConfig(name=str(d["name"]).lower(), trusts=tuple(str(t).lower() for t in d.get("trusts", [])))
        for d in (
            _known(entry, f"domain[{i}]", _DOMAIN_KEYS) for i, entry in enumerate(_tables(raw, "domain"))
        )
    )
    hosts = []
    seen: set[tuple[str, int]] = set()
    for i, entry in enumerate(_tables(raw, "host")):
        where = f"host[{i}]"
        h = _known(entry, where, _HOST_KEYS)
        for key, kind in (("vms", list), ("users", dict)):
            if not isinstance(h.get(key, kind()), kind):
                raise ConfigError(f"{where}.{key} must be {'a list of names' if kind is list else 'a table'}")
        fqdn = str(h.get("fqdn", ""))
        if fqdn.count(".") < 1:
            raise ConfigError(f"{where}.fqdn {fqdn!r} must be a fully qualified name like host1.contoso.com")
        address = str(h.get("address", ""))
        _require_loopback(address, f"{where}.address")
        https_listener = h.get("https_listener", True)
        if not isinstance(https_listener, bool):
            raise ConfigError(f"{where}.https_listener must be true or false")
        if not https_listener and h.get("winrm_http_port") is None:
            raise ConfigError(f"{where}: https_listener = false needs winrm_http_port (no listener at all)")
        host = HostConfig(
            fqdn=fqdn.lower(),
            address=address,
            winrm_port=int(h.get("winrm_port", 5986)),
            winrm_http_port=int(h["winrm_http_port"]) if h.get("winrm_http_port") is not None else None,
            https_listener=https_listener,
            users={str(k): str(v) for k, v in h.get("users", {"Administrator": "P@ssw0rd!"}).items()},
            vms=tuple(str(v) for v in h.get("vms", [])),
            os=str(h.get("os", "Windows Server 2022")),
        )
        for _, port in host.listeners:
            if (host.address, port) in seen:
                raise ConfigError(f"{where}: {host.address}:{port} is already used by another host")
            seen.add((host.address, port))
        hosts.append(host)
    names = [h.fqdn for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError("host fqdns must be unique")
    known = {d.name for d in domains}
    domains += tuple(DomainConfig(name=d) for d in sorted({h.domain for h in hosts} - known))
    return SimConfig(settings=settings, domains=domains, hosts=tuple(hosts))


def _require_loopback(address: str, where: str) -> None:
    try:
        ok = ipaddress.ip_address(address).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{where} {address!r} must be a loopback address (127.0.0.0/8)")
