"""scripts/demo.sh (what `make demo` runs), run from a copy of the script in a temporary tree.

The Pulumi CLI cannot be installed here. The missing-CLI path is exercised for real; the other
paths use stand-in `pulumi` and `make` executables that only record their argv and environment,
which tests OUR script's sequence (the component under test), not Pulumi.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.engine import PROJECT_DIR

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Tree:
    """A temporary repository holding scripts/demo.sh, with a directory for stand-in executables."""

    root: Path
    bin_dir: Path
    log: Path

    def stand_in(self, name: str, exit_code: int = 0) -> None:
        """An executable that appends `name argv | backend | passphrase` to the log."""
        script = self.bin_dir / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{name} $* | $PULUMI_BACKEND_URL | $PULUMI_CONFIG_PASSPHRASE" >> "{self.log}"\n'
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


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    (tmp_path / "scripts").mkdir()
    shutil.copy2(PROJECT_DIR / "scripts" / "demo.sh", tmp_path / "scripts" / "demo.sh")
    (tmp_path / "fakebin").mkdir()
    tree = Tree(tmp_path, tmp_path / "fakebin", tmp_path / "calls.log")
    tree.stand_in("make")
    return tree


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


def test_runs_venv_stack_and_up_in_order_with_local_state(tree: Tree) -> None:
    tree.stand_in("pulumi")

    result = tree.run()

    assert result.returncode == 0, result.stderr
    backend = f"file://{tree.root}/.pulumi-state"
    assert tree.calls() == [
        "make --no-print-directory venv |  | ",
        f"pulumi stack select --create dev --non-interactive | {backend} | hvreplica-dev-only",
        f"pulumi up --yes --stack dev --non-interactive | {backend} | hvreplica-dev-only",
    ]
    assert (tree.root / ".pulumi-state").is_dir()

    # Idempotent: a second run does the same and succeeds with the state directory already there.
    assert tree.run().returncode == 0
    assert tree.calls()[3:] == tree.calls()[:3]


def test_keeps_a_passphrase_the_user_set(tree: Tree) -> None:
    tree.stand_in("pulumi")

    assert tree.run(PULUMI_CONFIG_PASSPHRASE="mine").returncode == 0

    pulumi_calls = [line for line in tree.calls() if line.startswith("pulumi")]
    assert len(pulumi_calls) == 2 and all(line.endswith("| mine") for line in pulumi_calls)


def test_stops_at_the_first_failing_step(tree: Tree) -> None:
    tree.stand_in("pulumi")
    tree.stand_in("make", exit_code=2)

    result = tree.run()

    assert result.returncode == 2
    # A failed venv install never reaches Pulumi.
    assert [line.split()[0] for line in tree.calls()] == ["make"]
