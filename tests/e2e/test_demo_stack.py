"""The root demo program (two sites, three VMs, both directions) through the real Pulumi CLI against hvsim.

Each check of the result talks to the emulated hosts over WinRM with plain pypsrp (`RunningLab.shell`),
never through the provider's code.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PureWindowsPath
from typing import Any

import pytest

from tests.support.engine import PROJECT_DIR, stack_config
from tests.support.pulumi_cli import CliProject
from tests.support.pwsh import prop
from tests.support.topology_lab import (
    HOST1,
    HOST2,
    HOSTS_FILE,
    HTTPS_RULE,
    RunningLab,
    line_text,
    running_dev_lab,
    wait_replicating,
)

FLOWS = {HOST1: {"web01": HOST2, "db01": HOST2}, HOST2: {"app02": HOST1}}
STORAGE = {HOST1: "D:\\Hyper-V\\Replica", HOST2: "E:\\Replica"}  # Pulumi.dev.yaml's storage_location
RESOURCE_COUNT = 13  # 2 CAs, 2 host certs, 2 replica servers, 3 relationships, 2 waits, topology, stack


def demo_config(lab: RunningLab, **pki: Any) -> dict[str, Any]:
    """Pulumi.dev.yaml pointed at `lab`, with 2048-bit keys (faster) unless `pki` says otherwise."""
    config = copy.deepcopy(stack_config(PROJECT_DIR / "Pulumi.dev.yaml"))
    config["hvreplica:hvsim"] = lab.hvsim_config
    config["hvreplica:pki"] = {**config["hvreplica:pki"], "rsa_bits": 2048, **pki}
    return config


def deploy(tmp: Path, second_octet: int) -> Iterator[tuple[RunningLab, CliProject]]:
    with running_dev_lab(tmp, [f"127.{second_octet}.0.11", f"127.{second_octet}.0.12"]) as lab:
        yield lab, CliProject(PROJECT_DIR, tmp, "e2e", demo_config(lab))


def replication_legs(lab: RunningLab, fqdn: str) -> dict[str, Any]:
    with lab.shell(fqdn) as sh:
        return {str(prop(r, "VMName")): r for r in sh.run("Get-VMReplication")}


def assert_converged(lab: RunningLab, project: CliProject) -> None:
    """Every flow Replicating on the hosts, with the thumbprints and replica servers the stack exported."""
    outputs = project.outputs()
    for fqdn, vms in FLOWS.items():
        wait_replicating(lab, fqdn, list(vms))
        legs = replication_legs(lab, fqdn)
        own = outputs["host_certificates"][fqdn]["thumbprint"]
        for vm, replica in vms.items():
            assert str(prop(legs[vm], "ReplicaServerName")).lower() == replica
            assert str(prop(legs[vm], "CertificateThumbprint")) == own
        with lab.shell(fqdn) as sh:
            (server,) = sh.run("Get-VMReplicationServer")
            assert str(prop(server, "CertificateThumbprint")) == own


def test_preview_of_an_empty_stack_contacts_no_host_and_shows_readable_diffs(tmp_path: Path) -> None:
    with running_dev_lab(tmp_path, ["127.90.0.11", "127.90.0.12"]) as lab:
        project = CliProject(PROJECT_DIR, tmp_path, "e2e", demo_config(lab))
        result = project.preview("--diff")
        assert result.returncode == 0, result.output
        for fqdn in (HOST1, HOST2):
            assert lab.emu.counters(fqdn)["http_requests"] == 0, "check/diff must not contact a host"
        assert f"+ {RESOURCE_COUNT} to create" in result.output
        for name in ("ca-contoso", "replica-cert-host1.contoso.com", "replica-server-host2.fabrikam.com",
                     "replica-repl-host1.contoso.com/web01"):
            assert name in result.output
        # Secret fields are hidden one by one: the rest of a connection stays readable.
        assert re.search(r'password\s*: \[secret\]', result.output), result.output
        assert re.search(r'username\s*: "Administrator"', result.output), result.output
        assert re.search(r'vm_name\s*: "web01"', result.output), result.output
        assert "Demo-Only" not in result.output


def test_up_noop_refresh_secrets_and_destroy_back_to_the_snapshot(tmp_path: Path) -> None:
    with running_dev_lab(tmp_path, ["127.91.0.11", "127.91.0.12"]) as lab:
        project = CliProject(PROJECT_DIR, tmp_path, "e2e", demo_config(lab))
        before = {fqdn: lab.emu.dump_host(fqdn) for fqdn in (HOST1, HOST2)}

        up = project.up()
        assert f"+ {RESOURCE_COUNT} created" in up.output, up.output
        assert_converged(lab, project)

        project.preview("--expect-no-changes").ok()
        refresh = project.refresh()
        assert f"{RESOURCE_COUNT} unchanged" in refresh.output, refresh.output
        project.preview("--expect-no-changes").ok()

        assert_no_secret_in_clear(lab, project)

        project.destroy()
        after = {fqdn: lab.emu.dump_host(fqdn) for fqdn in (HOST1, HOST2)}
        for fqdn in (HOST1, HOST2):
            expected = expected_after_destroy(before[fqdn], after[fqdn])
            for section, value in host_state(after[fqdn]).items():
                assert value == expected[section], f"{fqdn}: {section} differs from the snapshot"


def assert_no_secret_in_clear(lab: RunningLab, project: CliProject) -> None:
    """`pulumi stack export` and every backend file hold no private key, PFX, PFX password or WinRM
    password in clear (each value taken from the decrypted export and the lab's accounts)."""
    decrypted = json.loads(project.export(show_secrets=True))
    secrets: set[str] = {pw for h in lab.emu.config.hosts for pw in h.users.values()}
    for resource in decrypted["deployment"]["resources"]:
        outputs = resource.get("outputs") or {}
        for key in ("private_key_pem", "pfx_base64", "pfx_password", "ca_private_key_pem"):
            if outputs.get(key):
                secrets.add(plaintext(outputs[key]))
    assert len(secrets) >= 2 + 2 + 3 * 2, sorted(s[:12] for s in secrets)
    exported = project.export()
    on_disk = project.state_files_text()
    for secret in secrets:
        # A PEM is matched by its base64 body lines too (JSON escapes the newlines).
        needles = [secret, *(line for line in secret.splitlines() if len(line) >= 40)]
        for needle in needles:
            assert needle not in exported, "a secret is in clear in `pulumi stack export`"
            assert needle not in on_disk, "a secret is in clear in the state files"


def plaintext(value: Any) -> str:
    """A value of `pulumi stack export --show-secrets`: secrets come as {<sig>: <secret sig>, plaintext}."""
    if isinstance(value, dict) and "plaintext" in value:
        return str(json.loads(value["plaintext"]))
    return str(value)


def host_state(dump: dict[str, Any]) -> dict[str, Any]:
    """The parts of `hvsim dump` that the stack may touch (not the clock or boot facts), directories
    in a fixed order."""
    state = copy.deepcopy({k: v for k, v in dump.items() if k not in ("now", "facts")})
    state["files"]["directories"] = sorted(state["files"]["directories"])
    return state


def expected_after_destroy(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The snapshot before `up`, plus the one allowed difference: the replica VMs the stack created stay,
    with their files in the host's replica storage location (delete_replica_vm_on_destroy is false by
    default, so replicated data is never destroyed)."""
    expected = host_state(before)
    own = {vm["id"] for vm in before["hyperv"]["vms"]}
    kept = [vm for vm in after["hyperv"]["vms"] if vm["id"] not in own]
    assert all(vm["replication"] is None for vm in kept), "a kept replica VM still has replication"
    assert sorted(vm["name"] for vm in kept) == sorted(
        vm for vms in FLOWS.values() for vm, replica in vms.items() if replica == after["fqdn"]
    )
    expected["hyperv"]["vms"] = [*expected["hyperv"]["vms"], *kept]
    storage = PureWindowsPath(STORAGE[after["fqdn"]])
    kept_dirs = [
        d for d in after["files"]["directories"]
        if d not in expected["files"]["directories"]
        and (PureWindowsPath(d) in (storage, *storage.parents) or storage in PureWindowsPath(d).parents)
    ]
    expected["files"]["directories"] = sorted([*expected["files"]["directories"], *kept_dirs])
    return expected


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningLab, CliProject]]:
    """One demo stack, up, for the drift and update tests (each leaves it converged)."""
    tmp = tmp_path_factory.mktemp("deployed")
    with running_dev_lab(tmp, ["127.92.0.11", "127.92.0.12"]) as lab:
        project = CliProject(PROJECT_DIR, tmp, "e2e", demo_config(lab))
        project.up()
        yield lab, project
        project.destroy()


def test_drift_made_by_hand_is_shown_by_refresh_and_repaired_by_up(
    deployed: tuple[RunningLab, CliProject],
) -> None:
    lab, project = deployed
    ca_contoso = project.outputs()["certificate_authorities"]["contoso"]["thumbprint"]
    with lab.shell(HOST1) as sh:
        sh.run("Set-VMReplication", VMName="web01", ReplicationFrequencySec=900)
        sh.run("Disable-NetFirewallRule", Name=HTTPS_RULE)
        kept = [line_text(o) for o in sh.run("Get-Content", Path=HOSTS_FILE)]
        sh.run("Set-Content", Path=HOSTS_FILE, Value=[ln for ln in kept if HOST2 not in ln])
        sh.run("Remove-Item", Path=rf"Cert:\LocalMachine\Root\{ca_contoso}")
        sh.run("Remove-VMReplication", VMName="db01")
    # An administrator who removes a VM's replication also removes it on the replica server, and the
    # replica VM with it: a new Enable-VMReplication refuses a replica server that still holds a VM with
    # the same id (Windows' "virtual machine with the same ID already exists"), and the provider never
    # deletes a replica VM on its own.
    with lab.shell(HOST2) as sh:
        sh.run("Remove-VMReplication", VMName="db01")
        sh.run("Remove-VM", Name="db01", Force=True)

    refresh = project.refresh()
    assert "replica-repl-host1.contoso.com/web01" in refresh.output
    assert "replica-server-host1.contoso.com" in refresh.output
    assert "replica-repl-host1.contoso.com/db01" in refresh.output
    assert re.search(r"~ \d+ updated|~ \d+ update", refresh.output), refresh.output
    assert re.search(r"- 1 deleted", refresh.output), refresh.output

    repair = project.up()
    assert "replica-repl-host1.contoso.com/db01" in repair.output
    with lab.shell(HOST1) as sh:
        (web01,) = [r for r in sh.run("Get-VMReplication") if str(prop(r, "VMName")) == "web01"]
        assert prop(web01, "ReplicationFrequencySec") == 30
        (rule,) = sh.run("Get-NetFirewallRule", Name=HTTPS_RULE)
        assert str(prop(rule, "Enabled")) in ("True", "1")
        hosts_text = "\n".join(line_text(o) for o in sh.run("Get-Content", Path=HOSTS_FILE))
        assert HOST2 in hosts_text
        roots = {str(prop(c, "Thumbprint")) for c in sh.run("Get-ChildItem", Path=r"Cert:\LocalMachine\Root")}
        assert ca_contoso in roots
    assert_converged(lab, project)
    project.preview("--expect-no-changes").ok()


def _valid_now(cert: Any) -> bool:
    def when(name: str) -> datetime:
        return datetime.fromisoformat(str(prop(cert, name)).replace("Z", "+00:00"))

    return when("NotBefore") <= datetime.now(UTC) <= when("NotAfter")


class ListenerWatch:
    """Polls both hosts while an update runs: the replica server's certificate must always be installed
    in LocalMachine\\My and inside its validity period. Bounded: it stops when told or after `limit`
    seconds."""

    def __init__(self, lab: RunningLab, limit: float = 200.0) -> None:
        self.lab, self.limit = lab, limit
        self.samples = 0
        self.gaps: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ListenerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        shells = {fqdn: self.lab.shell(fqdn) for fqdn in (HOST1, HOST2)}
        opened = {fqdn: cm.__enter__() for fqdn, cm in shells.items()}
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for fqdn, sh in opened.items():
                    (server,) = sh.run("Get-VMReplicationServer")
                    wanted = str(prop(server, "CertificateThumbprint"))
                    mine = {
                        str(prop(c, "Thumbprint")): c
                        for c in sh.run("Get-ChildItem", Path=r"Cert:\LocalMachine\My")
                    }
                    cert = mine.get(wanted)
                    if cert is None:
                        self.gaps.append(f"{fqdn}: listener certificate {wanted} not in LocalMachine\\My")
                    elif not _valid_now(cert):
                        self.gaps.append(f"{fqdn}: listener certificate {wanted} is outside its validity")
                    self.samples += 1
                time.sleep(0.05)
        finally:
            for cm in shells.values():
                cm.__exit__(None, None, None)


def test_in_place_update_and_replacements_never_leave_the_listener_without_its_certificate(
    deployed: tuple[RunningLab, CliProject],
) -> None:
    lab, project = deployed
    config = demo_config(lab)

    # In place: replication frequency.
    config["hvreplica:replication"]["settings"]["frequency_sec"] = 300
    project.write_config(config)
    preview = project.preview("--diff")
    assert preview.returncode == 0, preview.output
    assert "~ 3 to update" in preview.output and "to replace" not in preview.output, preview.output
    project.up()
    for fqdn, vms in FLOWS.items():
        legs = replication_legs(lab, fqdn)
        assert {prop(legs[vm], "ReplicationFrequencySec") for vm in vms} == {300}

    # Replace: a new key size re-issues the CAs and host certificates (create before delete), the replica
    # servers and relationships switch thumbprints in place.
    old = project.outputs()["host_certificates"]
    config["hvreplica:pki"]["rsa_bits"] = 3072
    project.write_config(config)
    preview = project.preview()
    assert preview.returncode == 0 and "+-" in preview.output, preview.output
    with ListenerWatch(lab) as watch:
        replace = project.up()
    assert watch.samples > 0 and not watch.gaps, watch.gaps[:5]
    # The engine deletes the replaced originals last, after their dependents switched to the new ones.
    out = replace.output
    last_update = max(out.rindex(f"replica-repl-{key} updated") for key in (
        "host1.contoso.com/web01", "host1.contoso.com/db01", "host2.fabrikam.com/app02"))
    assert out.index("deleted original") > last_update, out
    new = project.outputs()["host_certificates"]
    assert all(new[f]["thumbprint"] != old[f]["thumbprint"] for f in (HOST1, HOST2))
    assert_converged(lab, project)
    retire_old_certificates(lab, project, old, new)


def test_renewal_window_replaces_host_certificates_without_a_gap(tmp_path: Path) -> None:
    """Host certificates valid for 3 days and renewed 2 days early, issued (provider clock moved back) 30
    hours ago: the next `up` finds them inside the renewal window, re-issues and swaps them. The hosts'
    clock is left alone: hvsim's TLS handshakes check validity against the real clock."""
    addresses = ["127.95.0.11", "127.95.0.12"]
    with running_dev_lab(tmp_path, addresses, time_scale=60.0) as lab:
        config = demo_config(lab, host_validity_days=3, host_early_renewal_days=2)
        project = CliProject(PROJECT_DIR, tmp_path, "e2e", config)
        project.env["HVREPLICA_FAKE_NOW"] = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
        project.up()
        project.preview("--expect-no-changes").ok()
        old = project.outputs()["host_certificates"]

        del project.env["HVREPLICA_FAKE_NOW"]
        preview = project.preview()
        assert preview.returncode == 0 and "2 to replace" in preview.output, preview.output
        with ListenerWatch(lab) as watch:
            renewal = project.up()
        assert "2 replaced" in renewal.output, renewal.output
        assert watch.samples > 0 and not watch.gaps, watch.gaps[:5]
        new = project.outputs()["host_certificates"]
        for fqdn in (HOST1, HOST2):
            assert new[fqdn]["thumbprint"] != old[fqdn]["thumbprint"]
            (server,) = replication_server(lab, fqdn)
            assert str(prop(server, "CertificateThumbprint")) == new[fqdn]["thumbprint"]
        assert_converged(lab, project)
        retire_old_certificates(lab, project, old, new)
        project.destroy()


def retire_old_certificates(
    lab: RunningLab, project: CliProject, old: dict[str, Any], new: dict[str, Any]
) -> None:
    r"""A rotation takes a second apply (README, "Known limitations"): while the ReplicaServers switched
    to the new certificates, the hosts' replications still authenticated with the old ones. The next
    `up` removes them from LocalMachine\My; then nothing is left to change."""
    for fqdn in (HOST1, HOST2):
        assert certificates(lab, fqdn, "My") == {old[fqdn]["thumbprint"], new[fqdn]["thumbprint"]}
    pending = project.preview()
    assert pending.returncode == 0 and "replica-server-host1.contoso.com" in pending.output, pending.output
    project.up()
    for fqdn in (HOST1, HOST2):
        assert certificates(lab, fqdn, "My") == {new[fqdn]["thumbprint"]}
    assert_converged(lab, project)
    project.preview("--expect-no-changes").ok()


@pytest.mark.parametrize(
    ("typo", "message"),
    [
        # A misspelt key inside an object of the namespace (README, "Stack configuration").
        ("nested", "hvreplica:replication has unknown key(s) flow; known keys:"),
        # A misspelt top-level key of the namespace.
        ("top", "unknown config key(s) hvreplica:replicaton; the keys of namespace 'hvreplica' are"),
    ],
)
def test_a_config_typo_fails_up_with_the_documented_message(tmp_path: Path, typo: str, message: str) -> None:
    with running_dev_lab(tmp_path, ["127.93.0.11", "127.93.0.12"]) as lab:
        config = demo_config(lab)
        if typo == "nested":
            config["hvreplica:replication"]["flow"] = config["hvreplica:replication"].pop("flows")
        else:
            config["hvreplica:replicaton"] = config.pop("hvreplica:replication")
        project = CliProject(PROJECT_DIR, tmp_path, "e2e", config)
        result = project.run("up", "--yes", "--skip-preview")
        assert result.returncode != 0
        assert message in result.output, result.output
        assert lab.emu.counters(HOST1)["http_requests"] == 0


@pytest.mark.parametrize(
    ("how", "octet", "trigger"),
    [
        # Ctrl-C while the relationships wait for their initial replication: the CLI cancels (lets the
        # operations in flight finish, starts no new one) and releases the stack.
        ("sigint", 94, "ReplicationRelationship"),
        # A crash (SIGKILL) while the replica servers are being created: the stack stays locked and the
        # half-done creates are lost to the engine; `pulumi cancel` unlocks, the providers' ownership
        # ledgers on the hosts let the re-run adopt what the killed run did. When the kill lands while the
        # file backend rewrites its checkpoint, the checkpoint is unreadable until its backup is put back.
        ("sigkill", 96, "ReplicaServer"),
    ],
)
def test_an_interrupted_up_then_rerun_converges_with_nothing_orphaned(
    tmp_path: Path, how: str, octet: int, trigger: str
) -> None:
    with running_dev_lab(tmp_path, [f"127.{octet}.0.11", f"127.{octet}.0.12"]) as lab:
        project = CliProject(PROJECT_DIR, tmp_path, "e2e", demo_config(lab))
        proc = project.popen("up", "--yes", "--skip-preview")
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            lines.append(line)
            if trigger in line and "creating" in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        # To the whole process group, as a terminal or a CI runner does (the runner script ignores SIGINT).
        os.killpg(proc.pid, signal.SIGINT if how == "sigint" else signal.SIGKILL)
        rest, _ = proc.communicate(timeout=180)
        assert proc.returncode != 0, "".join(lines) + rest

        if how == "sigkill":
            # The killed CLI could not end its provider plugin; an operator's process list shows it.
            strays = project.stray_processes()
            assert strays, "expected the killed run's provider plugin"
            for pid in strays:
                os.kill(pid, signal.SIGTERM)
        else:
            assert project.stray_processes() == [], "a cancelled run left a process behind"

        rerun = project.run("up", "--yes", "--skip-preview")
        if how == "sigkill" and "failed to load checkpoint" in rerun.output:
            # Seen in CI: the kill can land while the file backend rewrites the checkpoint.
            project.restore_checkpoint_backup()
            rerun = project.run("up", "--yes", "--skip-preview")
        if how == "sigkill":
            assert rerun.returncode != 0 and "locked" in rerun.output, rerun.output
            project.run("cancel", "--yes").ok()
            rerun = project.run("up", "--yes", "--skip-preview")
        rerun.ok()
        assert_converged(lab, project)
        project.preview("--expect-no-changes").ok()
        for fqdn in (HOST1, HOST2):
            (server,) = replication_server(lab, fqdn)
            mine = certificates(lab, fqdn, "My")
            assert mine == {str(prop(server, "CertificateThumbprint"))}, "a certificate was orphaned"


def replication_server(lab: RunningLab, fqdn: str) -> list[Any]:
    with lab.shell(fqdn) as sh:
        return sh.run("Get-VMReplicationServer")


def certificates(lab: RunningLab, fqdn: str, store: str) -> set[str]:
    with lab.shell(fqdn) as sh:
        found = sh.run("Get-ChildItem", Path=rf"Cert:\LocalMachine\{store}")
    return {str(prop(c, "Thumbprint")) for c in found}


def test_transient_host_faults_are_retried_and_each_retry_is_shown_by_the_cli(tmp_path: Path) -> None:
    """hvsim answers HTTP 500 to host1's next two WinRM requests: the provider retries them (one line per
    retry on its stderr, which the CLI shows) and `up` converges."""
    with running_dev_lab(tmp_path, ["127.97.0.11", "127.97.0.12"]) as lab:
        project = CliProject(PROJECT_DIR, tmp_path, "e2e", demo_config(lab))
        lab.emu.inject_fault(HOST1, "http500", 2)
        up = project.up()
        # The CLI shows each line in the progress display and again under Diagnostics.
        retries = set(re.findall(r"hvreplica: https://127\.97\.0\.11:\d+ \(auth basic, user Administrator\): "
                                 r"WSMan fault .*; (retry \d+) in", up.output))
        assert retries == {"retry 1", "retry 2"}, up.output
        assert_converged(lab, project)
