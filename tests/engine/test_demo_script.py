"""scripts/demo.sh (what `make demo` runs): its sequence and failure paths, in a temporary copy of the demo.

The missing-CLI and missing-Go paths run scripts/pulumi-cli.sh for real. The sequencing tests use a
stand-in `pulumi` that only records its argv, environment and whether hvsim had announced itself ready;
they test OUR script's order of steps. hvsim is real. The real CLI running the demo end to end is
tests/e2e/test_demo_script_e2e.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.demo_tree import BASE_PATH, DemoTree, alive

CLI_VERSION = "v3.272.0"  # what the stand-in `pulumi` prints (the scripts check `pulumi version`)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[DemoTree]:
    tree = DemoTree.create(tmp_path, ("127.84.0.11", "127.84.0.12"))
    yield tree
    tree.stop_hvsim()


def pulumi_calls(tree: DemoTree) -> list[str]:
    """The stand-in pulumi's calls other than `pulumi version` (each script step checks the version)."""
    return [c for c in tree.calls() if c.startswith("pulumi ") and not c.startswith("pulumi version")]


def test_no_cli_and_no_go_says_how_to_get_either_and_touches_nothing(tree: DemoTree) -> None:
    assert shutil.which("pulumi", path=f"{tree.bin_dir}:{BASE_PATH}") is None, "needs a PATH without pulumi"
    assert shutil.which("go", path=f"{tree.bin_dir}:{BASE_PATH}") is None, "needs a PATH without go"
    before = sorted(p.name for p in tree.root.iterdir())

    result = tree.run()

    assert result.returncode != 0
    assert "https://www.pulumi.com/docs/install/" in result.stderr
    assert "no Go toolchain to build one" in result.stderr and "make pulumi-cli" in result.stderr
    assert tree.calls() == ["make --no-print-directory pulumi-cli |  |  | 0"]  # no venv, no hvsim
    assert sorted(p.name for p in tree.root.iterdir()) == sorted([*before, "calls.log"])


def test_too_old_cli_is_not_used(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints="v3.120.1")

    result = tree.run()

    assert result.returncode != 0
    assert "'v3.120.1' (< 3.139)" in result.stdout and "no Go toolchain" in result.stderr
    steps = [c.split(" |")[0] for c in tree.calls()]
    assert steps == ["make --no-print-directory pulumi-cli", "pulumi version"]


def test_starts_hvsim_then_runs_stack_and_up_with_local_state(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)

    result = tree.run()

    assert result.returncode == 0, result.stderr
    backend = f"file://{tree.root}/.pulumi-state"
    calls = tree.calls()
    assert [c.split(" |")[0] for c in calls[:3]] == [
        "make --no-print-directory pulumi-cli",
        "pulumi version",  # pulumi-cli.sh: a CLI on PATH, nothing to build
        "make --no-print-directory venv",
    ]
    # hvsim had printed its ready line before Pulumi ran (the last field); without a language host the
    # runner serves the program itself and points the CLI at it.
    select, up = pulumi_calls(tree)
    state = f"| {backend} | hvreplica-dev-only | 1"
    assert select == f"pulumi stack select --create dev --non-interactive {state}"
    assert up.startswith("pulumi up --yes --stack dev --non-interactive --client=127.0.0.1:")
    assert up.endswith(f"--exec-kind inline {state}")
    assert (tree.root / ".pulumi-state").is_dir()
    pid = tree.hvsim_pid()
    assert pid is not None and alive(pid), "hvsim keeps running after the script"
    assert f"hvsim started in the background (pid {pid}, log .hvsim/hvsim.log)" in result.stdout
    stop_hint = "stop it with: .venv/bin/python -m hvsim stop --config hvsim.dev.toml --state-dir .hvsim"
    assert stop_hint in result.stdout
    assert "scripts/demo.sh preview --diff" in result.stdout  # what to try next

    # Idempotent: a second run reuses the running hvsim and does the same.
    again = tree.run()
    assert again.returncode == 0, again.stderr
    assert f"hvsim already running (pid {pid}, log .hvsim/hvsim.log), reusing it" in again.stdout
    assert tree.hvsim_pid() == pid
    assert len(pulumi_calls(tree)) == 4

    # Any other pulumi command goes to the same stack.
    preview = tree.run("preview", "--diff")
    assert preview.returncode == 0, preview.stderr
    assert pulumi_calls(tree)[-1].startswith("pulumi preview --diff --stack dev --non-interactive --client=")
    assert "The demo stack is up" not in preview.stdout


def test_restarts_hvsim_when_the_recorded_one_is_gone(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    (tree.root / ".hvsim").mkdir()
    (tree.root / ".hvsim" / "hvsim.log").write_text("hvsim ready: an old run\n")
    (tree.root / ".hvsim" / "hvsim.pid").write_text("999999\n")  # no such process

    result = tree.run()

    assert result.returncode == 0, result.stderr
    assert "hvsim started" in result.stdout
    pid = tree.hvsim_pid()
    assert pid != 999999 and pid is not None and alive(pid)


def test_hvsim_that_cannot_start_stops_the_demo_before_pulumi(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    (tree.root / "hvsim.dev.toml").write_text('[[host]]\nfqdn = "host1.contoso.com"\naddress = "10.0.0.1"\n')

    result = tree.run()

    assert result.returncode != 0
    assert "hvsim exited before it was ready" in result.stderr
    assert "must be a loopback address" in result.stderr  # hvsim's own error, from its log
    assert pulumi_calls(tree) == []


def test_keeps_a_passphrase_the_user_set(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)

    assert tree.run(PULUMI_CONFIG_PASSPHRASE="mine").returncode == 0

    calls = pulumi_calls(tree)
    assert len(calls) == 2 and all(line.endswith("| mine | 1") for line in calls)


def test_stops_at_the_first_failing_step(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    tree.stand_in("make", exit_code=2, runs_for={"pulumi-cli": "bash scripts/pulumi-cli.sh"})

    result = tree.run()

    assert result.returncode == 2
    # A failed venv install never starts hvsim nor reaches Pulumi.
    assert [c.split(" |")[0] for c in tree.calls()] == [
        "make --no-print-directory pulumi-cli", "pulumi version", "make --no-print-directory venv",
    ]
    assert not (tree.root / ".hvsim").exists()


def test_a_cli_with_its_python_language_host_runs_the_program_itself(tree: DemoTree) -> None:
    tree.stand_in("pulumi", prints=CLI_VERSION)
    tree.stand_in("pulumi-language-python")  # as any regular Pulumi installation has

    result = tree.run()

    assert result.returncode == 0, result.stderr
    state = f"| file://{tree.root}/.pulumi-state | hvreplica-dev-only | 1"
    assert pulumi_calls(tree)[-1] == f"pulumi up --yes --stack dev --non-interactive {state}"
