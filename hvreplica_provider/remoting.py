"""PowerShell remoting for the providers: connection settings, one runspace pool per host and
credentials per process, cmdlet pipelines (never script text), typed errors, retry of transient faults.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import requests
from cryptography import x509
from pypsrp.exceptions import (
    AuthenticationError as PypsrpAuthenticationError,
)
from pypsrp.exceptions import (
    InvalidPipelineStateError,
    InvalidRunspacePoolStateError,
    WinRMError,
    WinRMTransportError,
    WSManFaultError,
)
from pypsrp.messages import Message
from pypsrp.powershell import Fragmenter, PowerShell, RunspacePool
from pypsrp.serializer import Serializer, TaggedValue
from pypsrp.wsman import WSMan
from urllib3.exceptions import NameResolutionError

from hvreplica_provider import pki
from hvreplica_provider.engine_values import normalise_ints
from hvreplica_provider.inputs import Transport, WinRMAuth

TRANSPORTS: tuple[str, ...] = get_args(Transport)
AUTH_METHODS: tuple[str, ...] = get_args(WinRMAuth)
DEFAULT_HTTPS_PORT = 5986
DEFAULT_HTTP_PORT = 5985
DEFAULT_OPERATION_TIMEOUT_SEC = 20
DEFAULT_READ_TIMEOUT_SEC = 30
DEFAULT_MAX_CONCURRENT_OPERATIONS = 3
DEFAULT_CONNECT_TIMEOUT_SEC = 10  # TCP connect and TLS handshake of one attempt
DEFAULT_RETRY_DEADLINE_SEC = 120  # no retry of a transient fault starts later than this after the first try

# WSMan fault codes after which the same request can succeed on a fresh pool.
WSMAN_TIMED_OUT = 0x80338029
WSMAN_UNKNOWN_SHELL = 0x8033805B  # the shell is gone: the service restarted or dropped the pool
WSMAN_NO_SYSTEM_RESOURCES = 0x800705AA  # an overloaded WinRM service
_TRANSIENT_FAULT_CODES = frozenset({WSMAN_TIMED_OUT, WSMAN_UNKNOWN_SHELL, WSMAN_NO_SYSTEM_RESOURCES})

# System.Management.Automation.ErrorCategory values used for classification.
_CAT_INVALID_ARGUMENT, _CAT_INVALID_DATA, _CAT_INVALID_OPERATION, _CAT_INVALID_TYPE = 5, 6, 7, 9
_CAT_METADATA, _CAT_NOT_FOUND, _CAT_SYNTAX, _CAT_PARSER, _CAT_PERMISSION = 10, 13, 16, 17, 18
_CAT_RESOURCE_BUSY, _CAT_RESOURCE_EXISTS, _CAT_SECURITY = 19, 20, 25
_CAT_AUTHENTICATION, _CAT_NOT_ENABLED = 28, 31
CATEGORY_INVALID_OPERATION = _CAT_INVALID_OPERATION
CATEGORY_OBJECT_NOT_FOUND = _CAT_NOT_FOUND
POWERSHELL_ENDPOINT = "Microsoft.PowerShell"  # the session configuration every pool opens


# ---------------------------------------------------------------------------------------------- errors


class RemoteError(Exception):
    """A remote operation failed. Carries the cmdlet, the FullyQualifiedErrorId and the remote message,
    with every secret parameter value scrubbed from the text."""

    def __init__(
        self, message: str, *, cmdlet: str = "", fq_error_id: str = "", category: int = 0, host: str = ""
    ) -> None:
        self.cmdlet = cmdlet
        self.fq_error_id = fq_error_id
        self.category = category
        self.host = host
        self.remote_message = message
        where = f" on {host}" if host else ""
        what = f"{cmdlet} failed{where}" if cmdlet else f"remote operation failed{where}"
        detail = f" [{fq_error_id}]" if fq_error_id else ""
        super().__init__(f"{what}: {message}{detail}")


class NotFound(RemoteError):
    """The object does not exist (ErrorCategory ObjectNotFound)."""


class InvalidState(RemoteError):
    """The object is not in a state that allows the operation (InvalidOperation, ResourceExists, ...)."""


class AccessDenied(RemoteError):
    """The account may not do this (PermissionDenied, SecurityError, HTTP 403)."""


class Authentication(RemoteError):
    """The host or its TLS certificate rejected the connection's credentials or trust settings."""


class Unreachable(RemoteError):
    """Nothing accepts connections at the endpoint (connection refused): not retried."""


class Transient(RemoteError):
    """A fault that may pass (connection reset, WSMan timeout, 5xx, restarted service); retried."""


class Validation(RemoteError):
    """The host refused a parameter value (InvalidArgument, InvalidData, ...)."""


_BY_CATEGORY: dict[int, type[RemoteError]] = {
    _CAT_NOT_FOUND: NotFound,
    _CAT_PERMISSION: AccessDenied,
    _CAT_SECURITY: AccessDenied,
    _CAT_AUTHENTICATION: Authentication,
    _CAT_INVALID_OPERATION: InvalidState,
    _CAT_RESOURCE_EXISTS: InvalidState,
    _CAT_RESOURCE_BUSY: InvalidState,
    _CAT_NOT_ENABLED: InvalidState,
    _CAT_INVALID_ARGUMENT: Validation,
    _CAT_INVALID_DATA: Validation,
    _CAT_INVALID_TYPE: Validation,
    _CAT_METADATA: Validation,
    _CAT_SYNTAX: Validation,
    _CAT_PARSER: Validation,
}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced, longest first so overlapping secrets vanish whole."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def error_from_record(record: Any, *, cmdlets: str, host: str, secrets: Iterable[str] = ()) -> RemoteError:
    """Typed exception for one PowerShell ErrorRecord as pypsrp deserialises it."""
    category = int(getattr(record, "category", 0) or 0)
    fq_error_id = str(getattr(record, "fq_error", "") or "")
    message = str(record) if str(record) else str(getattr(record, "message", "") or "")
    cmdlet = str(getattr(record, "command_name", "") or "") or _failing_cmdlet(fq_error_id, cmdlets)
    cls = _BY_CATEGORY.get(category, RemoteError)
    secrets = tuple(secrets)
    return cls(
        scrub(message, secrets),
        cmdlet=cmdlet,
        fq_error_id=scrub(fq_error_id, secrets),
        category=category,
        host=host,
    )


def _failing_cmdlet(fq_error_id: str, cmdlets: str) -> str:
    """The invocation's cmdlet that the error id's command class names (",...Commands.EnableVMReplication");
    all of the invocation's cmdlets when the id does not say."""
    command_class = fq_error_id.rsplit(",", 1)[-1].rsplit(".", 1)[-1].lower().removesuffix("command")
    for name in cmdlets.replace(" | ", "; ").split("; "):
        if command_class and name.replace("-", "").lower() == command_class:
            return name
    return cmdlets


def error_from_transport(exc: BaseException, conn: HostConnection, *, cmdlets: str) -> RemoteError | None:
    """Typed exception for a transport-level failure; None when it is not one we know (a bug: re-raise).
    The message names the endpoint, auth method and user (`conn.describe()`), not the invocation's cmdlets:
    nothing ran, and what to fix is the connection."""
    where = conn.describe()
    if isinstance(exc, PypsrpAuthenticationError):
        return Authentication(
            "the host rejected the credentials; check connection.username and connection.password "
            "(or the client certificate for certificate auth)",
            host=where,
        )
    if isinstance(exc, WSManFaultError):
        code = int(exc.code or 0)
        cls = Transient if code in _TRANSIENT_FAULT_CODES else RemoteError
        return cls(
            f"WSMan fault 0x{code:08X}: {exc.reason or exc.message}",
            cmdlet=cmdlets,
            fq_error_id=f"WSManFault,0x{code:08X}",
            host=where,
        )
    if isinstance(exc, WinRMTransportError):
        cls = Transient if int(exc.code) >= 500 else RemoteError
        if int(exc.code) == 403:
            cls = AccessDenied
        return cls(f"HTTP {exc.code} from the WinRM listener", fq_error_id=f"HTTP{exc.code}", host=where)
    if isinstance(exc, InvalidRunspacePoolStateError | InvalidPipelineStateError):
        # The host dropped the pool under this pipeline (a restarted service): the retry opens a new one.
        return Transient("the runspace pool was closed by the host", cmdlet=cmdlets, host=where)
    causes = list(_causes(exc))
    verification = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verification is not None or isinstance(exc, requests.exceptions.SSLError):
        return Authentication(_tls_problem(conn, verification), host=where)
    if any(isinstance(c, NameResolutionError | socket.gaierror) for c in causes):
        return RemoteError("the host name does not resolve; check connection.host", host=where)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        # Nothing listens there: waiting will not change that, so no retry (fail fast).
        return Unreachable(
            "connection refused: nothing listens on that port; check connection.host, connection.port and "
            "connection.transport, and that the host's WinRM listener is enabled"
            + (_NO_HTTPS_LISTENER if conn.transport == "https" else ""),
            host=where,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return Transient(
            f"no answer in time (connect_timeout_sec {conn.connect_timeout_sec}, read_timeout_sec "
            f"{conn.read_timeout_sec}); the host may be down or overloaded, or a firewall drops the traffic",
            host=where,
        )
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError):
        return Transient(f"connection problem: {exc.__class__.__name__}", host=where)
    return None


# A fresh Windows Server has only WinRM's HTTP listener; HTTPS needs one made with a certificate.
_NO_HTTPS_LISTENER = (
    ". A fresh Windows Server has only the HTTP listener (5985): on the host, create an HTTPS listener "
    "with a certificate for its name (New-Item -Path WSMan:\\localhost\\Listener -Transport HTTPS "
    "-Address * -CertificateThumbPrint <thumbprint> -Force) and allow TCP 5986 in its firewall, or "
    "connect with transport http, port 5985 and auth ntlm or negotiate, which encrypt every message "
    "(docs/real-hosts.md)"
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: requests and urllib3 nest the socket or TLS error in args, `reason` and
    __cause__/__context__."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]


# OpenSSL verify codes for a certificate that is fine but names another host (X509_V_ERR_HOSTNAME_MISMATCH,
# X509_V_ERR_IP_ADDRESS_MISMATCH), and for one whose issuer is not trusted.
_NAME_MISMATCH = frozenset({62, 64})
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})


def _tls_problem(conn: HostConnection, error: ssl.SSLCertVerificationError | None) -> str:
    """What failed in TLS verification of the WinRM listener and what to change."""
    code = error.verify_code if error is not None else None
    if code in _NAME_MISMATCH:
        names = _listener_names(conn)
        valid_for = f"it is valid for {', '.join(names)}" if names else "its names could not be read"
        return (
            f"the WinRM listener's certificate does not match the name {conn.host!r} in connection.host; "
            f"{valid_for}: connect with one of those names (add a hosts entry if it does not resolve), or "
            "give the listener a certificate for this name"
        )
    if code in _UNTRUSTED_ISSUER:
        anchor = "connection.ca_cert_pem" if conn.ca_cert_pem else "the system trust store (no ca_cert_pem)"
        return (
            f"the WinRM listener's certificate is not issued by a CA in {anchor}; set connection.ca_cert_pem "
            f"to the CA that issued it ({error.verify_message if error else ''})"
        )
    detail = error.verify_message if error is not None else "handshake failed"
    return f"TLS verification of the WinRM listener failed: {detail}"


def _listener_names(conn: HostConnection) -> list[str]:
    """The DNS names and addresses the listener's certificate is for, fetched without verification (only to
    say so in the error); empty when it cannot be fetched."""
    try:
        pem = ssl.get_server_certificate(
            (conn.host, conn.effective_port), timeout=conn.connect_timeout_sec
        )
        cert = x509.load_pem_x509_certificate(pem.encode())
    except (OSError, ValueError):
        return []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:  # without a SAN, TLS clients match the CN
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]


# ------------------------------------------------------------------------------------------ connection


def host_problem(host: object) -> str | None:
    """Why `host` is not a bare DNS name or IP address (what WSMan puts between `https://` and `:port`), or
    None. A scheme, port, path, fragment, zone id or whitespace would change where the credentials go."""
    if not isinstance(host, str) or not host:
        return "set host to the host's DNS name or IP address"
    bare = (
        "host must be a bare DNS name or IP address, without scheme, port, path or whitespace; put the "
        "port in connection.port and the scheme in connection.transport"
    )
    if "%" in host:  # an IPv6 zone id: text that ends up in the URL unchecked
        return bare
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(pki.is_dns_label(label) for label in labels):
        return bare
    return None

_CONNECTION_INTS = dict.fromkeys(
    (
        "port",
        "operation_timeout_sec",
        "read_timeout_sec",
        "max_concurrent_operations",
        "connect_timeout_sec",
        "retry_deadline_sec",
    ),
    int,
)
_PASSWORD_AUTH = ("negotiate", "ntlm", "basic", "credssp")  # the methods that need username and password
_CONNECTION_STRINGS = (
    "host", "transport", "auth", "username", "password", "ca_cert_pem", "client_cert_pem", "client_key_pem",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# The HostConnection fields that hold secrets: the resources mark them secret inputs.
CONNECTION_SECRET_FIELDS = ("password", "client_key_pem")


@dataclass(frozen=True)
class HostConnection:
    """How to reach one host over WinRM, as the providers parse a `HostConnectionArgs` input. Not part
    of any remote object."""

    host: str
    port: int | None = None  # 5986 for https, 5985 for http
    transport: str = "https"
    auth: str = "negotiate"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert_pem: str | None = None
    verify_tls: bool = True
    client_cert_pem: str | None = None
    client_key_pem: str | None = field(default=None, repr=False)
    operation_timeout_sec: int = DEFAULT_OPERATION_TIMEOUT_SEC
    read_timeout_sec: int = DEFAULT_READ_TIMEOUT_SEC
    max_concurrent_operations: int = DEFAULT_MAX_CONCURRENT_OPERATIONS
    connect_timeout_sec: int = DEFAULT_CONNECT_TIMEOUT_SEC
    retry_deadline_sec: int = DEFAULT_RETRY_DEADLINE_SEC

    @classmethod
    def from_input(cls, raw: Mapping[str, Any]) -> HostConnection:
        """Build from a provider input dict (numbers may arrive as floats; unknown keys are refused)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(str(k) for k in set(raw) - known)
        if unknown:
            raise ValueError(f"unknown connection setting(s) {unknown}; known: {sorted(known)}")
        values = normalise_ints({k: v for k, v in raw.items() if v is not None}, _CONNECTION_INTS)
        return cls(**values)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_HTTPS_PORT if self.transport == "https" else DEFAULT_HTTP_PORT

    @property
    def endpoint(self) -> str:
        """`https://host:port`, as the WinRM client addresses the listener."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.effective_port}"

    def describe(self) -> str:
        """Where and as whom, for error messages: `https://h:5986 (auth basic, user admin)`."""
        user = self.username or ("client certificate" if self.auth == "certificate" else "current logon")
        return f"{self.endpoint} (auth {self.auth}, user {user})"

    @property
    def pool_key(self) -> tuple[str, ...]:
        """What defines a WinRM session: endpoint, identity and trust settings. Timeouts and the concurrency
        bound do not: connections that differ only there share one pool (the first one's settings apply)."""
        session = (
            self.transport,
            self.password,
            self.ca_cert_pem,
            str(self.verify_tls),
            self.client_cert_pem,
            self.client_key_pem,
        )
        digest = hashlib.sha256("\0".join(p or "" for p in session).encode()).hexdigest()
        return (self.host.lower(), str(self.effective_port), (self.username or "").lower(), self.auth, digest)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.client_key_pem) if isinstance(s, str) and s)

    def problems(self, prefix: str = "connection") -> list[tuple[str, str]]:
        """(property, reason) for every invalid setting; reasons say what to change and never repeat a
        secret. Types are checked first: a value of the wrong type is reported once, and nothing else is
        examined until the types are right."""
        out: list[tuple[str, str]] = []

        def bad(prop: str, reason: str) -> None:
            out.append((f"{prefix}.{prop}", reason))

        for name in _CONNECTION_STRINGS:
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                bad(name, f"{name} must be a string")
        for name in _CONNECTION_INTS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                bad(name, f"{name} must be a whole number")
        if not isinstance(self.verify_tls, bool):
            bad("verify_tls", "verify_tls must be true or false (a boolean, not a number or a string)")
        if out:
            return out
        problem = host_problem(self.host)
        if problem:
            bad("host", problem)
        if self.transport not in TRANSPORTS:
            bad("transport", f"transport must be one of {list(TRANSPORTS)}")
        if self.auth not in AUTH_METHODS:
            bad("auth", f"auth must be one of {list(AUTH_METHODS)}")
        if self.port is not None and not 1 <= self.port <= 65535:
            bad("port", f"port must be between 1 and 65535, not {self.port}")
        if self.username is not None and (not self.username.strip() or _CONTROL.search(self.username)):
            bad("username", "username must be a non-empty name without control characters")
        if self.password == "":
            bad("password", "password is empty; give the account's password")
        if self.auth == "credssp" and importlib.util.find_spec("requests_credssp") is None:
            bad(
                "auth",
                "auth 'credssp' needs the requests-credssp package in the provider's virtualenv; "
                "install it or use 'negotiate'",
            )
        if self.auth == "basic" and self.transport == "http":
            bad(
                "auth",
                "basic auth over plain http sends the password in clear text; "
                "use transport 'https' or auth 'ntlm'/'negotiate' (message encryption)",
            )
        if self.auth == "certificate":
            if self.transport != "https":
                bad("transport", "certificate auth needs transport 'https'")
            if not self.client_cert_pem:
                bad("client_cert_pem", "certificate auth needs client_cert_pem (the client certificate, PEM)")
            if not self.client_key_pem:
                bad("client_key_pem", "certificate auth needs client_key_pem (its private key, PEM)")
        elif self.auth in _PASSWORD_AUTH and (not self.username or self.password is None):
            bad(
                "username" if not self.username else "password",
                f"auth {self.auth!r} needs username and password",
            )
        if self.ca_cert_pem:
            try:
                x509.load_pem_x509_certificates(self.ca_cert_pem.encode())
            except (ValueError, UnicodeEncodeError):
                bad("ca_cert_pem", "ca_cert_pem must hold one or more PEM certificates")
            if self.transport == "http":
                bad("ca_cert_pem", "ca_cert_pem only applies to transport 'https'")
        for name in (
            "operation_timeout_sec", "read_timeout_sec", "max_concurrent_operations", "connect_timeout_sec",
        ):
            if getattr(self, name) < 1:
                bad(name, f"{name} must be at least 1, not {getattr(self, name)}")
        if self.retry_deadline_sec < 0:
            bad("retry_deadline_sec", "retry_deadline_sec must be 0 (no retries) or more")
        if self.read_timeout_sec <= self.operation_timeout_sec:
            bad(
                "read_timeout_sec",
                "read_timeout_sec must be greater than operation_timeout_sec "
                "(the server holds a Receive for up to the operation timeout)",
            )
        return out

    def warnings(self, prefix: str = "connection") -> list[str]:
        if self.transport == "https" and self.verify_tls is False:
            return [
                f"{prefix}.verify_tls is false: the WinRM listener of {self.host} is not authenticated; "
                "set ca_cert_pem to its CA instead"
            ]
        return []


# --------------------------------------------------------------------------------------------- commands


class SecureText(str):
    """A string sent as a SecureString (encrypted with the session key) and scrubbed from errors."""

    def __repr__(self) -> str:
        return "SecureText('***')"


@dataclass(frozen=True)
class Cmd:
    """One cmdlet with named parameters, in the order given. A value of True on a switch sets it."""

    name: str
    parameters: tuple[tuple[str, Any], ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(str(v) for _, v in self.parameters if isinstance(v, SecureText))


def cmd(name: str, /, **parameters: Any) -> Cmd:
    """`cmd("Get-Item", Path=p)`; None values are left out so optional parameters stay unbound."""
    return Cmd(name, tuple((k, v) for k, v in parameters.items() if v is not None))


Statement = Sequence[Cmd]  # cmdlets piped into each other


@dataclass
class Result:
    """Output objects of all statements plus the non-terminating errors, already typed."""

    output: list[Any]
    errors: list[RemoteError]

    def raise_errors(self, *, allow: tuple[type[RemoteError], ...] = ()) -> None:
        """Raise the first non-terminating error that is not of an allowed type."""
        for err in self.errors:
            if not isinstance(err, allow):
                raise err


@dataclass(frozen=True)
class RetryPolicy:
    deadline_sec: float | None = None  # None: the connection's retry_deadline_sec
    initial_backoff_sec: float = 0.25
    max_backoff_sec: float = 8.0


DEFAULT_RETRY = RetryPolicy()  # what sessions use unless given their own


# ------------------------------------------------------------------------------------------ pool registry


class PrivateFiles:
    """Private files pypsrp needs as paths (CA bundle, client certificate and key).

    Where the OS has anonymous memory files (Linux memfd), they live there, reachable only through this
    process's /proc/self/fd: nothing is written to disk, so nothing is left behind however the process ends
    (the engine stops the provider server with SIGTERM; a crash or SIGKILL leaves nothing either). Elsewhere
    they are 0600 files in a 0700 temporary directory, removed by `cleanup`, at exit and on SIGTERM."""

    def __init__(self) -> None:
        self._dir: str | None = None
        self._fds: list[int] = []

    @property
    def directory(self) -> str | None:
        return self._dir

    def write(self, name: str, content: str) -> str:
        if _MEMORY_FILES:
            fd = os.memfd_create(f"hvreplica-{name}", os.MFD_CLOEXEC)
            with os.fdopen(os.dup(fd), "w") as fh:
                fh.write(content)
            self._fds.append(fd)
            return f"/proc/self/fd/{fd}"
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="hvreplica-")
            _remove_on_sigterm()
        path = os.path.join(self._dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        return path

    def cleanup(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


_MEMORY_FILES = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
_sigterm_hooked = False


def _remove_on_sigterm() -> None:
    """Without memory files: remove the private files on SIGTERM too (atexit does not run on a signal), then
    let the signal do what it did before. Signal handlers can only be installed from the main thread."""
    global _sigterm_hooked
    if _sigterm_hooked or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        REGISTRY.close_all()
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    _sigterm_hooked = True


class _LockedFragmenter(Fragmenter):
    """pypsrp's fragmenter (de)serialises with the pool's one Serializer, whose reference tables are reset
    for every message: concurrent pipelines on a pool must take turns here. HTTP round trips still overlap."""

    def __init__(self, max_size: int, serializer: Serializer, lock: threading.RLock) -> None:
        super().__init__(max_size, serializer)
        self._lock = lock

    def fragment(self, *args: Any, **kwargs: Any) -> list[bytes]:
        with self._lock:
            return super().fragment(*args, **kwargs)

    def fragment_multiple(self, *args: Any, **kwargs: Any) -> list[bytes]:
        with self._lock:
            return super().fragment_multiple(*args, **kwargs)

    def defragment(self, *args: Any, **kwargs: Any) -> list[Message]:
        with self._lock:
            return super().defragment(*args, **kwargs)


class _SharedPool(RunspacePool):
    """A RunspacePool on which several threads can run pipelines at once."""

    def __init__(self, connection: WSMan, files: PrivateFiles, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.files = files  # the CA bundle and client key its connection reads; removed when it closes
        self._fragmenter = _LockedFragmenter(connection.max_payload_size, self._serializer, threading.RLock())
        # Key exchange runs once; a second caller must wait for it rather than see it "in progress".
        self.key_lock = threading.Lock()


class _PoolEntry:
    """One session's pool: opened lazily, shared by every thread, replaced when the host drops it.

    A pool is closed only once no call is using it: `acquire` counts a user, `release` uncounts it, and a
    pool that was replaced (or the entry closed) goes when its last user is done."""

    def __init__(self, conn: HostConnection) -> None:
        self.conn = conn
        self.slots = threading.BoundedSemaphore(conn.max_concurrent_operations)
        self.lock = threading.Lock()  # guards the pool, its user counts and replacing it
        self.pool: _SharedPool | None = None
        self.users: dict[int, int] = {}  # id(pool) -> calls using it
        self.pools_opened = 0

    def _wsman(self, files: PrivateFiles) -> WSMan:
        c = self.conn
        kwargs: dict[str, Any] = {}
        cert_validation: bool | str = c.verify_tls
        if c.transport == "https" and c.verify_tls and c.ca_cert_pem:
            cert_validation = files.write("ca.pem", c.ca_cert_pem)
        if c.auth == "certificate":
            kwargs["certificate_pem"] = files.write("client.pem", c.client_cert_pem or "")
            kwargs["certificate_key_pem"] = files.write("client.key", c.client_key_pem or "")
        return WSMan(
            c.host,
            port=c.effective_port,
            username=c.username,
            password=c.password,
            ssl=c.transport == "https",
            auth=c.auth,
            cert_validation=cert_validation,
            operation_timeout=c.operation_timeout_sec,
            read_timeout=c.read_timeout_sec,
            connection_timeout=c.connect_timeout_sec,
            **kwargs,
        )

    def acquire(self) -> _SharedPool:
        with self.lock:
            if self.pool is None:
                files = PrivateFiles()
                pool = _SharedPool(
                    self._wsman(files),
                    files,
                    # Windows PowerShell 5.1's endpoint, named rather than left to the client's default: the
                    # provider needs its cmdlets (Set-Content -Encoding Byte exists only there), and a host
                    # whose default was changed to PowerShell 7 must not get these pipelines.
                    configuration_name=POWERSHELL_ENDPOINT,
                    min_runspaces=1,
                    max_runspaces=self.conn.max_concurrent_operations,
                )
                try:
                    pool.open()
                except BaseException:
                    _close_quietly(pool)
                    raise
                self.pool = pool
                self.pools_opened += 1
            self.users[id(self.pool)] = self.users.get(id(self.pool), 0) + 1
            return self.pool

    def release(self, pool: _SharedPool, *, dropped: bool = False) -> None:
        """A call is done with `pool`. `dropped`: the host no longer knows it; the next call opens a new one,
        and this one closes when its last user is done."""
        with self.lock:
            self.users[id(pool)] -= 1
            if dropped and self.pool is pool:
                self.pool = None
            idle = self.users[id(pool)] == 0 and self.pool is not pool
            if idle:
                del self.users[id(pool)]
        if idle:
            _close_quietly(pool)

    def close(self) -> None:
        """At exit: close the current pool (and with it its files)."""
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            _close_quietly(pool)


def _close_quietly(pool: _SharedPool) -> None:
    # Best effort: the server may already have forgotten the shell or the socket may be dead.
    with contextlib.suppress(WinRMError, requests.exceptions.RequestException, OSError):
        pool.close()
    with contextlib.suppress(WinRMError, requests.exceptions.RequestException, OSError):
        pool.connection.close()
    pool.files.cleanup()


class PoolRegistry:
    """Process-wide pools, one per session (`HostConnection.pool_key`). Thread-safe. Entries are never
    replaced: connections with other credentials get an entry of their own, so no call's pool is closed
    or has its files removed under it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], _PoolEntry] = {}

    def entry(self, conn: HostConnection) -> _PoolEntry:
        with self._lock:
            current = self._entries.get(conn.pool_key)
            if current is None:
                current = self._entries[conn.pool_key] = _PoolEntry(conn)
            return current

    def pools_opened(self) -> int:
        with self._lock:
            return sum(e.pools_opened for e in self._entries.values())

    def close_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            e.close()


REGISTRY = PoolRegistry()
atexit.register(REGISTRY.close_all)


# ---------------------------------------------------------------------------------------------- session


# Observers of every finished invocation: the host, the statements and the pipeline as pypsrp left it
# (the opt-in real-host suite records what Windows answered with one).
Observer = Callable[[str, Sequence[Statement], PowerShell], None]
_OBSERVERS: list[Observer] = []


@contextlib.contextmanager
def observe(observer: Observer) -> Iterator[None]:
    """Call `observer` after every invocation any Session runs while the block is active."""
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)


class Session:
    """Runs cmdlet statements on one host through the shared pool, retrying transient faults."""

    def __init__(
        self,
        conn: HostConnection,
        *,
        retry: RetryPolicy | None = None,
        registry: PoolRegistry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.conn = conn
        self.retry = retry or DEFAULT_RETRY
        self._registry = registry or REGISTRY
        self._sleep = sleep

    @property
    def host(self) -> str:
        return self.conn.host

    def run(self, *statements: Statement) -> Result:
        """Run the statements in one invocation; terminating errors raise, others are in `.errors`.

        Transient faults are retried with backoff, one line on stderr per retry, until the retry deadline:
        no retry starts after it (an attempt under way may end up to connect_timeout_sec later)."""
        names = "; ".join(" | ".join(c.name for c in st) for st in statements)
        secrets = self.conn.secrets + tuple(s for st in statements for c in st for s in c.secrets)
        budget = self.conn.retry_deadline_sec if self.retry.deadline_sec is None else self.retry.deadline_sec
        started = time.monotonic()
        delay = self.retry.initial_backoff_sec
        attempt = 0
        while True:
            attempt += 1
            entry = self._registry.entry(self.conn)
            try:
                with entry.slots:
                    return self._run_once(entry, statements, names, secrets)
            except Transient as exc:
                elapsed = time.monotonic() - started
                if elapsed + delay > budget:
                    raise Transient(
                        f"{exc.remote_message} (gave up after {attempt} attempt(s) in {elapsed:.0f}s; "
                        f"retry_deadline_sec is {budget:g})",
                        cmdlet=exc.cmdlet,
                        fq_error_id=exc.fq_error_id,
                        host=exc.host,
                    ) from None
                print(
                    f"hvreplica: {exc.host}: {exc.remote_message}; retry {attempt} in {delay:.2g}s "
                    f"({budget - elapsed:.0f}s of retry_deadline_sec left)",
                    file=sys.stderr,
                    flush=True,
                )
                self._sleep(delay)
                delay = min(delay * 2, self.retry.max_backoff_sec)

    def _run_once(
        self, entry: _PoolEntry, statements: Sequence[Statement], names: str, secrets: tuple[str, ...]
    ) -> Result:
        try:
            pool = entry.acquire()
        except (WinRMError, requests.exceptions.RequestException, ConnectionError) as exc:
            raise self._transport_error(exc, names) from None
        ps: PowerShell | None = None
        dropped = False
        try:
            if any(c.secrets for st in statements for c in st):
                with pool.key_lock:
                    pool.exchange_keys()
            ps = _build(pool, statements)
            ps.begin_invoke()
            ps.end_invoke()
        except (WinRMError, requests.exceptions.RequestException, ConnectionError) as exc:
            err = self._transport_error(exc, names)
            dropped = isinstance(err, Transient)
            raise err from None
        finally:
            if ps is not None:  # pypsrp never forgets finished pipelines itself
                pool.pipelines.pop(ps.id, None)
            entry.release(pool, dropped=dropped)
        for observer in tuple(_OBSERVERS):
            observer(self.host, statements, ps)
        errors = [
            error_from_record(r, cmdlets=names, host=self.host, secrets=secrets) for r in ps.streams.error
        ]
        if ps.had_errors:
            raise (
                errors[-1]
                if errors
                else RemoteError("pipeline failed without an error record", cmdlet=names, host=self.host)
            )
        return Result(output=list(ps.output), errors=errors)

    def _transport_error(self, exc: BaseException, names: str) -> RemoteError:
        err = error_from_transport(exc, self.conn, cmdlets=names)
        if err is None:
            raise exc
        return err


def _build(pool: RunspacePool, statements: Sequence[Statement]) -> PowerShell:
    ps = PowerShell(pool)
    for i, statement in enumerate(statements):
        if i:
            ps.add_statement()
        for command in statement:
            ps.add_cmdlet(command.name)
            for name, value in command.parameters:
                ps.add_parameter(name, _wire_value(value))
    return ps


def _wire_value(value: Any) -> Any:
    if isinstance(value, SecureText):
        return TaggedValue("SS", str(value))
    if isinstance(value, tuple):
        return list(value)
    return value


# ------------------------------------------------------------------------------------ object accessors


def prop(obj: Any, name: str, default: Any = None) -> Any:
    """A property of a deserialised PowerShell object: adapted (.NET) first, then extended (PS)."""
    for attr in ("adapted_properties", "extended_properties"):
        props = getattr(obj, attr, None)
        if props and name in props:
            return props[name]
    return default


def text(value: Any) -> str:
    """String form of a value, enums included (pypsrp gives them their ToString)."""
    if value is None:
        return ""
    return str(value)


def type_names(obj: Any) -> list[str]:
    return list(getattr(obj, "types", []) or [])


def is_type(obj: Any, type_name: str) -> bool:
    return any(t == type_name or t.startswith(type_name + "#") for t in type_names(obj))


def parse_connection(raw: Any, prefix: str) -> tuple[HostConnection | None, list[tuple[str, str]]]:
    """Validate a connection input for `check`: the connection (None when invalid) and (property, reason)."""
    if not isinstance(raw, Mapping):
        return None, [(prefix, f"{prefix} must be an object with at least 'host' (and credentials)")]
    try:
        conn = HostConnection.from_input(raw)
    except (TypeError, ValueError) as exc:
        return None, [(prefix, str(exc))]
    problems = conn.problems(prefix)
    return (None if problems else conn), problems


def connection_dict(conn: HostConnection) -> dict[str, Any]:
    """The normalised connection as a provider input (unset settings left out)."""
    return {k: getattr(conn, k) for k in conn.__dataclass_fields__ if getattr(conn, k) is not None}
