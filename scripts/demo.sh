#!/usr/bin/env bash
# `make demo`: the demo stack `dev` against the hvsim lab of hvsim.dev.toml (two emulated Hyper-V hosts,
# state in .hvsim/), through the real Pulumi CLI, with Pulumi state kept inside the repository.
#
#   scripts/demo.sh                 pulumi up of stack dev (what `make demo` runs)
#   scripts/demo.sh ARGS...         any other pulumi command on the same stack, e.g.
#                                   `scripts/demo.sh preview --diff`, `scripts/demo.sh refresh --yes`,
#                                   `scripts/demo.sh destroy --yes`, `scripts/demo.sh stack output`
#
# The CLI is `pulumi` from PATH (>= 3.139) or .pulumi-bin/, which `make pulumi-cli` builds from the Go module
# proxy the first time (a few minutes). hvsim is started in the background unless it already runs, and keeps
# running afterwards; the script prints how to stop it. Re-running is idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The CLI first: without one (and without Go to build one) nothing else is touched.
make --no-print-directory pulumi-cli
make --no-print-directory venv
pulumi_run=(.venv/bin/python scripts/pulumi_run.py)

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

trap 'echo "hvsim keeps running for the next \`make demo\`; stop it with: kill \$(cat '"$hvsim_pidfile"')"' EXIT

# Local state backend: no Pulumi Cloud account, the checkpoint stays under .pulumi-state/ (git-ignored).
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="file://$root/.pulumi-state"
# The dev passphrase only protects the demo's local secrets; real stacks set their own.
if [[ -z "${PULUMI_CONFIG_PASSPHRASE+set}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    export PULUMI_CONFIG_PASSPHRASE="hvreplica-dev-only"
fi

"${pulumi_run[@]}" stack select --create dev --non-interactive
if (($# == 0)); then
    "${pulumi_run[@]}" up --yes --stack dev --non-interactive
    cat <<'NEXT'

The demo stack is up. Try next (each runs the real pulumi CLI on stack dev):
  scripts/demo.sh preview --diff          what would change (contacts no host)
  scripts/demo.sh stack output --json     thumbprints, expiry dates and replication states
  scripts/demo.sh refresh --yes           read every resource back from the hosts (drift)
  make demo                               converge again (no change when nothing changed)
  scripts/demo.sh destroy --yes           undo everything on the hosts (replica VMs are kept)
NEXT
else
    "${pulumi_run[@]}" "$@" --stack dev --non-interactive
fi
