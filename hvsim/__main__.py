"""Command line (`hvsim`, or `python -m hvsim`): `serve --config FILE` and the admin subcommands against a
running server. Every admin subcommand prints what it did, or the data it was asked for.

hvsim serve --config lab.toml [--state-dir .hvsim] [--time-scale 60]
hvsim start|stop --config lab.toml [--state-dir .hvsim]   (serve in the background / stop that)
hvsim add-vm|remove-vm|stop-vm|start-vm HOST VM (--admin ADDR | --config FILE)
hvsim dump HOST [--section vms|replication|certificates|registry|firewall|hosts] (--admin ... | --config ...)
hvsim clear-faults|counters HOST (--admin ADDR | --config FILE)
hvsim fault HOST latency MS | drop-nth N | http500 COUNT | restart-vmms (--admin ... | --config ...)
hvsim client-cert --state-dir DIR --user NAME --cert OUT.pem --key OUT.key
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvsim import background
from hvsim.admin import DUMP_SECTIONS, AdminError, call
from hvsim.config import ConfigError, load_config
from hvsim.faults import FaultKind

if TYPE_CHECKING:
    from hvsim.server import Emulator

DEFAULT_STATE_DIR = ".hvsim"
_READY_TIMEOUT = 30.0


class MissingExtraError(RuntimeError):
    """The emulator's server-side packages are not installed."""


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the admin subcommands are short-lived clients that need none of the emulator, and
    # only the server needs the packages of the `sim` extra.
    try:
        from hvsim.server import Emulator
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"hvsim serve needs {exc.name}, which comes with the sim extra: pip install 'hvreplica[sim]'"
        ) from None

    emulator = Emulator(args.config, args.state_dir, time_scale=args.time_scale)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    emulator.start()
    try:
        _wait_until_accepting(emulator)
        hosts = " ".join(
            f"{h.fqdn}={scheme}://{h.address}:{emulator.listener_port(h.fqdn, scheme)}"
            for h in emulator.config.hosts
            for scheme, _ in h.listeners[:1]  # the HTTPS listener, or HTTP on a host without one
        )
        print(
            f"{background.READY_PREFIX}: {len(emulator.config.hosts)} host(s) "
            f"ca={emulator.ca_pem_path.resolve()} admin={emulator.admin_address or 'none'} "
            f"state={Path(args.state_dir).resolve()} hosts: {hosts}",
            flush=True,
        )
        # Wake up now and then: Python runs signal handlers only in the main thread, between bytecodes,
        # and the kernel may deliver SIGTERM to another thread while this one sleeps in a lock.
        while not stop.wait(0.2):
            pass
    finally:
        emulator.stop()  # saves the lab state
    print(background.STOPPED_LINE, flush=True)
    return 0


def _start(args: argparse.Namespace) -> int:
    started = background.start(Path(args.config), Path(args.state_dir))
    if started.reused:
        print(f"hvsim already running (pid {started.pid}, log {started.log}), reusing it")
    else:
        print(f"hvsim started in the background (pid {started.pid}, log {started.log})")
        print(started.ready)
    print(f"stop it with: {_this_command()} stop --config {args.config} --state-dir {args.state_dir}")
    return 0


def _this_command() -> str:
    """How the user ran hvsim: the `hvsim` script, or `python -m hvsim` with this interpreter (e.g. from
    `make lab`, where `hvsim` is not on PATH)."""
    if Path(sys.argv[0]).stem == "hvsim":
        return "hvsim"
    python = Path(sys.executable)
    shown = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    return f"{shown} -m hvsim"


def _stop(args: argparse.Namespace) -> int:
    pid = background.stop(Path(args.config), Path(args.state_dir))
    print(f"hvsim (pid {pid}) stopped" if pid is not None else f"no hvsim serving {args.config} runs")
    return 0


def _wait_until_accepting(emulator: Emulator) -> None:
    """Connect to every listener once, so "ready" is only printed when all of them accept connections."""
    deadline = time.monotonic() + _READY_TIMEOUT
    for h in emulator.config.hosts:
        for port in (emulator.listener_port(h.fqdn, scheme) for scheme, _ in h.listeners):
            while True:
                try:
                    socket.create_connection((h.address, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def _admin_address(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin)
    config = load_config(args.config)
    if not config.settings.admin:
        raise AdminError(f'{args.config} has no settings.admin: add admin = "127.0.0.1:5990" or pass --admin')
    return config.settings.admin


def _admin(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {}
    if args.command in ("add-vm", "remove-vm", "stop-vm", "start-vm"):
        fields["name"] = args.vm
    elif args.command == "dump" and args.section:
        fields["section"] = args.section
    elif args.command == "fault":
        fields["kind"] = args.kind
        if args.kind != FaultKind.RESTART_VMMS.value:
            if args.value is None:
                raise AdminError(f"fault {args.kind} needs a value (milliseconds, N or a count)")
            fields["value"] = args.value
    result = call(_admin_address(args), args.command, args.host, **fields)
    # Sentences (what was done) and the hosts file are text; everything else is data.
    print(result if isinstance(result, str) else json.dumps(result, indent=2, sort_keys=True))
    return 0


def _client_cert(args: argparse.Namespace) -> int:
    from hvsim.listener_tls import issue_client_certificate

    paths = issue_client_certificate(
        args.state_dir, args.user, args.cert, args.key, upn_suffix=args.upn_suffix
    )
    print(f"client certificate for {args.user}: cert={paths.cert} key={paths.key}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hvsim", description="Emulated Hyper-V hosts over WinRM/PSRP")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start every host of the config and serve until SIGINT/SIGTERM")
    serve.add_argument("--config", required=True, help="lab TOML file")
    serve.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="state directory (default .hvsim/)")
    serve.add_argument("--time-scale", type=float, help="emulated seconds per real second (overrides config)")
    serve.set_defaults(func=_serve)
    for name, func, text in (
        ("start", _start, "serve in the background (pid and log in the state directory), or reuse it"),
        ("stop", _stop, "stop the lab `start` started"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="lab TOML file")
        p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="state directory (default .hvsim/)")
        p.set_defaults(func=func)

    def admin_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--admin", help="admin endpoint HOST:PORT of the running server")
        where.add_argument("--config", help="lab TOML file (its settings.admin is used)")
        p.add_argument("host", help="the host's FQDN")
        p.set_defaults(func=_admin)
        return p

    for name, text in (
        ("add-vm", "add a running VM"),
        ("remove-vm", "remove a VM"),
        ("stop-vm", "power a VM off"),
        ("start-vm", "start a VM"),
    ):
        admin_parser(name, text).add_argument("vm", help="VM name")
    admin_parser("dump", "print one host's state as JSON").add_argument(
        "--section",
        choices=DUMP_SECTIONS,
        help="only this part: the VMs, their replication (with the server settings and authorization "
        "entries), the certificate stores, the registry, the firewall rules or the hosts file (as text)",
    )
    fault = admin_parser("fault", "inject a fault into a host's WinRM service")
    fault.add_argument("kind", choices=[k.value for k in FaultKind])
    fault.add_argument("value", nargs="?", type=int, help="latency ms | drop the Nth request | http500 count")
    admin_parser("clear-faults", "remove every injected fault of a host")
    admin_parser("counters", "print a host's request counters as JSON")

    cert = sub.add_parser("client-cert", help="issue a WinRM client certificate for a local user")
    cert.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    cert.add_argument("--user", required=True, help="local account the certificate maps to")
    cert.add_argument("--cert", required=True, help="output PEM certificate path")
    cert.add_argument("--key", required=True, help="output PEM private key path (mode 0600)")
    cert.add_argument("--upn-suffix", default="localhost", help="UPN suffix (user@SUFFIX)")
    cert.set_defaults(func=_client_cert)
    return parser


# Failures the user can fix: one line on stderr, exit status 2, no traceback.
_REPORTED = (AdminError, ConfigError, MissingExtraError, background.BackgroundError, OSError, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _REPORTED as exc:
        print(f"hvsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
