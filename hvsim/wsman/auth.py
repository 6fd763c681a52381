"""WinRM authentication: Basic and client certificates over HTTPS, NTLM/Negotiate with message encryption
over HTTP.

pyspnego's NTLM acceptor reads its user store from the file named by the process-global NTLM_USER_FILE
environment variable, both when the context is built and when the client's Authenticate message is checked.
Several emulated hosts (with different users and passwords) can live in one process, so every acceptor call
runs under one lock with NTLM_USER_FILE pointing at that host's own store, restored afterwards.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import spnego
from spnego._ntlm_raw.crypto import ntowfv1  # pyspnego 0.12.4 (pinned): the NT hash of a password

from hvsim.config import HostConfig

MUTUAL_CERTIFICATE_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
NEGOTIATE_SCHEMES = ("negotiate", "kerberos", "ntlm")

_NTLM_ENV_LOCK = threading.Lock()


def local_user(host: HostConfig, name: str) -> str | None:
    """The host's local account `name` refers to (`user`, `.\\user`, `HOST\\user`, `user@host`), if any."""
    account = name
    if "\\" in account:
        domain, account = account.split("\\", 1)
        if domain not in (".", "") and domain.upper() != host.computer_name:
            return None
    elif "@" in account:
        account, suffix = account.split("@", 1)
        if suffix.lower() not in (host.fqdn, host.computer_name.lower()):
            return None
    return next((u for u in host.users if u.lower() == account.lower()), None)


def check_basic(host: HostConfig, header: str) -> str | None:
    """The local user a `Basic ...` Authorization header authenticates, or None."""
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1].strip(), validate=True).decode("utf-8")
    except (IndexError, binascii.Error, UnicodeDecodeError):
        return None
    name, _, password = decoded.partition(":")
    user = local_user(host, name)
    if user is None or host.users[user] != password:
        return None
    return user


def write_ntlm_user_file(host: HostConfig, path: Path) -> None:
    """The host's local accounts in smbpasswd form (NT hashes, no clear-text passwords), mode 0600."""
    lines = []
    for user, password in host.users.items():
        nt_hash = ntowfv1(password).hex().upper()
        for qualified in (user, f"{host.computer_name}\\{user}", f".\\{user}"):
            lines.append(f"{qualified}:0:{'0' * 32}:{nt_hash}:[U]:LCT-00000000")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def _ntlm_users(path: Path) -> Iterator[None]:
    with _NTLM_ENV_LOCK:
        previous = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = str(path)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = previous


class NegotiateAcceptor:
    """The server side of one connection's Negotiate (NTLM) authentication and its message encryption."""

    def __init__(self, host: HostConfig, user_file: Path) -> None:
        self._host = host
        self._user_file = user_file
        with _ntlm_users(user_file):
            self.context = spnego.server(protocol="negotiate", options=spnego.NegotiateOptions.wrapping_winrm)
        self.user: str | None = None

    def step(self, token: bytes) -> bytes | None:
        """Process a client token; raises spnego errors when the credentials are wrong."""
        with _ntlm_users(self._user_file):
            out = self.context.step(token)
        if self.context.complete:
            principal = self.context.client_principal or ""
            self.user = local_user(self._host, principal)
            if self.user is None:
                raise PermissionError(f"{principal} is not a local account of {self._host.fqdn}")
        return out

    @property
    def complete(self) -> bool:
        return self.context.complete and self.user is not None


def parse_negotiate_header(value: str) -> bytes | None:
    """The token of `Negotiate <b64>` (or Kerberos/NTLM), None if the header is another scheme."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in NEGOTIATE_SCHEMES or not token:
        return None
    try:
        return base64.b64decode(token.strip(), validate=True)
    except binascii.Error:
        return None
