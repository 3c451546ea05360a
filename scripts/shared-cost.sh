#!/usr/bin/env bash
# The cost of --file-access=shared over exclusive on a
# stat-heavy walk of a 50,000-file lower (twice per mount) and on re-reading
# 500 cached files ten times, interleaved, RUNS times.
# Usage (root): scripts/shared-cost.sh [RUNS]   (OVL=path/to/overlayfs)
set -u
OVL=${OVL:-overlayfs}
RUNS=${1:-3}
W=$(mktemp -d /var/tmp/shared-cost.XXXXXX)
trap 'umount -l $W/mnt 2>/dev/null; rm -rf $W' EXIT
L=$W/lower M=$W/mnt
mkdir -p $L $M
for i in $(seq 0 99); do mkdir $L/d$i; for j in $(seq 0 499); do echo "file $i $j" > $L/d$i/f$j; done; done
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1; local e=$(date +%s.%N); echo "$e - $s" | bc; }
for r in $(seq $RUNS); do
  for mode in exclusive shared; do
    $OVL mount --file-access $mode --overlay2 root:memory $L $M
    w1=$(t find $M -printf '%s %i\n'); w2=$(t find $M -printf '%s %i\n')
    cat $M/d1/* > /dev/null
    rd=$(t bash -c "for i in 1 2 3 4 5 6 7 8 9 10; do cat $M/d1/* > /dev/null; done")
    echo "run=$r $mode walk1=${w1}s walk2=${w2}s reread10x500=${rd}s"
    $OVL umount $M
  done
done
