#!/usr/bin/env bash
# N processes (1, 2, 4) each stat-walking its own
# directory of 5,000 files through a --file-access=shared mount, where every
# name costs gofer round trips; prints the wall time of each N, RUNS times.
# Usage (root): scripts/concurrent-walk.sh [RUNS]   (OVL=path/to/overlayfs)
set -u
OVL=${OVL:-overlayfs}
RUNS=${1:-3}
W=$(mktemp -d /var/tmp/concurrent-walk.XXXXXX)
trap 'umount -l $W/mnt 2>/dev/null; rm -rf $W' EXIT
L=$W/lower M=$W/mnt
mkdir -p $L $M
for i in 0 1 2 3; do mkdir $L/d$i; for j in $(seq 0 4999); do echo "file $i $j" > $L/d$i/f$j; done; done
for r in $(seq $RUNS); do
  for n in 1 2 4; do
    $OVL mount --file-access shared --overlay2 root:memory $L $M
    s=$(date +%s.%N)
    for i in $(seq 0 $((n-1))); do find $M/d$i -printf '%s %i\n' >/dev/null & done
    wait
    e=$(date +%s.%N)
    echo "run=$r N=$n walk=$(echo "$e - $s" | bc)s files=$((n*5000))"
    $OVL umount $M
  done
done
