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
# proxy the first time (a few minutes). hvsim is started in the background unless it already runs (`hvsim
# start`), and keeps running afterwards; the script prints how to stop it. Re-running is idempotent.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The CLI first: without one (and without Go to build one) nothing else is touched.
make --no-print-directory pulumi-cli
make --no-print-directory venv
pulumi_run=(.venv/bin/python scripts/pulumi_run.py)

# The emulated hosts of Pulumi.dev.yaml (hvreplica:hvsim points at the same config and state directory),
# served in the background unless `make lab` or an earlier `make demo` already did.
hvsim_lab=(--config hvsim.dev.toml --state-dir .hvsim)
.venv/bin/python -m hvsim start "${hvsim_lab[@]}" | grep -v '^stop it with'
trap 'echo "hvsim keeps running for the next \`make demo\`; stop it with: .venv/bin/python -m hvsim stop ${hvsim_lab[*]}"' EXIT

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
