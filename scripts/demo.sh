#!/usr/bin/env bash
# `make demo`: start the hvsim lab of the demo (two emulated Hyper-V hosts, state in .hvsim/) in the
# background unless it already runs, then run the demo stack `dev` with Pulumi state kept inside the
# repository. hvsim keeps running afterwards; the script prints how to stop it.
# Idempotent: re-running reuses the running lab and runs `pulumi up` again (no change when nothing changed).
set -euo pipefail

# Check the CLI before touching anything, so a machine without Pulumi is left exactly as it was.
if ! command -v pulumi >/dev/null 2>&1; then
    cat >&2 <<'MSG'
error: the `pulumi` CLI is not on PATH; `make demo` needs Pulumi CLI >= 3.139.
Install it, open a new shell (or add ~/.pulumi/bin to PATH), then run `make demo` again:
  Linux or macOS:  curl -fsSL https://get.pulumi.com | sh
  macOS (Homebrew): brew install pulumi
  Other options:   https://www.pulumi.com/docs/install/
MSG
    exit 1
fi
# An older CLI would only fail in `pulumi up`, after the venv install and the hvsim start.
pulumi_version="$(pulumi version 2>/dev/null || true)"
if [[ ! "$pulumi_version" =~ ^v?([0-9]+)\.([0-9]+) ]] \
    || ((BASH_REMATCH[1] < 3 || (BASH_REMATCH[1] == 3 && BASH_REMATCH[2] < 139))); then
    echo "error: \`make demo\` needs Pulumi CLI >= 3.139, \`pulumi version\` says '${pulumi_version}';" \
        "upgrade it (https://www.pulumi.com/docs/install/) and run \`make demo\` again" >&2
    exit 1
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

make --no-print-directory venv

# The emulated hosts of Pulumi.dev.yaml (hvreplica:hvsim points at the same config and state directory).
hvsim_config="hvsim.dev.toml"
hvsim_state=".hvsim"
hvsim_log="$hvsim_state/hvsim.log"
hvsim_pidfile="$hvsim_state/hvsim.pid"
mkdir -p "$hvsim_state"

hvsim_running() {
    local pid
    pid="$(cat "$hvsim_pidfile" 2>/dev/null)" || return 1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && ps -p "$pid" -o args= | grep -q "hvsim serve"
}

if hvsim_running; then
    echo "hvsim already running (pid $(cat "$hvsim_pidfile")), reusing it"
else
    offset=0
    if [[ -f "$hvsim_log" ]]; then
        offset="$(wc -c <"$hvsim_log")"
    fi
    nohup .venv/bin/python -u -m hvsim serve --config "$hvsim_config" --state-dir "$hvsim_state" \
        >>"$hvsim_log" 2>&1 </dev/null &
    echo $! >"$hvsim_pidfile"
    # Wait for this run's `hvsim ready` line; give up when the process dies or after 60 s.
    for _ in $(seq 1 600); do
        if tail -c +"$((offset + 1))" "$hvsim_log" | grep -q '^hvsim ready'; then
            break
        fi
        if ! kill -0 "$(cat "$hvsim_pidfile")" 2>/dev/null; then
            echo "error: hvsim exited before it was ready; its log ($hvsim_log) ends with:" >&2
            tail -n 20 "$hvsim_log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if ! tail -c +"$((offset + 1))" "$hvsim_log" | grep -q '^hvsim ready'; then
        echo "error: hvsim was not ready within 60 s; see $hvsim_log" >&2
        kill "$(cat "$hvsim_pidfile")" 2>/dev/null || true
        exit 1
    fi
    echo "hvsim started (pid $(cat "$hvsim_pidfile"), log $hvsim_log)"
fi
stop_hint="hvsim keeps running for the next \`make demo\`; stop it with: kill \$(cat $hvsim_pidfile)"

# Local state backend: no Pulumi Cloud account, the checkpoint stays under .pulumi-state/ (git-ignored).
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="file://$root/.pulumi-state"
# The dev passphrase only protects the demo's local secrets; real stacks set their own.
if [[ -z "${PULUMI_CONFIG_PASSPHRASE+set}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    export PULUMI_CONFIG_PASSPHRASE="hvreplica-dev-only"
fi

trap 'echo "$stop_hint"' EXIT
pulumi stack select --create dev --non-interactive
pulumi up --yes --stack dev --non-interactive
