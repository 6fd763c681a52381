"""Run the real Pulumi CLI on a Python project of this repository: `python scripts/pulumi_run.py ARGS...`.

Used by `make demo`, the end-to-end tests and `bench/stack_scale.py`, with the project directory as the
working directory. ARGS are `pulumi` arguments (`up --yes --stack dev`, `preview --diff`, ...).

The CLI is `pulumi` from PATH when it is >= 3.139, else `.pulumi-bin/pulumi` (`make pulumi-cli` builds it).
The CLI runs a Python program through a language host, the `pulumi-language-python` plugin. Where that
plugin is installed (any regular Pulumi installation), the CLI is simply executed. The Go module proxy
serves the CLI and the SDK module but not the language host's module, so a CLI built by
`make pulumi-cli` has none. Then the program runs the way Pulumi's Automation API runs inline programs:
the Python SDK's own language server (`pulumi.automation._server.LanguageServer`) serves the program in
this process and the CLI is pointed at it with `--client`. Everything else (engine, state, secrets,
diffs, the dynamic-provider plugin process) is the real CLI's.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
from concurrent import futures
from pathlib import Path

MIN_VERSION = (3, 139)
ROOT = Path(__file__).resolve().parent.parent
BUILT_BIN = ROOT / ".pulumi-bin"
# Commands that run the program (or may: refresh and destroy with --run-program).
PROGRAM_COMMANDS = frozenset({"up", "update", "preview", "pre", "refresh", "destroy"})
OFFLINE_ENV = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
}


class CliNotFound(RuntimeError):
    """No usable Pulumi CLI: the message says how to get one."""


def _version(pulumi: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([pulumi, "version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v?(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2])) if match else None


def find_cli() -> Path:
    """The `pulumi` to use: PATH's when >= 3.139, else the one `make pulumi-cli` built."""
    on_path = shutil.which("pulumi")
    if on_path and (_version(on_path) or (0, 0)) >= MIN_VERSION:
        return Path(on_path)
    built = BUILT_BIN / "pulumi"
    if built.is_file() and (_version(str(built)) or (0, 0)) >= MIN_VERSION:
        return built
    raise CliNotFound(
        "no Pulumi CLI >= 3.139: none on PATH and none in .pulumi-bin/; run `make pulumi-cli` (builds one "
        "from the Go module proxy, once, a few minutes) or install it (https://www.pulumi.com/docs/install/)"
    )


def cli_env(cli: Path) -> dict[str, str]:
    """The environment for `cli`: its directory first on PATH (the engine finds the bundled
    dynamic-provider launcher `pulumi-resource-pulumi-python` there) and no update checks or plugin
    downloads (the machines reach no Pulumi service)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(cli.parent), env.get("PATH", "")])
    for key, value in OFFLINE_ENV.items():
        env.setdefault(key, value)
    return env


def has_language_host(env: dict[str, str]) -> bool:
    """Whether the CLI will find a Python language host (any regular Pulumi installation has one)."""
    return shutil.which("pulumi-language-python", path=env["PATH"]) is not None


def _project_settings(project_dir: Path) -> dict:
    import yaml  # PyYAML comes with the pulumi SDK

    return yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}


def runtime_option_env(settings: dict) -> dict[str, str]:
    """`PULUMI_RUNTIME_<KEY>` for each `runtime.options` key of Pulumi.yaml. The engine exports them to
    the plugins a language host starts; a CLI driven with `--client` does not, and the dynamic-provider
    launcher needs `PULUMI_RUNTIME_VIRTUALENV` to find the project's venv."""
    runtime = settings.get("runtime")
    options = runtime.get("options") if isinstance(runtime, dict) else None
    return {f"PULUMI_RUNTIME_{k.upper()}": str(v) for k, v in (options or {}).items()}


def run(args: list[str], project_dir: Path | None = None) -> int:
    """Run `pulumi ARGS` for the project in `project_dir` (default: the working directory); the
    CLI's exit code."""
    project_dir = (project_dir or Path.cwd()).resolve()
    cli = find_cli()
    env = cli_env(cli)
    command = next((a for a in args if not a.startswith("-")), "")
    if command not in PROGRAM_COMMANDS or has_language_host(env):
        return _wait([str(cli), *args], project_dir, env)

    import grpc
    from pulumi.automation._server import LanguageServer
    from pulumi.runtime.proto import language_pb2_grpc

    settings = _project_settings(project_dir)
    # The directory the language host would run: Pulumi.yaml's `main:` or the project directory.
    program_dir = (project_dir / str(settings.get("main") or ".")).resolve()
    env = {**runtime_option_env(settings), **env}

    def program() -> None:
        # As the language host does: the program directory is the working directory and on sys.path.
        os.chdir(program_dir)
        runpy.run_path(str(program_dir), run_name="__main__")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageServer(program), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        inline = [f"--client=127.0.0.1:{port}", "--exec-kind", "inline"]
        return _wait([str(cli), *args, *inline], project_dir, env)
    finally:
        server.stop(0)


def _wait(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run the CLI in the foreground and wait for it, serving the program meanwhile. Ctrl-C reaches the
    CLI through the terminal's process group (it cancels the operation cleanly; a second one forces it),
    so this process ignores SIGINT rather than doubling it; SIGTERM is passed on."""
    child = subprocess.Popen(argv, cwd=cwd, env=env)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, lambda _signum, _frame: None),
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
    }
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    try:
        sys.exit(run(sys.argv[1:]))
    except CliNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
