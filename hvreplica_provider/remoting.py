"""PowerShell remoting for the providers: connection settings, one runspace pool per host and
credentials per process, cmdlet pipelines (never script text), typed errors, retry of transient faults.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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

from hvreplica_provider.engine_values import normalise_ints
from hvreplica_provider.inputs import Transport, WinRMAuth

TRANSPORTS: tuple[str, ...] = get_args(Transport)
AUTH_METHODS: tuple[str, ...] = get_args(WinRMAuth)
DEFAULT_HTTPS_PORT = 5986
DEFAULT_HTTP_PORT = 5985
DEFAULT_OPERATION_TIMEOUT_SEC = 20
DEFAULT_READ_TIMEOUT_SEC = 30
DEFAULT_MAX_CONCURRENT_OPERATIONS = 3

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


def error_from_transport(exc: BaseException, *, cmdlets: str, host: str) -> RemoteError | None:
    """Typed exception for a transport-level failure; None when it is not one we know (a bug: re-raise)."""
    if isinstance(exc, PypsrpAuthenticationError):
        return Authentication(
            "the host rejected the credentials; check connection.username and connection.password "
            "(or the client certificate for certificate auth)",
            cmdlet=cmdlets,
            host=host,
        )
    if isinstance(exc, WSManFaultError):
        code = int(exc.code or 0)
        cls = Transient if code in _TRANSIENT_FAULT_CODES else RemoteError
        return cls(
            f"WSMan fault 0x{code:08X}: {exc.reason or exc.message}",
            cmdlet=cmdlets,
            fq_error_id=f"WSManFault,0x{code:08X}",
            host=host,
        )
    if isinstance(exc, WinRMTransportError):
        cls = Transient if int(exc.code) >= 500 else RemoteError
        if int(exc.code) == 403:
            cls = AccessDenied
        return cls(
            f"HTTP {exc.code} from the WinRM listener",
            cmdlet=cmdlets,
            fq_error_id=f"HTTP{exc.code}",
            host=host,
        )
    if isinstance(exc, InvalidRunspacePoolStateError | InvalidPipelineStateError):
        # Another thread replaced the pool this pipeline was using: the retry opens on the new one.
        return Transient("the runspace pool was closed while in use", cmdlet=cmdlets, host=host)
    if isinstance(exc, requests.exceptions.SSLError):
        return Authentication(
            "TLS verification of the WinRM listener failed; set connection.ca_cert_pem to the CA that "
            f"issued its certificate ({exc.__class__.__name__})",
            cmdlet=cmdlets,
            host=host,
        )
    if isinstance(getattr(exc.args[0] if exc.args else None, "reason", None), NameResolutionError):
        return RemoteError("the host name does not resolve; check connection.host", cmdlet=cmdlets, host=host)
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | ConnectionError):
        return Transient(f"connection problem: {exc.__class__.__name__}", cmdlet=cmdlets, host=host)
    return None


# ------------------------------------------------------------------------------------------ connection

_CONNECTION_INTS = dict.fromkeys(
    ("port", "operation_timeout_sec", "read_timeout_sec", "max_concurrent_operations"), int
)


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

    @classmethod
    def from_input(cls, raw: Mapping[str, Any]) -> HostConnection:
        """Build from a provider input dict (numbers may arrive as floats; unknown keys are refused)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
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
    def pool_key(self) -> tuple[str, int, str, str]:
        return (self.host.lower(), self.effective_port, (self.username or "").lower(), self.auth)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.client_key_pem) if s)

    def credential_fingerprint(self) -> str:
        """Digest of everything that shapes the pool besides its key: a change re-creates the pool."""
        parts = (
            self.password,
            self.ca_cert_pem,
            str(self.verify_tls),
            self.client_cert_pem,
            self.client_key_pem,
            self.transport,
            str(self.operation_timeout_sec),
            str(self.read_timeout_sec),
            str(self.max_concurrent_operations),
        )
        return hashlib.sha256("\0".join(p or "" for p in parts).encode()).hexdigest()

    def problems(self, prefix: str = "connection") -> list[tuple[str, str]]:
        """(property, reason) for every invalid setting; reasons say what to change."""
        out: list[tuple[str, str]] = []

        def bad(prop: str, reason: str) -> None:
            out.append((f"{prefix}.{prop}", reason))

        if not isinstance(self.host, str) or not self.host.strip():
            bad("host", "set host to the host's DNS name or IP address")
        if self.transport not in TRANSPORTS:
            bad("transport", f"transport must be one of {list(TRANSPORTS)}, not {self.transport!r}")
        if self.auth not in AUTH_METHODS:
            bad("auth", f"auth must be one of {list(AUTH_METHODS)}, not {self.auth!r}")
        if not isinstance(self.port, int | None) or (self.port is not None and not 1 <= self.port <= 65535):
            bad("port", f"port must be an integer between 1 and 65535, not {self.port!r}")
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
        elif self.auth != "kerberos" and (not self.username or self.password is None):
            bad(
                "username" if not self.username else "password",
                f"auth {self.auth!r} needs username and password",
            )
        if self.ca_cert_pem:
            try:
                x509.load_pem_x509_certificates(self.ca_cert_pem.encode())
            except ValueError:
                bad("ca_cert_pem", "ca_cert_pem must hold one or more PEM certificates")
            if self.transport == "http":
                bad("ca_cert_pem", "ca_cert_pem only applies to transport 'https'")
        for name in ("operation_timeout_sec", "read_timeout_sec", "max_concurrent_operations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                bad(name, f"{name} must be a positive integer, not {value!r}")
        if (
            isinstance(self.operation_timeout_sec, int)
            and isinstance(self.read_timeout_sec, int)
            and self.read_timeout_sec <= self.operation_timeout_sec
        ):
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
    deadline_sec: float = 120.0
    initial_backoff_sec: float = 0.25
    max_backoff_sec: float = 8.0


DEFAULT_RETRY = RetryPolicy()  # what sessions use unless given their own


# ------------------------------------------------------------------------------------------ pool registry


class PrivateFiles:
    """Private files pypsrp needs as paths (CA bundle, client cert/key), 0600 in a 0700 directory."""

    def __init__(self) -> None:
        self._dir: str | None = None

    @property
    def directory(self) -> str | None:
        return self._dir

    def write(self, name: str, content: str) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="hvreplica-")
        path = os.path.join(self._dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        return path

    def cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


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

    def __init__(self, connection: WSMan, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._fragmenter = _LockedFragmenter(connection.max_payload_size, self._serializer, threading.RLock())
        # Key exchange runs once; a second caller must wait for it rather than see it "in progress".
        self.key_lock = threading.Lock()


class _PoolEntry:
    """One host's pool: opened lazily, shared by every thread, replaced when the host drops it."""

    def __init__(self, conn: HostConnection) -> None:
        self.conn = conn
        self.fingerprint = conn.credential_fingerprint()
        self.slots = threading.BoundedSemaphore(conn.max_concurrent_operations)
        self.lock = threading.Lock()  # guards opening and replacing the pool
        self.pool: _SharedPool | None = None
        self.pools_opened = 0
        self.files = PrivateFiles()

    def _wsman(self) -> WSMan:
        c = self.conn
        kwargs: dict[str, Any] = {}
        cert_validation: bool | str = bool(c.verify_tls)
        if c.transport == "https" and c.verify_tls and c.ca_cert_pem:
            cert_validation = self.files.write("ca.pem", c.ca_cert_pem)
        if c.auth == "certificate":
            kwargs["certificate_pem"] = self.files.write("client.pem", c.client_cert_pem or "")
            kwargs["certificate_key_pem"] = self.files.write("client.key", c.client_key_pem or "")
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
            connection_timeout=min(c.read_timeout_sec, 30),
            **kwargs,
        )

    def acquire(self) -> _SharedPool:
        with self.lock:
            if self.pool is None:
                pool = _SharedPool(
                    self._wsman(),
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
            return self.pool

    def discard(self, pool: RunspacePool) -> None:
        """Forget a pool the host no longer knows; the next call opens a new one."""
        with self.lock:
            if self.pool is pool:
                self.pool = None
        _close_quietly(pool)

    def close(self) -> None:
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            _close_quietly(pool)
        self.files.cleanup()


def _close_quietly(pool: RunspacePool) -> None:
    # Best effort: the server may already have forgotten the shell or the socket may be dead.
    with contextlib.suppress(WinRMError, requests.exceptions.RequestException, OSError):
        pool.close()
    with contextlib.suppress(WinRMError, requests.exceptions.RequestException, OSError):
        pool.connection.close()


class PoolRegistry:
    """Process-wide pools keyed by (host, port, user, auth). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int, str, str], _PoolEntry] = {}
        self._retired_opened = 0  # pools opened by entries replaced since

    def entry(self, conn: HostConnection) -> _PoolEntry:
        stale: _PoolEntry | None = None
        with self._lock:
            current = self._entries.get(conn.pool_key)
            if current is not None and current.fingerprint == conn.credential_fingerprint():
                return current
            stale, current = current, _PoolEntry(conn)
            self._entries[conn.pool_key] = current
            self._retired_opened += stale.pools_opened if stale else 0
        if stale is not None:  # credentials or settings changed: never reuse a pool opened with old ones
            stale.close()
        return current

    def pools_opened(self) -> int:
        with self._lock:
            return self._retired_opened + sum(e.pools_opened for e in self._entries.values())

    def close_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            e.close()


REGISTRY = PoolRegistry()
atexit.register(REGISTRY.close_all)


# ---------------------------------------------------------------------------------------------- session


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
        """Run the statements in one invocation; terminating errors raise, others are in `.errors`."""
        names = "; ".join(" | ".join(c.name for c in st) for st in statements)
        secrets = self.conn.secrets + tuple(s for st in statements for c in st for s in c.secrets)
        deadline = time.monotonic() + self.retry.deadline_sec
        delay = self.retry.initial_backoff_sec
        while True:
            entry = self._registry.entry(self.conn)
            try:
                with entry.slots:
                    return self._run_once(entry, statements, names, secrets)
            except Transient as exc:
                if time.monotonic() + delay > deadline:
                    raise Transient(
                        f"{exc.remote_message} (gave up after {self.retry.deadline_sec:g}s of retries)",
                        cmdlet=exc.cmdlet,
                        fq_error_id=exc.fq_error_id,
                        host=exc.host,
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, self.retry.max_backoff_sec)

    def _run_once(
        self, entry: _PoolEntry, statements: Sequence[Statement], names: str, secrets: tuple[str, ...]
    ) -> Result:
        pool: _SharedPool | None = None
        ps: PowerShell | None = None
        try:
            pool = entry.acquire()
            if any(c.secrets for st in statements for c in st):
                with pool.key_lock:
                    pool.exchange_keys()
            ps = _build(pool, statements)
            ps.begin_invoke()
            ps.end_invoke()
        except (WinRMError, requests.exceptions.RequestException, ConnectionError) as exc:
            err = error_from_transport(exc, cmdlets=names, host=self.host)
            if err is None:
                raise
            if isinstance(err, Transient) and pool is not None:
                entry.discard(pool)
            raise err from None
        finally:
            if pool is not None and ps is not None:  # pypsrp never forgets finished pipelines itself
                pool.pipelines.pop(ps.id, None)
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
