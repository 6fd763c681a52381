"""The root program (__main__.py) under pulumi.runtime mocks whose new_resource runs the REAL providers
against a running hvsim lab, then the result checked on the hosts with plain pypsrp.

The stack config is the committed Pulumi.dev.yaml (RSA 2048 instead of 4096 to keep the suite fast); its
hvsim lab is the committed hvsim.dev.toml moved to this module's loopback addresses and free ports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509

from hvreplica_provider.testing import MockedProgram
from tests.support.engine import (
    CA_TYPE,
    HOST_TYPE,
    PROJECT_DIR,
    RELATIONSHIP_TYPE,
    SERVER_TYPE,
    WAIT_TYPE,
    stack_config,
)
from tests.support.topology_lab import (
    HOST1,
    HOST2,
    ExpectedHost,
    RunningLab,
    check_host,
    running_dev_lab,
    thumbprint,
    wait_replicating,
)

PROGRAM = PROJECT_DIR / "__main__.py"
pytestmark = pytest.mark.usefixtures("fast_polling")  # the providers run in this process, under mocks


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    with running_dev_lab(tmp_path, ["127.81.0.11", "127.81.0.12"]) as lab:
        yield lab


def dev_config(lab: RunningLab | None = None, **pki_overrides: Any) -> dict[str, Any]:
    """Pulumi.dev.yaml's config, pointed at `lab`, with RSA 2048."""
    config = stack_config(PROJECT_DIR / "Pulumi.dev.yaml")
    config["hvreplica:pki"] = {**config["hvreplica:pki"], "rsa_bits": 2048, **pki_overrides}
    if lab is not None:
        config["hvreplica:hvsim"] = lab.hvsim_config
    return config


def _verify_on_hosts(lab: RunningLab, created: dict[str, dict[str, Any]], cas: dict[str, str]) -> None:
    """Both hosts prepared and every configured VM Replicating/Normal in its direction."""
    flows = {HOST1: {"web01": HOST2, "db01": HOST2}, HOST2: {"app02": HOST1}}
    locations = {HOST1: "D:\\Hyper-V\\Replica", HOST2: "E:\\Replica"}
    for fqdn, partner in ((HOST1, HOST2), (HOST2, HOST1)):
        wait_replicating(lab, fqdn, list(flows[fqdn]))
        check_host(
            lab,
            ExpectedHost(
                fqdn=fqdn,
                cert_pem=created[f"replica-cert-{fqdn}"]["cert_pem"],
                ca_pems=[cas[fqdn], cas[partner]],
                partners={partner: lab.address(partner)},
                storage_location=locations[fqdn],
                replicated_vms=flows[fqdn],
            ),
        )


@pulumi.runtime.test
def test_dev_stack_builds_the_whole_scenario_on_hvsim(
    mocked_program: MockedProgram, lab: RunningLab
) -> pulumi.Output:
    exports = mocked_program.run(PROGRAM, dev_config(lab))

    def verify(resolved: dict[str, Any]) -> None:
        created, types = mocked_program.mocks.outputs, mocked_program.mocks.types
        relationships = {f"{HOST1}/web01", f"{HOST1}/db01", f"{HOST2}/app02"}
        assert {n: t for n, t in types.items() if t.startswith("pulumi-python")} == {
            "ca-contoso": CA_TYPE,
            "ca-fabrikam": CA_TYPE,
            f"replica-cert-{HOST1}": HOST_TYPE,
            f"replica-cert-{HOST2}": HOST_TYPE,
            f"replica-server-{HOST1}": SERVER_TYPE,
            f"replica-server-{HOST2}": SERVER_TYPE,
            **{f"replica-repl-{key}": RELATIONSHIP_TYPE for key in relationships},
            # The dev stack waits for the initial copies: once per primary host, not per relationship.
            f"replica-wait-{HOST1}": WAIT_TYPE,
            f"replica-wait-{HOST2}": WAIT_TYPE,
        }
        cas = {
            HOST1: created["ca-contoso"]["cert_pem"],
            HOST2: created["ca-fabrikam"]["cert_pem"],
        }
        for fqdn in (HOST1, HOST2):
            cert = x509.load_pem_x509_certificate(created[f"replica-cert-{fqdn}"]["cert_pem"].encode())
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cas[fqdn].encode()))
            assert cert.public_key().key_size == 2048  # the stack's pki settings reached the providers
            summary = resolved["host_certificates"][fqdn]
            assert summary["thumbprint"] == thumbprint(created[f"replica-cert-{fqdn}"]["cert_pem"])
            assert datetime.fromisoformat(summary["not_after"]) == cert.not_valid_after_utc
            assert cert.not_valid_after_utc > datetime.now(UTC)
        assert set(resolved["replication"]) == relationships
        assert all(r["state"] == "Replicating" for r in resolved["replication"].values())
        _verify_on_hosts(lab, created, cas)
        _assert_no_secrets(resolved, created)
        # Secrets are declared for the engine to encrypt (the mock runtime itself ignores them): computed
        # ones as additional_secret_outputs, secret-bearing inputs as secrets in the registration, field by
        # field so that the rest of a connection stays readable in a preview.
        secret = mocked_program.monitor.secret_outputs
        assert {"private_key_pem", "pfx_base64", "pfx_password"} <= set(secret[f"replica-cert-{HOST1}"])
        sent = mocked_program.monitor.secret_inputs
        assert {"ca_private_key_pem"} <= sent[f"replica-cert-{HOST1}"]
        assert sent[f"replica-server-{HOST1}"] == {
            "__provider", "connection.password", "certificate.pfx_base64", "certificate.pfx_password",
        }
        assert sent[f"replica-repl-{HOST1}/web01"] == {"__provider", "primary.password", "replica.password"}

    return pulumi.Output.from_input(exports).apply(verify)


@pulumi.runtime.test
def test_shared_ca_signs_both_sites_and_is_trusted_once(
    mocked_program: MockedProgram, lab: RunningLab
) -> pulumi.Output:
    config = dev_config(lab, shared_ca={"common_name": "Replica Shared CA"})
    config["hvreplica:sites"] = [
        {k: v for k, v in site.items() if k != "ca"} for site in config["hvreplica:sites"]
    ]
    config["hvreplica:replication"]["flows"] = config["hvreplica:replication"]["flows"][:1]
    exports = mocked_program.run(PROGRAM, config)

    def verify(resolved: dict[str, Any]) -> None:
        created = mocked_program.mocks.outputs
        inputs = mocked_program.mocks.inputs
        assert [n for n in created if n.startswith("ca-")] == ["ca-shared"]
        assert list(resolved["certificate_authorities"]) == ["shared"]
        shared = created["ca-shared"]["cert_pem"]
        for fqdn in (HOST1, HOST2):
            assert resolved["host_certificates"][fqdn]["ca"] == "shared"
            assert inputs[f"replica-server-{fqdn}"]["trusted_ca_certs"] == [shared]
        wait_replicating(lab, HOST1, ["web01", "db01"])
        check_host(
            lab,
            ExpectedHost(
                HOST2,
                created[f"replica-cert-{HOST2}"]["cert_pem"],
                [shared],
                {HOST1: lab.address(HOST1)},
                "E:\\Replica",
            ),
        )
        _assert_no_secrets(resolved, created)

    return pulumi.Output.from_input(exports).apply(verify)


@pulumi.runtime.test
def test_prod_example_shape_reaches_hosts_with_secret_passwords(
    mocked_program: MockedProgram, lab: RunningLab
) -> pulumi.Output:
    """Pulumi.prod.yaml.example (real hosts: explicit connections, CA file, secret passwords), with its
    connections pointed at the lab's listeners."""
    config = stack_config(PROJECT_DIR / "Pulumi.prod.yaml.example")
    config["hvreplica:pki"]["rsa_bits"] = 2048
    passwords = {}
    for site in config["hvreplica:sites"]:
        for entry in site["hosts"]:
            listener = next(h for h in lab.emu.config.hosts if h.fqdn == entry["fqdn"])
            entry["address"] = listener.address
            entry["connection"].update(
                host=listener.address,
                port=lab.emu.listener_port(listener.fqdn),
                auth="basic",
                username="Administrator",
                ca_cert_file=str(lab.emu.ca_pem_path),
            )
            passwords[entry["fqdn"]] = listener.users["Administrator"]
    config["hvreplica:winrm_passwords"] = passwords
    exports = mocked_program.run(PROGRAM, config, secret_keys=["hvreplica:winrm_passwords"])

    def verify(resolved: dict[str, Any]) -> None:
        inputs = mocked_program.mocks.inputs
        assert set(resolved["replication"]) == {f"{HOST1}/web01", f"{HOST1}/db01", f"{HOST2}/app02"}
        for fqdn in (HOST1, HOST2):
            connection = inputs[f"replica-server-{fqdn}"]["connection"]
            assert connection["password"] == passwords[fqdn]
            assert connection["ca_cert_pem"] == lab.emu.ca_pem_path.read_text()
        settings = inputs[f"replica-repl-{HOST1}/web01"]
        assert (settings["recovery_history"], settings["vss_snapshot_frequency_hour"]) == (4, 4)
        wait_replicating(lab, HOST1, ["web01", "db01"])
        text = json.dumps(resolved)
        assert not any(password in text for password in passwords.values())

    return pulumi.Output.from_input(exports).apply(verify)


def _assert_no_secrets(exports: dict[str, Any], created: dict[str, dict[str, Any]]) -> None:
    text = json.dumps(exports)
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    for outputs in created.values():
        for key in ("pfx_base64", "pfx_password", "private_key_pem"):
            if outputs.get(key):
                assert outputs[key] not in text
        for key in ("connection", "primary"):
            if outputs.get(key, {}).get("password"):
                assert outputs[key]["password"] not in text


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["hvreplica:pki"].update(shared_ca={"common_name": "X"}), r"sites\[0\]\.ca is set"),
        (lambda c: c["hvreplica:sites"][1].pop("ca"), r"sites\[1\]\.ca is missing"),
        (
            lambda c: c["hvreplica:sites"][1]["hosts"][0].update(fqdn="host2.contoso.com"),
            "not in the site's domain",
        ),
        (lambda c: c["hvreplica:sites"][1].update(name="contoso"), "repeats the site name contoso"),
        (lambda c: c["hvreplica:sites"][0]["hosts"][0].update(fqdns="x"), "unknown key"),
        (lambda c: c.pop("hvreplica:sites"), "sites"),
        (
            lambda c: c["hvreplica:replication"]["flows"][0].update(replica="host9.fabrikam.com"),
            r"flows\[0\]\.replica 'host9.fabrikam.com' is not a host",
        ),
        (
            lambda c: c["hvreplica:replication"]["settings"].update(frequency=30),
            "unknown key.*frequency",
        ),
        (
            lambda c: c["hvreplica:replication"]["flows"][1].update(vms=["app02", "app02"]),
            "'app02' of host2.fabrikam.com is listed twice",
        ),
        (
            lambda c: c.update(
                {"hvreplica:hvsim": {"config": "hvsim.dev.toml", "state_dir": "/nonexistent"}}
            ),
            r"winrm-ca.pem does not exist: start the emulator first",
        ),
        (
            lambda c: c.pop("hvreplica:hvsim"),
            r"hosts\[0\] has no connection and is not a host of the hvsim lab",
        ),
        (
            lambda c: c["hvreplica:sites"][0]["hosts"][0].update(
                connection={"host": "h", "username": "u", "password": "p"}, address="10.0.0.1"
            ),
            r"connection.password would sit in plain text.*config set --secret",
        ),
    ],
)
def test_bad_stack_config_fails_before_any_resource(
    mocked_program: MockedProgram, lab: RunningLab, mutate, message: str
) -> None:
    config = dev_config(lab)
    mutate(config)
    with pytest.raises((ValueError, pulumi.ConfigMissingError), match=message):
        mocked_program.run(PROGRAM, config)
    assert mocked_program.mocks.types == {}  # not even a CA was declared
