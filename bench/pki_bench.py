"""Benchmark: one CertificateAuthority plus two 4096-bit HostCertificates, through the providers.

Each round runs check + create for a 4096-bit CA and two 4096-bit host certificates (legacy PFX
export included), exactly what `pulumi up` makes the provider do for one site pair's certificates.
RSA key generation dominates and varies a lot from key to key, hence the median.

    .venv/bin/python bench/pki_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from hvreplica_provider import CertificateAuthorityProvider, HostCertificateProvider


def create(provider: Any, news: dict[str, Any]) -> dict[str, Any]:
    checked = provider.check({}, news)
    if checked.failures:
        raise SystemExit(f"check failed: {[failure.reason for failure in checked.failures]}")
    return provider.create(checked.inputs).outs


def one_round() -> float:
    start = time.perf_counter()
    ca = create(CertificateAuthorityProvider(), {"common_name": "Bench CA", "rsa_bits": 4096.0})
    for fqdn in ("hv1.site-a.example", "hv2.site-a.example"):
        create(
            HostCertificateProvider(),
            {
                "ca_cert_pem": ca["cert_pem"],
                "ca_private_key_pem": ca["private_key_pem"],
                "fqdn": fqdn,
                "rsa_bits": 4096.0,
            },
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    timings = []
    for index in range(rounds):
        timings.append(one_round())
        print(f"round {index + 1}: {timings[-1]:.2f} s")
    print(
        f"median of {rounds}: {statistics.median(timings):.2f} s "
        f"(min {min(timings):.2f} s, max {max(timings):.2f} s)"
    )


if __name__ == "__main__":
    main()
