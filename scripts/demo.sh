#!/usr/bin/env bash
# `make demo`: run the demo stack `dev` with Pulumi state kept inside the repository.
# Idempotent: re-running only re-checks the venv and runs `pulumi up` again (no change when nothing changed).
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

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

make --no-print-directory venv

# Local state backend: no Pulumi Cloud account, the checkpoint stays under .pulumi-state/ (git-ignored).
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="file://$root/.pulumi-state"
# The dev passphrase only protects the demo's local secrets; real stacks set their own.
if [[ -z "${PULUMI_CONFIG_PASSPHRASE+set}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    export PULUMI_CONFIG_PASSPHRASE="hvreplica-dev-only"
fi

pulumi stack select --create dev --non-interactive
pulumi up --yes --stack dev --non-interactive
