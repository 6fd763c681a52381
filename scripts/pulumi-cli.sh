#!/usr/bin/env bash
# `make pulumi-cli`: make a Pulumi CLI available to `make demo` and the end-to-end tests.
#
# A `pulumi` >= 3.139 on PATH is used as it is. Otherwise the CLI is built from the Go module proxy into
# .pulumi-bin/ (git-ignored), together with the two Python scripts that ship inside the sdk/v3 module
# (the dynamic-provider launcher and the language-host exec script). The pinned version lives in
# scripts/pulumi-version only. Re-running is a no-op once .pulumi-bin/ holds that version; the Go module
# and build caches (~/go, ~/.cache/go-build) make a rebuild after a version bump fast.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(tr -d '[:space:]' <"$root/scripts/pulumi-version")"
bin="$root/.pulumi-bin"
start=$SECONDS

step() { printf 'pulumi-cli [%4ds] %s\n' "$((SECONDS - start))" "$*"; }

version_at_least_3_139() {
    [[ "$1" =~ ^v?([0-9]+)\.([0-9]+) ]] \
        && ((BASH_REMATCH[1] > 3 || (BASH_REMATCH[1] == 3 && BASH_REMATCH[2] >= 139)))
}

if command -v pulumi >/dev/null 2>&1; then
    on_path="$(pulumi version 2>/dev/null || true)"
    if version_at_least_3_139 "$on_path"; then
        step "pulumi $on_path on PATH ($(command -v pulumi)): nothing to build"
        exit 0
    fi
    step "pulumi on PATH says '$on_path' (< 3.139): building v$version into .pulumi-bin/ instead"
fi

wanted=(pulumi pulumi-resource-pulumi-python pulumi-language-python-exec)
have_all=1
for f in "${wanted[@]}"; do [[ -x "$bin/$f" ]] || have_all=0; done
if ((have_all)) && [[ "$("$bin/pulumi" version 2>/dev/null)" == "v$version" ]]; then
    step ".pulumi-bin/ already holds pulumi v$version: nothing to do"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<MSG
error: no \`pulumi\` CLI on PATH and no Go toolchain to build one.
Either install the Pulumi CLI (https://www.pulumi.com/docs/install/) and run the command again,
or install Go >= 1.26 (Debian: apt-get install golang-go, or https://go.dev/dl/) so that
\`make pulumi-cli\` can build pulumi v$version into .pulumi-bin/ (one time, 10-25 minutes on 2 cores).
MSG
    exit 1
fi

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
work="$bin/.build"
mkdir -p "$work"
cd "$work"
step "go $(go env GOVERSION); wrapper module in .pulumi-bin/.build"
# A throwaway main module: pkg/v3's own go.mod has replace lines, so `go install pkg@version` refuses it.
cat >go.mod <<MOD
module hvreplica.local/pulumi-cli

go 1.26
MOD
rm -f go.sum
step "resolving github.com/pulumi/pulumi/pkg/v3@v$version and sdk/v3@v$version (module downloads)"
# `go get` lists every module it downloads or adds (hundreds of lines): keep that in a log, show it on failure.
if ! go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$version" "github.com/pulumi/pulumi/sdk/v3@v$version" \
    >"$work/go-get.log" 2>&1; then
    cat "$work/go-get.log" >&2
    echo "error: could not resolve pulumi v$version from the Go module proxy ($(go env GOPROXY)); see above" >&2
    exit 1
fi
step "compiling the pulumi CLI (cold: about 4 minutes on 2 cores; with warm Go caches: under a minute)"
go build -tags osusergo -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
    -o "$bin/pulumi.new" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv -f "$bin/pulumi.new" "$bin/pulumi"

sdk_dir="$(go list -m -f '{{.Dir}}' "github.com/pulumi/pulumi/sdk/v3")"
step "copying the Python scripts of sdk/v3 (module cache files carry no exec bit)"
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"

got="$("$bin/pulumi" version)"
[[ "$got" == "v$version" ]] || { echo "error: built CLI says '$got', expected v$version" >&2; exit 1; }
step "done: .pulumi-bin/pulumi $got"
