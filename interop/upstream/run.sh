#!/usr/bin/env bash
# Runs gVisor's own LISAFS conformance suite (pkg/lisafs/testsuite, which the
# gvisor.dev/gvisor Go module does not ship: it is a Bazel test-only target)
# against `overlayfs gofer`, with channels required, as the suite demands.
# The suite is taken from a gVisor checkout at run time into a temporary
# module and its connection setup is rewritten to start our gofer; nothing of
# gVisor is kept. Needs root.
# Usage: interop/upstream/run.sh GVISOR_CHECKOUT [go test flags...]
set -euo pipefail
src=${1:?usage: $0 GVISOR_CHECKOUT [go test flags]}; shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$repo" && go build -o "$tmp/overlayfs" ./cmd/overlayfs)
mkdir -p "$tmp/mod/testsuite"
cp "$src/pkg/lisafs/testsuite/testsuite.go" "$tmp/mod/testsuite/"
cp "$here/suite_test.go.in" "$tmp/mod/suite_test.go"
python3 "$here/rewrite.py" "$tmp/mod/testsuite/testsuite.go"
gvisor=$(grep -m1 'gvisor.dev/gvisor ' "$repo/interop/go.mod" | awk '{print $2}')
cat > "$tmp/mod/go.mod" <<MOD
module upstream

go 1.26.0

require gvisor.dev/gvisor $gvisor
MOD
cd "$tmp/mod"
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
OVERLAYFS_BIN="$tmp/overlayfs" GOFLAGS=-mod=mod go test -count=1 "$@" .
