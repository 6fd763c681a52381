"""The emulated network between lab hosts: per-host name resolution and the replication connection check.

The certificate part is a real mutual TLS handshake pumped between two in-memory `ssl` objects (no sockets, no
ports), each side verifying the peer against its own emulated LocalMachine\\Root, so OpenSSL does the chain,
name, usage and revocation work that CryptoAPI does on Windows.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from hvsim.config import SimConfig
from hvsim.windows import HOSTS_FILE, HVR_HTTP_RULE, HVR_HTTPS_RULE, REPLICATION_KEY

if TYPE_CHECKING:
    from hvsim.hyperv import AuthorizationEntry
    from hvsim.windows import Host


class HostDirectory(Protocol):
    """What the network needs of the lab (`hvsim.lab.Lab`, which sits above this module): the hosts by
    FQDN and the configured domain trusts."""

    @property
    def hosts(self) -> Mapping[str, Host]: ...

    @property
    def config(self) -> SimConfig: ...


HTTP_LISTENER_RULE = HVR_HTTP_RULE
HTTPS_LISTENER_RULE = HVR_HTTPS_RULE

# Win32 / SSPI / CryptoAPI codes Hyper-V Replica puts in its messages.
ERROR_WINHTTP_TIMEOUT = 0x00002EE2
ERROR_WINHTTP_NAME_NOT_RESOLVED = 0x00002EE7
ERROR_WINHTTP_CANNOT_CONNECT = 0x00002EFD
ERROR_WINHTTP_SECURE_FAILURE = 0x00002F8F
SEC_E_TARGET_UNKNOWN = 0x80090303
SEC_E_ILLEGAL_MESSAGE = 0x80090326
CERT_E_EXPIRED = 0x800B0101
CERT_E_UNTRUSTEDROOT = 0x800B0109
CERT_E_CN_NO_MATCH = 0x800B010F
CERT_E_WRONG_USAGE = 0x800B0110
CRYPT_E_REVOCATION_OFFLINE = 0x80092013
CRYPT_E_NOT_FOUND = 0x80092004
E_ACCESSDENIED = 0x80070005
ERROR_PATH_NOT_FOUND = 0x80070003

# OpenSSL X509_V_ERR_* -> the CryptoAPI code Windows reports for the same finding.
_VERIFY_CODES: dict[int, tuple[int, str]] = {
    2: (CERT_E_UNTRUSTEDROOT, "the certificate chain is not trusted (issuer not in LocalMachine\\Root)"),
    3: (CRYPT_E_REVOCATION_OFFLINE, "the revocation server was offline (no reachable CRL)"),
    9: (CERT_E_EXPIRED, "the certificate is not yet valid"),
    10: (CERT_E_EXPIRED, "the certificate has expired"),
    18: (CERT_E_UNTRUSTEDROOT, "the certificate is self-signed and not trusted"),
    19: (CERT_E_UNTRUSTEDROOT, "the certificate chain ends in an untrusted root"),
    20: (CERT_E_UNTRUSTEDROOT, "the certificate chain is not trusted (issuer not in LocalMachine\\Root)"),
    21: (CERT_E_UNTRUSTEDROOT, "the certificate chain is not trusted (issuer not in LocalMachine\\Root)"),
    26: (CERT_E_WRONG_USAGE, "the certificate is not valid for the requested usage (EKU)"),
    62: (CERT_E_CN_NO_MATCH, "the certificate name does not match the server name"),
}


# The check a handshake failure belongs to, named as the cmdlet error reports it.
_TLS_CHECKS: dict[int, str] = {
    CERT_E_CN_NO_MATCH: "certificate name",
    CERT_E_UNTRUSTEDROOT: "certificate trust",
    CRYPT_E_REVOCATION_OFFLINE: "certificate revocation",
    CERT_E_WRONG_USAGE: "certificate usage (EKU)",
    CERT_E_EXPIRED: "certificate validity",
}


def hresult_text(code: int) -> str:
    return f"0x{code:08X}"


class ReplicationCheckError(Exception):
    """A failed replication connection check: `check` names what failed, `code` is the Win32/SSPI code."""

    def __init__(self, check: str, code: int, message: str) -> None:
        super().__init__(f"{message} ({hresult_text(code)})")
        self.check = check
        self.code = code
        self.detail = message


@dataclass(frozen=True)
class TlsEndpoint:
    """One side of the mutual TLS handshake, in PEM."""

    cert_pem: bytes  # the leaf, then any intermediates
    key_pem: bytes
    trusted_roots_pem: bytes  # the side's own LocalMachine\Root, concatenated
    check_revocation: bool


@dataclass(frozen=True)
class TlsFailure:
    side: str  # "primary" (verifying the replica's cert) or "replica" (verifying the primary's cert)
    verify_code: int
    code: int
    reason: str


def _context(endpoint: TlsEndpoint, server_side: bool) -> ssl.SSLContext:
    return _cached_context(
        endpoint.cert_pem,
        endpoint.key_pem,
        endpoint.trusted_roots_pem,
        endpoint.check_revocation,
        server_side,
    )


@functools.lru_cache(maxsize=64)
def _cached_context(
    cert_pem: bytes, key_pem: bytes, roots_pem: bytes, check_revocation: bool, server_side: bool
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Only the emulated Root store: never the machine's own trust store.
    if roots_pem.strip():
        ctx.load_verify_locations(cadata=roots_pem.decode("ascii"))
    if check_revocation:
        # No CRL is ever loaded, just as no CRL distribution point is reachable from the lab.
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    # ssl loads a certificate chain from files only: a private 0700 directory that lives for one call.
    with tempfile.TemporaryDirectory(prefix="hvsim-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def mutual_tls_handshake(primary: TlsEndpoint, replica: TlsEndpoint, server_name: str) -> TlsFailure | None:
    """Run a full TLS handshake: the primary connects to `server_name` with its client certificate and the
    replica's listener serves its own. Returns the first verification failure, or None when both accept."""
    client_ctx = _context(primary, server_side=False)
    server_ctx = _context(replica, server_side=True)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, client_out, server_hostname=server_name)
    server = server_ctx.wrap_bio(to_server, server_out, server_side=True)
    pending = {"primary": client, "replica": server}
    for _ in range(16):
        for side, obj in list(pending.items()):
            try:
                obj.do_handshake()
                del pending[side]
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                code, reason = _VERIFY_CODES.get(
                    exc.verify_code, (SEC_E_ILLEGAL_MESSAGE, exc.verify_message or "certificate rejected")
                )
                return TlsFailure(side, exc.verify_code, code, reason)
            except ssl.SSLError as exc:
                return TlsFailure(side, 0, SEC_E_ILLEGAL_MESSAGE, f"TLS handshake failed: {exc.reason}")
            _pump(client_out, to_server)
            _pump(server_out, to_client)
        if not pending:
            return None
    return TlsFailure("primary", 0, ERROR_WINHTTP_SECURE_FAILURE, "TLS handshake did not complete")


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    data = src.read()
    if data:
        dst.write(data)


# --- name resolution ----------------------------------------------------------------------------------------


def parse_hosts_file(text: str) -> dict[str, str]:
    """Name (lower-case) -> address, from hosts-file text: address, whitespace, names, optional `#` comment.
    The first line naming a host wins, as in the Windows resolver."""
    table: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        address, *names = fields
        for name in names:
            table.setdefault(name.lower().rstrip("."), address)
    return table


def resolve(lab: HostDirectory, source: Host, name: str) -> str:
    """The address `source` resolves `name` to: its hosts file first, then the DNS zone of its own domain only
    (a single-label name gets the host's primary DNS suffix). Raises ReplicationCheckError if unresolvable."""
    wanted = name.lower().rstrip(".")
    address = parse_hosts_file(_hosts_file_text(source)).get(wanted)
    if address is not None:
        return address
    domain = source.config.domain
    fqdn = wanted if "." in wanted else f"{wanted}.{domain}"
    target = lab.hosts.get(fqdn)
    if target is not None and target.config.domain == domain:
        return target.address
    raise ReplicationCheckError(
        "name resolution",
        ERROR_WINHTTP_NAME_NOT_RESOLVED,
        f"The server name '{name}' could not be resolved from '{source.fqdn}': it is not in that host's "
        f"hosts file ({HOSTS_FILE}) nor in the DNS zone of its own domain '{domain}'",
    )


def host_at(lab: HostDirectory, address: str, fqdn_hint: str) -> Host | None:
    """The lab host listening on `address` (the one named `fqdn_hint` when several share it)."""
    candidates = [h for h in lab.hosts.values() if h.address == address]
    return next((h for h in candidates if h.fqdn == fqdn_hint.lower()), candidates[0] if candidates else None)


# --- the replication connection check -----------------------------------------------------------------------

SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2"
NTE_NO_KEY = 0x8009000D


@dataclass(frozen=True)
class ReplicationTarget:
    """Where a connection check landed: the replica host and the authorization entry that admits the
    primary."""

    host: Host
    entry: AuthorizationEntry


def check_connection(
    lab: HostDirectory,
    primary: Host,
    replica_name: str,
    port: int,
    authentication_type: str,
    certificate_thumbprint: str,
    now: datetime,
) -> ReplicationTarget:
    """Everything the primary's VMMS and the replica's listener check before data flows, in the order a
    connection meets them; raises ReplicationCheckError naming the first failing check."""
    address = resolve(lab, primary, replica_name)
    replica = host_at(lab, address, replica_name)
    if replica is None:
        raise ReplicationCheckError(
            "connection",
            ERROR_WINHTTP_CANNOT_CONNECT,
            f"The connection with the server '{replica_name}' ({address}) could not be established: no host "
            "listens there",
        )
    _check_listener(replica, replica_name, port, authentication_type)
    if authentication_type == "Kerberos":
        _check_kerberos(lab, primary, replica, replica_name)
    else:
        _check_certificates(primary, replica, replica_name, certificate_thumbprint, now)
    entry = replica.hyperv.authorizing_entry(primary.fqdn)
    if entry is None:
        raise ReplicationCheckError(
            "authorization",
            E_ACCESSDENIED,
            f"The replica server '{replica_name}' did not authorize the primary server '{primary.fqdn}': no "
            "replication authorization entry on it matches that name (exact FQDN, '*.suffix' or '*')",
        )
    if not is_absolute_windows_path(entry.replica_storage_location):
        raise ReplicationCheckError(
            "storage location",
            ERROR_PATH_NOT_FOUND,
            f"The replica storage location '{entry.replica_storage_location}' of the authorization entry "
            f"'{entry.allowed_primary_server}' on '{replica_name}' is not an absolute path",
        )
    return ReplicationTarget(replica, entry)


def _check_listener(replica: Host, replica_name: str, port: int, authentication_type: str) -> None:
    server = replica.hyperv.server
    rule = HTTPS_LISTENER_RULE if authentication_type == "Certificate" else HTTP_LISTENER_RULE
    listener_port = server.certificate_port if authentication_type == "Certificate" else server.kerberos_port
    # A blocked port drops packets: the primary times out before it learns whether anything listens.
    if not replica.firewall.port_open(port):
        raise ReplicationCheckError(
            "firewall",
            ERROR_WINHTTP_TIMEOUT,
            f"The connection to '{replica_name}' on TCP port {port} timed out: the replica's firewall has no "
            f"enabled inbound rule for it (enable {rule} for the default port, or add a rule for port "
            f"{port})",
        )
    if not server.replication_enabled:
        reason = (
            "it is not configured as a replica server (Set-VMReplicationServer -ReplicationEnabled $true)"
        )
    elif not server.accepts(authentication_type):
        reason = f"its replica server does not accept {authentication_type} authentication"
    elif port != listener_port:
        reason = f"its {authentication_type} listener is on port {listener_port}, not {port}"
    else:
        return
    raise ReplicationCheckError(
        "replica server settings",
        ERROR_WINHTTP_CANNOT_CONNECT,
        f"The connection with the server '{replica_name}' on port {port} could not be established: {reason}",
    )


def _check_kerberos(lab: HostDirectory, primary: Host, replica: Host, replica_name: str) -> None:
    if not lab.config.trusted(primary.config.domain, replica.config.domain):
        raise ReplicationCheckError(
            "Kerberos authentication",
            SEC_E_TARGET_UNKNOWN,
            f"Kerberos authentication to '{replica_name}' failed: the specified target is unknown or "
            f"unreachable; domain '{primary.config.domain}' has no trust with '{replica.config.domain}' (use "
            "certificate authentication between untrusted domains)",
        )


def _check_certificates(
    primary: Host, replica: Host, replica_name: str, thumbprint: str, now: datetime
) -> None:
    primary_pair = _own_certificate(primary, thumbprint, "primary", now)
    server_thumbprint = replica.hyperv.server.certificate_thumbprint
    replica_pair = _own_certificate(replica, server_thumbprint, "replica", now)
    _require_name(primary_pair[0], primary.fqdn, "primary")
    failure = mutual_tls_handshake(
        TlsEndpoint(
            primary_pair[1], primary_pair[2], _root_store_pem(primary), not _revocation_disabled(primary)
        ),
        TlsEndpoint(
            replica_pair[1], replica_pair[2], _root_store_pem(replica), not _revocation_disabled(replica)
        ),
        replica_name,
    )
    if failure is None:
        return
    if failure.side == "primary":
        who = f"the replica server's certificate ({server_thumbprint}) as verified by '{primary.fqdn}'"
    else:
        who = f"the primary server's certificate ({thumbprint}) as verified by the replica '{replica.fqdn}'"
    fix = {
        CRYPT_E_REVOCATION_OFFLINE: "; set DisableCertRevocationCheck=1 under HKLM:\\SOFTWARE\\Microsoft\\"
        "Windows NT\\CurrentVersion\\Virtualization\\Replication on the verifying host",
        CERT_E_UNTRUSTEDROOT: "; import the issuing CA into LocalMachine\\Root on the verifying host",
        CERT_E_CN_NO_MATCH: f"; the certificate must name '{replica_name}' (CN or SAN)",
    }.get(failure.code, "")
    raise ReplicationCheckError(
        _TLS_CHECKS.get(failure.code, "TLS handshake"),
        failure.code,
        f"The mutual TLS authentication with '{replica_name}' failed: {who}: {failure.reason}{fix}",
    )


def _own_certificate(
    host: Host, thumbprint: str, role: str, now: datetime
) -> tuple[x509.Certificate, bytes, bytes]:
    """The certificate, chain PEM and key PEM a side presents, after the checks Hyper-V makes on its own
    certificate."""
    found = _my_certificate(host, thumbprint)
    check = f"{role} certificate"
    if found is None:
        raise ReplicationCheckError(
            check,
            CRYPT_E_NOT_FOUND,
            f"The {role} server '{host.fqdn}' has no certificate with thumbprint '{thumbprint}' in "
            "Cert:\\LocalMachine\\My",
        )
    cert, key_pem = found
    if key_pem is None:
        raise ReplicationCheckError(
            check,
            NTE_NO_KEY,
            f"The certificate '{thumbprint}' of the {role} server '{host.fqdn}' has no private key",
        )
    if not {SERVER_AUTH_OID, CLIENT_AUTH_OID} <= _ekus(cert):
        raise ReplicationCheckError(
            f"{check} usage (EKU)",
            CERT_E_WRONG_USAGE,
            f"The certificate '{thumbprint}' of the {role} server '{host.fqdn}' must carry both the Server "
            "Authentication and the Client Authentication enhanced key usages",
        )
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ReplicationCheckError(
            f"{check} validity",
            CERT_E_EXPIRED,
            f"The certificate '{thumbprint}' of the {role} server '{host.fqdn}' is outside its validity "
            f"period ({cert.not_valid_before_utc.isoformat()} - {cert.not_valid_after_utc.isoformat()}, host "
            f"time {now.isoformat(timespec='seconds')})",
        )
    # Like schannel, send the intermediates this host holds (LocalMachine\\CA) after the leaf.
    chain = cert.public_bytes(serialization.Encoding.PEM) + host.certificates.pem_bundle("CA")
    return cert, chain, key_pem


def _require_name(cert: x509.Certificate, fqdn: str, role: str) -> None:
    if fqdn.lower() not in {n.lower() for n in certificate_names(cert)}:
        raise ReplicationCheckError(
            f"{role} certificate name",
            CERT_E_CN_NO_MATCH,
            f"The certificate of the {role} server does not name '{fqdn}' in its subject CN or DNS SANs",
        )


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS SANs, or the subject CN when there are none (the rule both CryptoAPI and OpenSSL apply)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if names:
        return names
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _ekus(cert: x509.Certificate) -> set[str]:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    return {oid.dotted_string for oid in usages}


def is_absolute_windows_path(path: str) -> bool:
    return bool(re.match(r"^[A-Za-z]:\\", path) or path.startswith("\\\\"))


# --- the Windows model facts the checks read ----------------------------------------------------------------


def _hosts_file_text(host: Host) -> str:
    return host.files.read_text(HOSTS_FILE) or ""


def _my_certificate(host: Host, thumbprint: str) -> tuple[x509.Certificate, bytes | None] | None:
    stored = host.certificates.get("My", normalize_thumbprint(thumbprint)) if thumbprint else None
    return (stored.cert, stored.key_pem) if stored else None


def _root_store_pem(host: Host) -> bytes:
    return host.certificates.pem_bundle("Root")


def _revocation_disabled(host: Host) -> bool:
    return host.registry.dword(REPLICATION_KEY, "DisableCertRevocationCheck") == 1


def normalize_thumbprint(value: str) -> str:
    """Upper-case hex without the spaces or invisible characters an MMC copy carries."""
    return re.sub(r"[^0-9A-Fa-f]", "", value).upper()
