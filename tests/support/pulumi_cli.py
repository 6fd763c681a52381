"""Drive the REAL Pulumi CLI over a copy of one of this repository's Pulumi projects.

A `CliProject` copies a project (the root demo program or an example) into a test's temporary directory,
points its `virtualenv` at the repository's venv, writes the stack's config file, and runs `pulumi`
commands through `scripts/pulumi_run.py` (the same entry point `make demo` uses) with a `file://`
backend, a passphrase secrets provider and a `PULUMI_HOME` of its own, all inside the temporary
directory. Nothing is mocked: the CLI's engine plans, diffs and writes the state; the CLI starts the
dynamic-provider plugin, which talks WinRM to hvsim.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = REPO_ROOT / "scripts" / "pulumi_run.py"
PASSPHRASE = "e2e-test-passphrase"
# One `pulumi` command may wait for initial replications; far below the suite's 300 s test timeout.
COMMAND_TIMEOUT_SEC = 240


@dataclass
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def ok(self) -> CliResult:
        command = " ".join(self.args)
        assert self.returncode == 0, f"pulumi {command} failed ({self.returncode}):\n{self.output}"
        return self


def kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


class CliProject:
    """A copy of a Pulumi project of this repository with one stack, driven by the real CLI."""

    def __init__(self, source: Path, workdir: Path, stack: str, config: Mapping[str, Any]) -> None:
        self.dir = workdir / "project"
        self.stack = stack
        self.timeout = COMMAND_TIMEOUT_SEC
        # The program's own files only: the package comes from this checkout through PYTHONPATH.
        self.dir.mkdir(parents=True)
        for path in source.iterdir():
            if path.is_file() and (path.suffix in (".py", ".toml") or path.name == "Pulumi.yaml"):
                shutil.copy2(path, self.dir / path.name)
        settings = yaml.safe_load((self.dir / "Pulumi.yaml").read_text())
        settings["runtime"]["options"]["virtualenv"] = str(REPO_ROOT / ".venv")
        (self.dir / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        self.state_dir = workdir / "state"
        self.state_dir.mkdir()
        self.env = {
            **os.environ,
            "PULUMI_BACKEND_URL": f"file://{self.state_dir}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_HOME": str(workdir / "pulumi-home"),
            "USER": os.environ.get("USER") or "hvreplica-e2e",
            # The program and the provider plugin import this checkout's package, whatever is installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        self.write_config(config)
        self.run("stack", "init", stack).ok()

    def write_config(self, config: Mapping[str, Any]) -> None:
        """The stack's Pulumi.<stack>.yaml: `config` replaced, the rest kept (the `encryptionsalt` that
        `pulumi stack init` wrote for the passphrase secrets provider)."""
        path = self.dir / f"Pulumi.{self.stack}.yaml"
        existing = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
        path.write_text(yaml.safe_dump({**existing, "config": dict(config)}, sort_keys=False))

    def run(self, *args: str) -> CliResult:
        """`pulumi ARGS` to completion. Past `self.timeout` the whole process group (runner, CLI, provider
        plugin) is killed, so a hung command leaves nothing running."""
        proc = self.popen(*args, merge_output=False)
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise
        return CliResult(args, proc.returncode, stdout, stderr)

    def popen(self, *args: str, merge_output: bool = True) -> subprocess.Popen[str]:
        """A CLI command in the background, in a process group of its own (signals reach all of it)."""
        return subprocess.Popen(
            [sys.executable, str(RUNNER), *args, "--non-interactive", *self._stack_flag(args)],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def stray_processes(self) -> list[int]:
        """Processes still working in the project directory (a provider plugin whose CLI was killed:
        the CLI ends its plugins only when it exits normally). Linux /proc."""
        strays = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if Path(os.readlink(entry / "cwd")) == self.dir:
                        strays.append(int(entry.name))
                except OSError:
                    continue
        return strays

    def _stack_flag(self, args: tuple[str, ...]) -> list[str]:
        return [] if args[:2] == ("stack", "init") else ["--stack", self.stack]

    def up(self, *flags: str) -> CliResult:
        return self.run("up", "--yes", "--skip-preview", *flags).ok()

    def preview(self, *flags: str) -> CliResult:
        return self.run("preview", *flags)

    def refresh(self, *flags: str) -> CliResult:
        return self.run("refresh", "--yes", "--skip-preview", *flags).ok()

    def destroy(self, *flags: str) -> CliResult:
        return self.run("destroy", "--yes", "--skip-preview", *flags).ok()

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "output", "--json").ok().stdout)

    def export(self, show_secrets: bool = False) -> str:
        flags = ("--show-secrets",) if show_secrets else ()
        return self.run("stack", "export", *flags).ok().stdout

    def restore_checkpoint_backup(self) -> None:
        """What an operator does when a killed CLI left the file backend's checkpoint unreadable ("failed
        to load checkpoint"): put back the previous checkpoint, which the backend keeps as `.bak`."""
        (checkpoint,) = self.state_dir.glob(f".pulumi/stacks/*/{self.stack}.json")
        backup = checkpoint.with_name(checkpoint.name + ".bak")
        shutil.copyfile(backup, checkpoint)

    def state_files_text(self) -> str:
        """Every file of the backend directory (checkpoints, history, backups, stack config), as text."""
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.state_dir.rglob("*")) if p.is_file()
        )
