"""A real mutual-TLS handshake (Python `ssl`, loopback TCP) between host certificates from two
different CAs: the cross-domain Hyper-V Replica case, where each host trusts both CAs."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider
from tests.support.net import free_port

ADDRESS = "127.42.7.1"  # this module's own loopback address
TIMEOUT = 15.0
# OpenSSL sends the chain it can build (leaf + its own root), so an untrusted peer shows either way.
UNTRUSTED = re.compile("self-signed certificate in certificate chain|unable to get local issuer certificate")


def create(provider: Any, news: dict[str, Any]) -> dict[str, Any]:
    checked = provider.check({}, news)
    assert checked.failures == []
    return provider.create(checked.inputs).outs


@pytest.fixture(scope="module")
def sites() -> dict[str, dict[str, Any]]:
    """CA + host certificate for the primary (site A) and the replica (site B)."""
    made = {}
    for site, fqdn in (("a", "hv1.site-a.example"), ("b", "hv2.site-b.example")):
        ca = create(CertificateAuthorityProvider(), {"common_name": f"Site {site} CA", "rsa_bits": 2048.0})
        host = create(HostCertificateProvider(), {
            "ca_cert_pem": ca["cert_pem"], "ca_private_key_pem": ca["private_key_pem"], "fqdn": fqdn,
            "rsa_bits": 2048.0,
        })
        made[site] = {"ca": ca["cert_pem"], "cert": host["cert_pem"], "key": host["private_key_pem"],
                      "fqdn": fqdn}
    return made


@dataclass
class Outcome:
    server_error: BaseException | None = None
    client_error: BaseException | None = None
    server_saw: str | None = None  # CN of the client certificate the server accepted
    client_saw: str | None = None  # CN of the server certificate the client accepted

    @property
    def ok(self) -> bool:
        return self.server_error is None and self.client_error is None


def context(*, server: bool, site: dict[str, Any], trusted: list[str], tmp_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    cert, key = tmp_path / f"{site['fqdn']}.pem", tmp_path / f"{site['fqdn']}.key"
    cert.write_text(site["cert"])
    key.write_text(site["key"])
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cadata="".join(trusted))
    ctx.verify_mode = ssl.CERT_REQUIRED  # the server side must demand the client certificate
    return ctx


def common_name(peer: dict[str, Any]) -> str:
    return next(value for rdn in peer["subject"] for key, value in rdn if key == "commonName")


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_name: str) -> Outcome:
    """One connection: the server accepts, verifies the client and sends b"ok"; the client verifies
    the server (name included) and reads it. With TLS 1.3 a rejected client certificate only shows
    on the client at that first read, so the read is part of the handshake outcome."""
    outcome = Outcome()
    port = free_port(ADDRESS)
    listener = socket.create_server((ADDRESS, port))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome.server_saw = common_name(tls.getpeercert())
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            outcome.server_error = exc

    server = threading.Thread(target=serve)
    server.start()
    try:
        with socket.create_connection((ADDRESS, port), timeout=TIMEOUT) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            outcome.client_saw = common_name(tls.getpeercert())
            if tls.recv(2) != b"ok":
                raise ConnectionError("the server closed the connection without accepting it")
    except (OSError, ssl.SSLError) as exc:
        outcome.client_error = exc
    finally:
        server.join(TIMEOUT)
        listener.close()
    return outcome


def pair(
    sites: dict[str, dict[str, Any]],
    tmp_path: Path,
    *,
    server_trusts: list[str],
    client_trusts: list[str],
    server_name: str | None = None,
) -> Outcome:
    """Primary (site A) connects as client to the replica (site B) as server."""
    server_ctx = context(server=True, site=sites["b"], trusted=server_trusts, tmp_path=tmp_path)
    client_ctx = context(server=False, site=sites["a"], trusted=client_trusts, tmp_path=tmp_path)
    return handshake(server_ctx, client_ctx, server_name or sites["b"]["fqdn"])


def test_cross_domain_handshake_succeeds_when_both_trust_both_cas(
    sites: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    both = [sites["a"]["ca"], sites["b"]["ca"]]
    outcome = pair(sites, tmp_path, server_trusts=both, client_trusts=both)
    assert outcome.ok, outcome
    assert outcome.server_saw == "hv1.site-a.example" and outcome.client_saw == "hv2.site-b.example"


def test_fails_when_the_replica_lacks_the_primarys_ca(
    sites: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    both = [sites["a"]["ca"], sites["b"]["ca"]]
    outcome = pair(sites, tmp_path, server_trusts=[sites["b"]["ca"]], client_trusts=both)
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError), outcome
    assert UNTRUSTED.search(str(outcome.server_error))
    assert outcome.client_error is not None and outcome.server_saw is None


def test_fails_when_the_primary_lacks_the_replicas_ca(
    sites: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    both = [sites["a"]["ca"], sites["b"]["ca"]]
    outcome = pair(sites, tmp_path, server_trusts=both, client_trusts=[sites["a"]["ca"]])
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError), outcome
    assert UNTRUSTED.search(str(outcome.client_error))
    assert outcome.server_error is not None and outcome.client_saw is None


def test_fails_when_the_name_does_not_match(sites: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    both = [sites["a"]["ca"], sites["b"]["ca"]]
    outcome = pair(sites, tmp_path, server_trusts=both, client_trusts=both, server_name="hv3.site-b.example")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError), outcome
    assert "Hostname mismatch" in str(outcome.client_error)
    assert outcome.client_saw is None
