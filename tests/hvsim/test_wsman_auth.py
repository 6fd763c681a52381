"""WinRM authentication against hvsim with the real pypsrp client: HTTPS Basic and certificate, HTTP
NTLM/Negotiate with message encryption, Basic over HTTP refused, wrong credentials rejected."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pypsrp.exceptions import AuthenticationError, WinRMTransportError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.listener_tls import client_certificate_user, issue_client_certificate
from hvsim.server import Emulator
from tests.support.certs import make_host_cert
from tests.support.hvsim_env import host, lab_config, running_lab, wsman_kwargs

HV1 = "hv1.contoso.com"
HV2 = "hv2.fabrikam.com"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    config = lab_config(
        host(HV1, "127.31.0.11", http=True, users={"Administrator": "P@ssw0rd!", "operator": "0per@tor"}),
        host(HV2, "127.31.0.12", http=True, users={"Administrator": "Other-Pa55"}),
    )
    with running_lab(config) as emulator:
        yield emulator


def _open_and_fail_unknown(kwargs: dict) -> str:
    """Open a pool and run an unknown command: proves the whole PSRP exchange worked under this auth."""
    with WSMan(**kwargs) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-HvsimAuthProbe")
        ps.invoke()
        assert ps.had_errors
        return str(ps.streams.error[0])


def test_https_basic(emu: Emulator) -> None:
    assert "Get-HvsimAuthProbe" in _open_and_fail_unknown(wsman_kwargs(emu, HV1))


def test_https_basic_second_local_user_and_qualified_names(emu: Emulator) -> None:
    for name in ("operator", "HV1\\operator", ".\\operator"):
        _open_and_fail_unknown(wsman_kwargs(emu, HV1, username=name, password="0per@tor"))


@pytest.mark.parametrize(
    ("username", "password"),
    [("Administrator", "wrong"), ("nobody", "P@ssw0rd!"), ("HV2\\Administrator", "P@ssw0rd!")],
)
def test_https_basic_wrong_credentials(emu: Emulator, username: str, password: str) -> None:
    with pytest.raises(AuthenticationError):
        _open_and_fail_unknown(wsman_kwargs(emu, HV1, username=username, password=password))


def test_https_listener_certificate_names_fqdn_and_address(emu: Emulator) -> None:
    pem = ssl.get_server_certificate(("127.31.0.11", emu.listener_port(HV1)))
    ctx = ssl.create_default_context(cafile=str(emu.ca_pem_path))
    # Verification by FQDN (SAN DNS) and by address (SAN IP) both succeed against the state CA.
    for name in (HV1, "127.31.0.11"):
        with (
            socket.create_connection(("127.31.0.11", emu.listener_port(HV1))) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.getpeercert() is not None
    assert "BEGIN CERTIFICATE" in pem


def test_certificate_auth_maps_upn_to_local_user(emu: Emulator, tmp_path: Path) -> None:
    paths = issue_client_certificate(emu.state_dir, "operator", tmp_path / "op.pem", tmp_path / "op.key")
    assert (paths.key.stat().st_mode & 0o777) == 0o600
    kwargs = wsman_kwargs(
        emu, HV1, auth="certificate", certificate_pem=str(paths.cert), certificate_key_pem=str(paths.key)
    )
    _open_and_fail_unknown(kwargs)


def test_certificate_auth_unknown_user_rejected(emu: Emulator, tmp_path: Path) -> None:
    paths = issue_client_certificate(emu.state_dir, "mallory", tmp_path / "m.pem", tmp_path / "m.key")
    kwargs = wsman_kwargs(
        emu, HV1, auth="certificate", certificate_pem=str(paths.cert), certificate_key_pem=str(paths.key)
    )
    with pytest.raises(AuthenticationError):
        _open_and_fail_unknown(kwargs)


def test_certificate_from_another_ca_fails_the_handshake(emu: Emulator, tmp_path: Path) -> None:
    other_state = tmp_path / "other-state"
    paths = issue_client_certificate(other_state, "operator", tmp_path / "o.pem", tmp_path / "o.key")
    kwargs = wsman_kwargs(
        emu, HV1, auth="certificate", certificate_pem=str(paths.cert), certificate_key_pem=str(paths.key)
    )
    with pytest.raises(requests.exceptions.ConnectionError):
        _open_and_fail_unknown(kwargs)


def test_client_certificate_user_reads_upn_then_cn(emu: Emulator, tmp_path: Path) -> None:
    paths = issue_client_certificate(
        emu.state_dir, "operator", tmp_path / "c.pem", tmp_path / "c.key", "contoso"
    )
    der = x509.load_pem_x509_certificate(paths.cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert client_certificate_user(der) == "operator"  # from the UPN SAN operator@contoso

    cn_only = make_host_cert(None, "cn-only-user", dns_names=()).cert  # no SAN: the subject CN names the user
    assert client_certificate_user(cn_only.public_bytes(serialization.Encoding.DER)) == "cn-only-user"


@pytest.mark.parametrize("auth", ["ntlm", "negotiate"])
def test_http_ntlm_and_negotiate_with_message_encryption(emu: Emulator, auth: str) -> None:
    message = _open_and_fail_unknown(wsman_kwargs(emu, HV1, auth=auth))
    assert "is not recognized" in message


@pytest.mark.parametrize("auth", ["ntlm", "negotiate"])
def test_http_ntlm_wrong_password(emu: Emulator, auth: str) -> None:
    with pytest.raises(AuthenticationError):
        _open_and_fail_unknown(wsman_kwargs(emu, HV1, auth=auth, password="not-it"))


def test_ntlm_users_are_per_host_in_one_process(emu: Emulator) -> None:
    # Both hosts have an Administrator with a different password: each host accepts only its own.
    _open_and_fail_unknown(wsman_kwargs(emu, HV1, auth="ntlm"))
    _open_and_fail_unknown(wsman_kwargs(emu, HV2, auth="ntlm"))
    with pytest.raises(AuthenticationError):
        _open_and_fail_unknown(wsman_kwargs(emu, HV2, auth="ntlm", password="P@ssw0rd!"))
    with pytest.raises(AuthenticationError):
        _open_and_fail_unknown(wsman_kwargs(emu, HV1, auth="ntlm", password="Other-Pa55"))


def test_basic_over_http_refused_like_windows(emu: Emulator) -> None:
    kwargs = wsman_kwargs(emu, HV1, auth="ntlm")
    kwargs.update(auth="basic", encryption="never")
    with pytest.raises(AuthenticationError):
        _open_and_fail_unknown(kwargs)
    # The challenge offers only Negotiate and Kerberos, as a default Windows host does (Basic disabled).
    url = f"http://127.31.0.11:{emu.listener_port(HV1, 'http')}/wsman"
    reply = requests.post(url, data=b"<x/>", auth=("Administrator", "P@ssw0rd!"), timeout=10)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Negotiate, Kerberos"


def test_unencrypted_soap_after_ntlm_is_refused(emu: Emulator) -> None:
    kwargs = wsman_kwargs(emu, HV1, auth="ntlm", encryption="never")
    with pytest.raises(WinRMTransportError) as info:
        _open_and_fail_unknown(kwargs)
    assert info.value.code == 400
