"""scripts/demo.sh (what `make demo` runs), run from a copy of the script in a temporary tree.

The Pulumi CLI cannot be installed here. The missing-CLI path is exercised for real; the other
paths use stand-in `pulumi` and `make` executables that only record their argv, environment and
whether hvsim had announced itself ready, which tests OUR script's sequence (the component under
test), not Pulumi. hvsim itself is real: the tree links the project's venv and holds the committed
hvsim.dev.toml moved to this module's loopback addresses and free ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.engine import PROJECT_DIR
from tests.support.hvsim_env import to_toml
from tests.support.topology_lab import lab_dict

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
CLI_VERSION = "v3.272.0"  # what the stand-in `pulumi` prints (the script checks `pulumi version`)


@dataclass
class Tree:
    """A temporary repository holding scripts/demo.sh, with a directory for stand-in executables."""

    root: Path
    bin_dir: Path
    log: Path

    def stand_in(self, name: str, exit_code: int = 0, prints: str = "") -> None:
        """An executable that appends `name argv | backend | passphrase | hvsim ready lines` to the log
        and prints `prints`."""
        script = self.bin_dir / name
        script.write_text(
            "#!/bin/sh\n"
            f'ready=$(grep -c "^hvsim ready" "{self.root}/.hvsim/hvsim.log" 2>/dev/null)\n'
            f'echo "{name} $* | $PULUMI_BACKEND_URL | $PULUMI_CONFIG_PASSPHRASE | ${{ready:-0}}"'
            f' >> "{self.log}"\n'
            f'printf "%s" "{prints}"\n'
            f"exit {exit_code}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        return subprocess.run(
            [str(self.root / "scripts" / "demo.sh")],
            cwd=self.root,
            env={**clean, "PATH": f"{self.bin_dir}:{BASE_PATH}", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def hvsim_pid(self) -> int | None:
        pidfile = self.root / ".hvsim" / "hvsim.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    (tmp_path / "scripts").mkdir()
    shutil.copy2(PROJECT_DIR / "scripts" / "demo.sh", tmp_path / "scripts" / "demo.sh")
    (tmp_path / ".venv").symlink_to(PROJECT_DIR / ".venv")
    (tmp_path / "hvsim.dev.toml").write_text(to_toml(lab_dict(["127.84.0.11", "127.84.0.12"])))
    (tmp_path / "fakebin").mkdir()
    tree = Tree(tmp_path, tmp_path / "fakebin", tmp_path / "calls.log")
    tree.stand_in("make")
    yield tree
    pid = tree.hvsim_pid()
    if pid is not None and _alive(pid):  # the script leaves hvsim running by design: stop ours
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def test_missing_cli_prints_install_steps_and_touches_nothing(tree: Tree) -> None:
    assert shutil.which("pulumi", path=f"{tree.bin_dir}:{BASE_PATH}") is None, "needs a PATH without pulumi"
    before = sorted(p.name for p in tree.root.iterdir())

    result = tree.run()

    assert result.returncode != 0
    assert "curl -fsSL https://get.pulumi.com | sh" in result.stderr
    assert "brew install pulumi" in result.stderr
    assert "https://www.pulumi.com/docs/install/" in result.stderr
    # Nothing ran and nothing was created: no venv install, no state directory.
    assert tree.calls() == []
    assert sorted(p.name for p in tree.root.iterdir()) == before


def test_too_old_cli_is_refused_before_anything_runs(tree: Tree) -> None:
    tree.stand_in("pulumi", prints="v3.120.1")
    before = sorted(p.name for p in tree.root.iterdir())

    result = tree.run()

    assert result.returncode != 0
    assert "needs Pulumi CLI >= 3.139" in result.stderr and "'v3.120.1'" in result.stderr
    assert tree.calls() == ["pulumi version |  |  | 0"]  # no venv install, no hvsim
    assert sorted(p.name for p in tree.root.iterdir()) == sorted([*before, "calls.log"])


def test_starts_hvsim_then_runs_stack_and_up_with_local_state(tree: Tree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)

    result = tree.run()

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # a clean first start: no shell noise (e.g. about the log not existing yet)
    backend = f"file://{tree.root}/.pulumi-state"
    # hvsim had printed its ready line before Pulumi ran (the last field).
    assert tree.calls() == [
        "pulumi version |  |  | 0",
        "make --no-print-directory venv |  |  | 0",
        f"pulumi stack select --create dev --non-interactive | {backend} | hvreplica-dev-only | 1",
        f"pulumi up --yes --stack dev --non-interactive | {backend} | hvreplica-dev-only | 1",
    ]
    assert (tree.root / ".pulumi-state").is_dir()
    pid = tree.hvsim_pid()
    assert pid is not None and _alive(pid), "hvsim keeps running after the script"
    assert f"hvsim started (pid {pid}, log .hvsim/hvsim.log)" in result.stdout
    assert "stop it with: kill $(cat .hvsim/hvsim.pid)" in result.stdout
    assert (tree.root / ".hvsim" / "winrm-ca.pem").is_file()  # state lives in .hvsim/

    # Idempotent: a second run reuses the running hvsim and does the same.
    again = tree.run()
    assert again.returncode == 0, again.stderr
    assert f"hvsim already running (pid {pid}), reusing it" in again.stdout
    assert tree.hvsim_pid() == pid
    # (the make line now sees the first run's ready line: hvsim was not restarted)
    assert tree.calls()[4:] == [
        "pulumi version |  |  | 1",
        "make --no-print-directory venv |  |  | 1",
        *tree.calls()[2:4],
    ]


def test_restarts_hvsim_when_the_recorded_one_is_gone(tree: Tree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    (tree.root / ".hvsim").mkdir()
    (tree.root / ".hvsim" / "hvsim.log").write_text("hvsim ready: an old run\n")
    (tree.root / ".hvsim" / "hvsim.pid").write_text("999999\n")  # no such process

    result = tree.run()

    assert result.returncode == 0, result.stderr
    assert "hvsim started" in result.stdout
    pid = tree.hvsim_pid()
    assert pid != 999999 and pid is not None and _alive(pid)


def test_hvsim_that_cannot_start_stops_the_demo_before_pulumi(tree: Tree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    (tree.root / "hvsim.dev.toml").write_text('[[host]]\nfqdn = "host1.contoso.com"\naddress = "10.0.0.1"\n')

    result = tree.run()

    assert result.returncode != 0
    assert "hvsim exited before it was ready" in result.stderr
    assert "must be a loopback address" in result.stderr  # hvsim's own error, from its log
    assert [line.split()[0] for line in tree.calls()] == ["pulumi", "make"]


def test_keeps_a_passphrase_the_user_set(tree: Tree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)

    assert tree.run(PULUMI_CONFIG_PASSPHRASE="mine").returncode == 0

    pulumi_calls = [line for line in tree.calls() if line.startswith(("pulumi stack", "pulumi up"))]
    assert len(pulumi_calls) == 2 and all(line.endswith("| mine | 1") for line in pulumi_calls)


def test_stops_at_the_first_failing_step(tree: Tree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    tree.stand_in("make", exit_code=2)

    result = tree.run()

    assert result.returncode == 2
    # A failed venv install never starts hvsim nor reaches Pulumi.
    assert [line.split()[0] for line in tree.calls()] == ["pulumi", "make"]
    assert not (tree.root / ".hvsim").exists()
