#!/usr/bin/env bash
# Latency of `overlayfs run ROOTFS -- true` beside its shell baseline,
# `unshare --fork --pid --mount --mount-proc` plus chroot over a kernel
# overlay (upper and work on a tmpfs), alternating, RUNS times each, on a
# static busybox rootfs. Prints each time and the medians, in ms.
# Usage (root): scripts/run-latency.sh [RUNS]   (OVL=path/to/overlayfs)
set -eu
OVL=${OVL:-overlayfs}
RUNS=${1:-15}
W=$(mktemp -d /var/tmp/run-latency.XXXXXX)
trap 'umount -R $W/t 2>/dev/null || true; rm -rf $W' EXIT
R=$W/rootfs
mkdir -p $R/bin $R/proc $R/dev $R/sys $R/tmp $R/etc $W/t
cp "$(command -v busybox)" $R/bin/busybox
for a in sh true; do ln -s busybox $R/bin/$a; done
mount -t tmpfs tmpfs $W/t
ms() { echo $(( ($2 - $1) / 1000000 )); }
baseline() {
  local d
  d=$(mktemp -d $W/t/b.XXXXXX)
  mkdir $d/u $d/w $d/m
  unshare --fork --pid --mount --mount-proc --propagation private \
    sh -c "mount -t overlay overlay -o lowerdir=$R,upperdir=$d/u,workdir=$d/w $d/m && exec chroot $d/m /bin/true"
  rm -rf $d
}
ours() { "$OVL" run --overlay2 root:memory $R -- true 2>/dev/null; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > $W/a; : > $W/b
for i in $(seq $RUNS); do
  s=$(date +%s%N); baseline; e=$(date +%s%N); ms $s $e >> $W/a
  s=$(date +%s%N); ours; e=$(date +%s%N); ms $s $e >> $W/b
done
ma=$(median < $W/a); mb=$(median < $W/b)
echo "unshare+chroot over kernel overlay (ms): $(tr '\n' ' ' < $W/a)"
echo "overlayfs run (ms):                      $(tr '\n' ' ' < $W/b)"
echo "median: baseline ${ma} ms, overlayfs run ${mb} ms, ratio $(awk -v a=$ma -v b=$mb 'BEGIN {printf "%.2f", (a ? b/a : 0)}')"
