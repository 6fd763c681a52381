"""`python -m hvsim` as a subprocess: the ready line, every admin subcommand, faults seen by a real client,
clean stops on SIGTERM/SIGINT with the state persisted and reloaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.config import parse_config
from tests.support.hvsim_env import REPO_ROOT, host, lab_config_dict, serve_process, to_toml

HV = "hv1.contoso.com"
ADDRESS = "127.34.0.11"


@dataclass
class Served:
    process: subprocess.Popen[str]
    ready: str
    config_path: Path
    state_dir: Path
    admin: str
    port: int


def _hvsim(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "hvsim", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"hvsim {args} failed: {result.stderr}")
    return result


def _serve(config_path: Path, state_dir: Path, admin: str, port: int) -> Served:
    process, ready = serve_process(config_path, state_dir, "--time-scale", "1")
    return Served(process, ready, config_path, state_dir, admin, port)


def _stop(served: Served, signum: int = signal.SIGTERM) -> str:
    served.process.send_signal(signum)
    out, err = served.process.communicate(timeout=30)
    assert served.process.returncode == 0, err
    return out


@pytest.fixture
def lab_files(tmp_path: Path) -> Iterator[tuple[Path, Path, str, int]]:
    raw = lab_config_dict(host(HV, ADDRESS, vms=["web01"]), admin_address="127.34.0.1")
    config_path = tmp_path / "lab.toml"
    config_path.write_text(to_toml(raw))
    parsed = parse_config(raw)
    yield config_path, tmp_path / "state", str(parsed.settings.admin), parsed.hosts[0].winrm_port


@pytest.fixture
def served(lab_files: tuple[Path, Path, str, int]) -> Iterator[Served]:
    server = _serve(*lab_files)
    yield server
    if server.process.poll() is None:
        _stop(server)


def _vm_names(served: Served) -> list[str]:
    kwargs = dict(
        server=ADDRESS,
        port=served.port,
        auth="basic",
        username="Administrator",
        password="P@ssw0rd!",
        cert_validation=str(served.state_dir / "winrm-ca.pem"),
        reconnection_retries=0,
    )
    with WSMan(**kwargs) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM")
        return sorted(str(v.adapted_properties["Name"]) for v in ps.invoke())


def test_ready_line_names_ca_and_admin(served: Served) -> None:
    assert f"ca={served.state_dir.resolve() / 'winrm-ca.pem'}" in served.ready
    assert f"admin={served.admin}" in served.ready
    assert (served.state_dir / "winrm-ca.pem").exists()
    assert _vm_names(served) == ["web01"]


def test_admin_subcommands(served: Served) -> None:
    admin = ["--admin", served.admin]
    assert _hvsim("add-vm", *admin, HV, "app01").stdout == f"added VM 'app01' to {HV}, running\n"
    _hvsim("add-vm", "--config", str(served.config_path), HV, "app02")  # settings.admin read from the config
    assert _vm_names(served) == ["app01", "app02", "web01"]
    assert _hvsim("stop-vm", *admin, HV, "app01").stdout == f"turned off VM 'app01' on {HV}\n"
    dump = json.loads(_hvsim("dump", *admin, HV).stdout)
    assert "app01" in json.dumps(dump) and dump["fqdn"] == HV
    assert _hvsim("start-vm", *admin, HV, "app01").stdout == f"started VM 'app01' on {HV}\n"
    assert _hvsim("remove-vm", *admin, HV, "app02").stdout == f"removed VM 'app02' from {HV}\n"
    assert _vm_names(served) == ["app01", "web01"]
    counters = json.loads(_hvsim("counters", *admin, HV).stdout)
    assert counters["pools_opened"] == 2 and counters["pipelines"] == 2 and counters["http_requests"] > 6


def test_admin_errors_say_what_to_change(served: Served) -> None:
    result = _hvsim("remove-vm", "--admin", served.admin, HV, "no-such-vm", check=False)
    assert result.returncode == 2 and "no VM named 'no-such-vm'" in result.stderr
    result = _hvsim("dump", "--admin", served.admin, "nope.contoso.com", check=False)
    assert result.returncode == 2 and "no emulated host" in result.stderr
    result = _hvsim("fault", "--admin", served.admin, HV, "latency", check=False)
    assert result.returncode == 2 and "needs a value" in result.stderr
    result = _hvsim("counters", "--admin", "127.34.0.1:1", HV, check=False)
    assert result.returncode == 2 and "cannot reach the hvsim admin endpoint" in result.stderr


def test_dump_sections(served: Served) -> None:
    admin = ["--admin", served.admin]
    _hvsim("stop-vm", *admin, HV, "web01")
    vms = json.loads(_hvsim("dump", *admin, HV, "--section", "vms").stdout)
    assert [(vm["name"], vm["state"]) for vm in vms] == [("web01", "Off")]
    replication = json.loads(_hvsim("dump", *admin, HV, "--section", "replication").stdout)
    assert replication["vms"] == {} and replication["authorization_entries"] == []
    assert replication["server"]["replication_enabled"] is False
    certificates = json.loads(_hvsim("dump", *admin, HV, "--section", "certificates").stdout)
    assert set(certificates) == {"My", "Root", "CA"} and certificates["Root"]
    assert "PRIVATE KEY" not in json.dumps(certificates)
    firewall = json.loads(_hvsim("dump", *admin, HV, "--section", "firewall").stdout)
    assert any(rule["name"] == "VIRT-HVRHTTPSL-In-TCP-NoScope" for rule in firewall)
    registry = json.loads(_hvsim("dump", *admin, HV, "--section", "registry").stdout)
    assert registry["subkeys"]
    hosts_file = _hvsim("dump", *admin, HV, "--section", "hosts").stdout
    assert "This is a sample HOSTS file" in hosts_file and not hosts_file.startswith('"')
    bad = _hvsim("dump", *admin, HV, "--section", "disks", check=False)
    assert bad.returncode == 2 and "invalid choice: 'disks'" in bad.stderr


def test_fault_subcommands_seen_by_a_client(served: Served) -> None:
    admin = ["--admin", served.admin]
    done = _hvsim("fault", *admin, HV, "http500", "1").stdout
    assert done == f"{HV}: the next 1 WinRM request(s) get an HTTP 500 WSMan fault\n"
    with pytest.raises(WSManFaultError) as info:
        _vm_names(served)
    assert info.value.code == 2147943850
    assert _vm_names(served) == ["web01"]
    assert "every WinRM request now waits 300 ms" in _hvsim("fault", *admin, HV, "latency", "300").stdout
    assert "every injected fault removed" in _hvsim("clear-faults", *admin, HV).stdout
    assert "request number 1 from now" in _hvsim("fault", *admin, HV, "drop-nth", "1").stdout
    with pytest.raises(Exception, match="Connection"):
        _vm_names(served)
    restarted = _hvsim("fault", *admin, HV, "restart-vmms").stdout
    assert "Virtual Machine Management service restarted, 0 runspace pool(s) dropped" in restarted
    assert _vm_names(served) == ["web01"]


def test_sigterm_stops_cleanly_and_state_is_reloaded(served: Served, lab_files: tuple) -> None:
    _hvsim("add-vm", "--admin", served.admin, HV, "persisted01")
    ca_before = (served.state_dir / "winrm-ca.pem").read_bytes()
    assert "hvsim stopped" in _stop(served, signal.SIGTERM)
    assert (served.state_dir / "lab.json").exists()
    again = _serve(*lab_files)
    try:
        assert _vm_names(again) == ["persisted01", "web01"]
        assert (served.state_dir / "winrm-ca.pem").read_bytes() == ca_before
    finally:
        assert "hvsim stopped" in _stop(again, signal.SIGINT)


def test_client_cert_subcommand(tmp_path: Path) -> None:
    result = _hvsim(
        "client-cert",
        "--state-dir",
        str(tmp_path / "s"),
        "--user",
        "Administrator",
        "--cert",
        str(tmp_path / "c.pem"),
        "--key",
        str(tmp_path / "c.key"),
    )
    assert "client certificate for Administrator" in result.stdout
    assert (tmp_path / "c.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert os.stat(tmp_path / "c.key").st_mode & 0o077 == 0


def test_serve_with_a_bad_config_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[host]]\nfqdn = "hv1.contoso.com"\naddress = "10.0.0.1"\n')
    result = _hvsim("serve", "--config", str(bad), "--state-dir", str(tmp_path / "s"), check=False)
    assert result.returncode == 2
    assert "must be a loopback address" in result.stderr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("winrm_prot = 45986", "unknown key(s) 'winrm_prot' in host[0]; allowed: fqdn, address, winrm_port"),
        ('vm = ["web01"]', "unknown key(s) 'vm' in host[0]; allowed: fqdn, address, winrm_port"),
        ('vms = "web01"', "host[0].vms must be a list of names"),
        ('https_listener = "no"', "host[0].https_listener must be true or false"),
        (
            "https_listener = false",
            "host[0]: https_listener = false needs winrm_http_port (no listener at all)",
        ),
    ],
)
def test_config_keys_are_checked(tmp_path: Path, entry: str, message: str) -> None:
    config = tmp_path / "typo.toml"
    config.write_text(f'[[host]]\nfqdn = "hv1.contoso.com"\naddress = "{ADDRESS}"\n{entry}\n')
    result = _hvsim("serve", "--config", str(config), "--state-dir", str(tmp_path / "s"), check=False)
    assert result.returncode == 2
    assert f"hvsim: error: {config}: {message}" in result.stderr
    assert not (tmp_path / "s").exists()  # nothing started


def test_serve_with_a_busy_port_names_it(tmp_path: Path, served: Served) -> None:
    raw = lab_config_dict(host("hv9.contoso.com", ADDRESS))
    raw["host"][0]["winrm_port"] = served.port  # already taken by the running server
    config = tmp_path / "busy.toml"
    config.write_text(to_toml(raw))
    result = _hvsim("serve", "--config", str(config), "--state-dir", str(tmp_path / "s2"), check=False)
    assert result.returncode == 2
    assert f"cannot listen on {ADDRESS}:{served.port}" in result.stderr and "hv9.contoso.com" in result.stderr


def test_start_and_stop_in_the_background(lab_files: tuple[Path, Path, str, int]) -> None:
    config, state, admin, _ = lab_files
    where = ["--config", str(config), "--state-dir", str(state)]
    started = _hvsim("start", *where).stdout
    try:
        assert "hvsim started in the background (pid" in started and "\nhvsim ready:" in started
        python = Path(sys.executable)  # shown relative to the working directory, the repository here
        shown = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
        assert f"stop it with: {shown} -m hvsim stop {' '.join(where)}" in started
        pid = int((state / "hvsim.pid").read_text())
        assert f"pid {pid}" in started and (state / "hvsim.log").exists()
        assert "reusing it" in _hvsim("start", *where).stdout  # idempotent
        assert "added VM" in _hvsim("add-vm", "--admin", admin, HV, "bg01").stdout
    finally:
        stopped = _hvsim("stop", *where).stdout
    assert stopped == f"hvsim (pid {pid}) stopped\n"
    assert _hvsim("stop", *where).stdout == f"no hvsim serving {config} runs\n"
    assert not (state / "hvsim.pid").exists()


def test_make_lab_starts_the_demo_lab() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "lab"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "-m hvsim start --config hvsim.dev.toml --state-dir .hvsim" in dry_run


def test_serve_a_host_without_https_listener(tmp_path: Path) -> None:
    """A fresh Windows Server: only the HTTP listener, which the ready line names."""
    config = tmp_path / "http-only.toml"
    config.write_text(
        f'[[host]]\nfqdn = "hv1.contoso.com"\naddress = "{ADDRESS}"\nwinrm_port = 0\nwinrm_http_port = 0\n'
        "https_listener = false\n"
    )
    process, ready = serve_process(config, tmp_path / "s")
    try:
        assert f"hosts: hv1.contoso.com=http://{ADDRESS}:" in ready and "https://" not in ready
    finally:
        process.terminate()
        process.communicate(timeout=30)
