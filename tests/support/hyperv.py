"""Shared helpers (no tests) of the Hyper-V conformance and replication tests: one real pypsrp session per
emulated host, and the host preparation steps of the scenario (README.md, "Why") done through the real
cmdlets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pypsrp.complex_objects import ObjectMeta
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.server import Emulator
from tests.support.hvsim_env import wsman_kwargs

REPLICATION_KEY = "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Virtualization\\Replication"
HOSTS_FILE = "C:\\Windows\\System32\\drivers\\etc\\hosts"
HTTPS_RULE = "VIRT-HVRHTTPSL-In-TCP-NoScope"
HTTP_RULE = "VIRT-HVRHTTPL-In-TCP-NoScope"
PFX_PASSWORD = "Pfx-P@ss-1"


@dataclass
class Outcome:
    """What one pipeline produced, as the client saw it."""

    output: list[Any]
    errors: list[Any]
    warnings: list[str]
    had_errors: bool
    statement: str = field(default="")

    @property
    def error(self) -> Any:
        assert len(self.errors) == 1, (
            f"{self.statement}: expected one error, got {[str(e) for e in self.errors]}"
        )
        return self.errors[0]


class HostSession:
    """A runspace pool on one emulated host over HTTPS + Basic, verified against the lab's WinRM CA."""

    def __init__(self, emulator: Emulator, fqdn: str) -> None:
        self.fqdn = fqdn
        self._wsman = WSMan(**wsman_kwargs(emulator, fqdn))
        self.pool = RunspacePool(self._wsman)
        self.pool.open()
        self._keys_exchanged = False

    def close(self) -> None:
        self.pool.close()
        self._wsman.close()

    def secure(self, text: str) -> Any:
        if not self._keys_exchanged:
            self.pool.exchange_keys()
            self._keys_exchanged = True
        return self.pool.serialize(text, ObjectMeta("SS"))

    def run(self, cmdlet: str, *switches: str, positional: tuple[Any, ...] = (), **params: Any) -> Outcome:
        """Run `cmdlet` with named parameters (`switches` are given without a value) and, when the test is
        about positional binding, unnamed `positional` arguments."""
        ps = PowerShell(self.pool)
        ps.add_cmdlet(cmdlet)
        for value in positional:
            ps.add_argument(value)
        for name in switches:
            ps.add_parameter(name)
        for name, value in params.items():
            ps.add_parameter(name, value)
        output = ps.invoke()
        warnings = [str(w.message) for w in ps.streams.warning]
        return Outcome(output, list(ps.streams.error), warnings, ps.had_errors, f"{cmdlet} on {self.fqdn}")

    def ok(self, cmdlet: str, *switches: str, positional: tuple[Any, ...] = (), **params: Any) -> list[Any]:
        """Run and require success (no error of any kind); returns the output."""
        outcome = self.run(cmdlet, *switches, positional=positional, **params)
        assert not outcome.had_errors and not outcome.errors, (
            f"{outcome.statement} failed: {[str(e) for e in outcome.errors]}"
        )
        return outcome.output


@contextlib.contextmanager
def sessions(emulator: Emulator, *fqdns: str) -> Iterator[dict[str, HostSession]]:
    opened: dict[str, HostSession] = {}
    try:
        for fqdn in fqdns:
            opened[fqdn] = HostSession(emulator, fqdn)
        yield opened
    finally:
        for session in opened.values():
            session.close()


def props(obj: Any) -> dict[str, Any]:
    """The adapted (.NET) properties of a deserialised object."""
    return dict(obj.adapted_properties)


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll `probe` until it returns a truthy value (the emulated clock moves on its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def replication_state(session: HostSession, vm: str) -> tuple[str, str]:
    rep = props(session.ok("Get-VMReplication", VMName=vm)[0])
    return str(rep["ReplicationState"]), str(rep["ReplicationHealth"])


# --- host preparation through the real cmdlets -------------------------------------------------------------


def upload(session: HostSession, path: str, data: bytes) -> None:
    session.ok("Set-Content", Path=path, Value=data, Encoding="Byte")


def import_pfx(session: HostSession, pfx: bytes, password: str = PFX_PASSWORD) -> str:
    """Upload a PKCS#12 file, import it into LocalMachine\\My with a SecureString password, delete the upload;
    returns the imported certificate's thumbprint."""
    path = "C:\\Windows\\Temp\\host.pfx"
    upload(session, path, pfx)
    out = session.ok(
        "Import-PfxCertificate",
        FilePath=path,
        CertStoreLocation="Cert:\\LocalMachine\\My",
        Password=session.secure(password),
    )
    session.ok("Remove-Item", Path=path)
    return str(props(out[0])["Thumbprint"])


def trust_root(session: HostSession, ca_pem: bytes) -> None:
    path = "C:\\Windows\\Temp\\root.cer"
    upload(session, path, ca_pem)
    session.ok("Import-Certificate", FilePath=path, CertStoreLocation="Cert:\\LocalMachine\\Root")
    session.ok("Remove-Item", Path=path)


def disable_revocation_check(session: HostSession) -> None:
    if not session.ok("Test-Path", Path=REPLICATION_KEY)[0]:
        session.ok("New-Item", Path=REPLICATION_KEY)
    session.ok(
        "New-ItemProperty",
        "Force",
        Path=REPLICATION_KEY,
        Name="DisableCertRevocationCheck",
        PropertyType="DWord",
        Value=1,
    )


def text(value: Any) -> str:
    """A string output: Get-Content lines carry note properties, so pypsrp hands them over as objects whose
    primitive value is the first entry of `property_sets`."""
    return value if isinstance(value, str) else str(value.property_sets[0])


def add_hosts_entry(session: HostSession, address: str, name: str) -> None:
    lines = [text(line) for line in session.ok("Get-Content", Path=HOSTS_FILE)]
    session.ok("Set-Content", Path=HOSTS_FILE, Value=[*lines, f"{address}\t{name}\t# hvsim test"])


def enable_rule(session: HostSession, name: str) -> None:
    session.ok("Enable-NetFirewallRule", Name=name)


def make_certificate_replica(session: HostSession, thumbprint: str, primary: str, storage: str) -> None:
    """Certificate-based replica server authorizing `primary`, with its HTTPS listener rule open."""
    _make_replica(
        session,
        primary,
        storage,
        HTTPS_RULE,
        AllowedAuthenticationType="Certificate",
        CertificateThumbprint=thumbprint,
    )


def make_kerberos_replica(session: HostSession, primary: str, storage: str) -> None:
    """Kerberos replica server authorizing `primary`, with its HTTP listener rule open."""
    _make_replica(session, primary, storage, HTTP_RULE, AllowedAuthenticationType="Kerberos")


def _make_replica(session: HostSession, primary: str, storage: str, rule: str, **authentication: str) -> None:
    session.ok(
        "Set-VMReplicationServer",
        "Force",
        ReplicationEnabled=True,
        **authentication,
        KerberosAuthenticationPort=80,
        CertificateAuthenticationPort=443,
    )
    session.ok(
        "New-VMReplicationAuthorizationEntry",
        AllowedPrimaryServer=primary,
        ReplicaStorageLocation=storage,
        TrustGroup="lab",
    )
    enable_rule(session, rule)
