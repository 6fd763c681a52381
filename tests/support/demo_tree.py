"""A temporary copy of the repository's demo layer for running scripts/demo.sh (what `make demo` runs).

The tree holds the scripts, the root program with its Pulumi.yaml and Pulumi.dev.yaml, the committed
hvsim.dev.toml moved to the caller's loopback addresses and free ports, and links to the project's venv.
`make` is a stand-in that records its argv and, for `make pulumi-cli`, runs the real scripts/pulumi-cli.sh
(so a missing CLI or Go is handled for real); `make venv` is a no-op since the venv is linked. Stand-in
`pulumi` executables can be added; the real CLI is linked as .pulumi-bin/ with `link_built_cli`.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.engine import PROJECT_DIR
from tests.support.hvsim_env import to_toml
from tests.support.topology_lab import lab_dict

# A PATH with the system tools but neither a `pulumi` nor Go (Go lives in /usr/local/go/bin here).
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
DEMO_FILES = (
    "scripts/demo.sh",
    "scripts/pulumi-cli.sh",
    "scripts/pulumi-version",
    "scripts/pulumi_run.py",
    "Pulumi.yaml",
    "Pulumi.dev.yaml",
    "__main__.py",
)


@dataclass
class DemoTree:
    root: Path
    bin_dir: Path
    log: Path

    @classmethod
    def create(cls, root: Path, addresses: tuple[str, str]) -> DemoTree:
        for name in DEMO_FILES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_DIR / name, root / name)
        (root / ".venv").symlink_to(PROJECT_DIR / ".venv")
        (root / "hvsim.dev.toml").write_text(to_toml(lab_dict(list(addresses))))
        (root / "fakebin").mkdir()
        tree = cls(root, root / "fakebin", root / "calls.log")
        tree.stand_in("make", runs_for={"pulumi-cli": "bash scripts/pulumi-cli.sh"})
        return tree

    def stand_in(
        self, name: str, exit_code: int = 0, prints: str = "", runs_for: dict[str, str] | None = None
    ) -> None:
        """An executable that appends `name argv | backend | passphrase | hvsim ready lines` to the log,
        prints `prints` and exits with `exit_code`, or, when its last argument is a key of `runs_for`,
        runs that command instead of exiting."""
        record = f"{name} $* | $PULUMI_BACKEND_URL | $PULUMI_CONFIG_PASSPHRASE | ${{ready:-0}}"
        lines = [
            "#!/bin/sh",
            f'ready=$(grep -c "^hvsim ready" "{self.root}/.hvsim/hvsim.log" 2>/dev/null)',
            f'echo "{record}" >> "{self.log}"',
        ]
        for last, command in (runs_for or {}).items():
            lines.append(f'for last; do :; done; [ "$last" = "{last}" ] && exec {command}')
        lines += [f'printf "%s" "{prints}"', f"exit {exit_code}"]
        script = self.bin_dir / name
        script.write_text("\n".join(lines) + "\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)

    def link_built_cli(self) -> None:
        """The real CLI the tests found, as this tree's .pulumi-bin/ (what `make pulumi-cli` builds)."""
        (self.root / ".pulumi-bin").symlink_to(PROJECT_DIR / ".pulumi-bin")

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        return subprocess.run(
            [str(self.root / "scripts" / "demo.sh"), *args],
            cwd=self.root,
            env={
                **clean,
                "PATH": f"{self.bin_dir}:{BASE_PATH}",
                "PULUMI_HOME": str(self.root / ".pulumi-home"),
                # The program and its provider import this checkout's package, whatever the venv links.
                "PYTHONPATH": str(PROJECT_DIR),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def hvsim_pid(self) -> int | None:
        pidfile = self.root / ".hvsim" / "hvsim.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None

    def stop_hvsim(self) -> None:
        """The script leaves hvsim running by design: stop this tree's."""
        pid = self.hvsim_pid()
        if pid is None or not alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
