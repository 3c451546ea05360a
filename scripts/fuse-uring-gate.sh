#!/usr/bin/env bash
# FUSE over io_uring against /dev/fuse, the same in-memory
# file system behind each transport, in one run: round-trip cost (caller
# pinned and free), awk creating 20,000 files, untar of the Go tree, cold
# stat walk. Prints medians; turns the kernel switch on for the run and
# restores it. Usage (root): scripts/fuse-uring-gate.sh [RUNS] [OUT]
set -eu
RUNS=${1:-3}
OUT=${2:-}
cd "$(dirname "$0")/.."
FUSEURING_GATE_RUNS=$RUNS FUSEURING_GATE_OUT=$OUT \
  go test -run '^$' -bench '^BenchmarkTransports$' -benchtime 1x -v -count=1 -timeout 60m ./internal/fuseuring/
