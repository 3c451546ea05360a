#!/usr/bin/env bash
# Throughput of 4 processes each creating N empty files (open O_CREAT|O_EXCL,
# close) in a directory of their own on a fresh mount, for two overlayfs
# binaries mounted alternately, ROUNDS rounds, memory upper. Prints files/s
# per mount. TRANSPORT is --fuse-uring's value (on needs the kernel switch).
# Usage (root): scripts/create-ab.sh OLD_BIN NEW_BIN [N] [ROUNDS] [TRANSPORT]
set -eu
OLD=$1; NEW=$2; N=${3:-5000}; ROUNDS=${4:-5}; TRANSPORT=${5:-off}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cat > "$W/main.go" <<'GO'
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	for i := 0; i < n; i++ {
		fd, err := syscall.Open(filepath.Join(os.Args[1], fmt.Sprintf("f%06d", i)), syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		syscall.Close(fd)
	}
}
GO
(cd "$W" && GOFLAGS= GO111MODULE=off go build -o mkfiles main.go)
lower=$W/lower; mkdir -p "$lower"/d0 "$lower"/d1 "$lower"/d2 "$lower"/d3
for r in $(seq "$ROUNDS"); do
  for v in old new; do
    bin=$OLD; [ "$v" = new ] && bin=$NEW
    mnt=$(mktemp -d)
    "$bin" mount --fuse-uring "$TRANSPORT" --overlay2 root:memory "$lower" "$mnt"
    s=$(date +%s%N)
    for d in 0 1 2 3; do "$W/mkfiles" "$mnt/d$d" "$N" & done
    wait
    e=$(date +%s%N)
    "$bin" umount "$mnt"; rmdir "$mnt"
    echo "$v round $r: $(( 4 * N * 1000000000 / (e - s) )) files/s"
  done
done
