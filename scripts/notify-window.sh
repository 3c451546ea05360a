#!/usr/bin/env bash
# How long after an outside change to LOWERDIR it shows through a
# --file-access notify mount: CHANGES changes (a new file, a rewrite in
# place, a removal, in turn), each to a name the kernel has cached through
# the mount, timed from the change's return to the first system call through
# the mount that sees it. Prints the median, 90th percentile and maximum in
# microseconds (BenchmarkNotifyWindow in overlay/notify_test.go).
# Usage (root): scripts/notify-window.sh [CHANGES]   (default 200)
set -eu
cd "$(dirname "$0")/.."
CHANGES=${1:-200}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
go test -run '^$' -bench '^BenchmarkNotifyWindow$' -benchtime "${CHANGES}x" -count 1 ./overlay/ |
  grep -E '^Benchmark'
