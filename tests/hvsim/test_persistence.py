"""State survives an in-process restart on the same state directory: model changes made through cmdlets,
admin changes, the WinRM CA and the listener certificates."""

from __future__ import annotations

import time
from pathlib import Path

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from hvsim.server import Emulator
from tests.support.hvsim_env import host, lab_config, running_lab, wsman_kwargs

HV = "hv1.contoso.com"


def _invoke(emu: Emulator, cmdlet: str, auth: str = "basic", **params: object) -> list:
    with WSMan(**wsman_kwargs(emu, HV, auth=auth)) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet(cmdlet)
        for name, value in params.items():
            ps.add_parameter(name, value)
        out = ps.invoke()
        assert not ps.had_errors, [str(e) for e in ps.streams.error]
        return out


def test_state_survives_restart(tmp_path: Path) -> None:
    config = lab_config(host(HV, "127.35.0.11", vms=["web01"], http=True))
    state = tmp_path / "state"
    with running_lab(config, state) as emu:
        _invoke(emu, "New-VM", Name="created-by-cmdlet", NoVHD=True)
        _invoke(emu, "Set-Content", Path="C:\\persist.txt", Value="kept across restarts")
        emu.add_vm(HV, "created-by-admin")
        emu.stop_vm(HV, "web01")
        ca = emu.ca_pem_path.read_bytes()
        listener_cert = (state / "winrm-tls" / f"{HV}.pem").read_bytes()
    assert (state / "lab.json").stat().st_mode & 0o077 == 0

    with running_lab(config, state) as emu:
        vms = {
            str(v.adapted_properties["Name"]): str(v.adapted_properties["State"])
            for v in _invoke(emu, "Get-VM")
        }
        assert vms == {"web01": "Off", "created-by-cmdlet": "Off", "created-by-admin": "Running"}
        content = _invoke(
            emu, "Get-Content", auth="ntlm", Path="C:\\persist.txt", Encoding="Byte", ReadCount=0
        )
        assert content[0].startswith(b"kept across restarts")
        assert emu.ca_pem_path.read_bytes() == ca
        assert (state / "winrm-tls" / f"{HV}.pem").read_bytes() == listener_cert


def test_listener_certificate_reissued_when_the_address_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_lab(lab_config(host(HV, "127.35.0.21")), state) as emu:
        ca = emu.ca_pem_path.read_bytes()
        first = (state / "winrm-tls" / f"{HV}.pem").read_bytes()
    with running_lab(lab_config(host(HV, "127.35.0.22")), state) as emu:
        assert (state / "winrm-tls" / f"{HV}.pem").read_bytes() != first
        assert emu.ca_pem_path.read_bytes() == ca
        assert _invoke(emu, "Get-VM") == []


def test_emulator_is_exported_by_the_package() -> None:
    import hvsim

    assert hvsim.Emulator is Emulator


def test_state_is_saved_soon_after_a_pipeline_without_a_stop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_lab(lab_config(host(HV, "127.35.0.31")), state) as emu:
        _invoke(emu, "New-VM", Name="saved-while-running", NoVHD=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lab_json = state / "lab.json"
            if lab_json.exists() and "saved-while-running" in lab_json.read_text():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("lab.json did not get the new VM while the emulator kept running")


def test_stop_right_after_a_pipeline_saves_it_without_waiting(tmp_path: Path) -> None:
    # The saver thread is mid-interval when stop() comes: stop must neither wait for it nor lose the change.
    state = tmp_path / "state"
    config = lab_config(host(HV, "127.35.0.41", http=True), host("hv2.contoso.com", "127.35.0.42", http=True))
    emu = Emulator(config, state).start()
    try:
        _invoke(emu, "New-VM", Name="saved-by-stop", NoVHD=True)
    finally:
        started = time.monotonic()
        emu.stop()
        elapsed = time.monotonic() - started
    assert "saved-by-stop" in (state / "lab.json").read_text()
    assert elapsed < 2.0, f"Emulator.stop took {elapsed:.2f} s"
