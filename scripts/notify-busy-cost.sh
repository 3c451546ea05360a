#!/usr/bin/env bash
# What a --file-access notify mount costs on a busy host file system: while
# the overlay sits idle, tar -x of a source tree (Go's src, ~15,000 files)
# runs beside LOWERDIR on the same file system. fanotify reports every one
# of those changes to the daemon, which reads and drops them (they are
# outside LOWERDIR). Prints, per run and mode (exclusive: no watcher), the
# untar's wall time, the daemon's CPU time over the untar and the events it
# read, interleaving the modes RUNS times.
# Usage (root): scripts/notify-busy-cost.sh [RUNS]   (OVL=path/to/overlayfs, default 3 runs)
set -eu
OVL=${OVL:-overlayfs}
RUNS=${1:-3}
W=$(mktemp -d /var/tmp/notify-cost.XXXXXX)
trap 'umount -l $W/mnt 2>/dev/null || true; rm -rf $W' EXIT
L=$W/lower M=$W/mnt B=$W/beside
mkdir -p $L/d $M $B
echo x > $L/d/f
tar -C "$(go env GOROOT)" -cf $W/src.tar src
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; tar of $(tar -tf $W/src.tar | wc -l) entries"
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
for r in $(seq $RUNS); do
  for mode in exclusive notify; do
    log=$W/$mode.$r.log
    $OVL mount --file-access $mode --overlay2 root:memory --log $log $L $M
    ls -R $M > /dev/null
    pid=$(pgrep -f -- "mount --ready-fd 3 .*-- $L $M\$" | head -1)
    c0=$(cpu $pid); t0=$(date +%s.%N)
    tar -C $B -xf $W/src.tar
    t1=$(date +%s.%N)
    sleep 1 # let the daemon drain the events queued by the untar's end
    c1=$(cpu $pid)
    $OVL umount $M
    rm -rf $B/src
    ev=$(grep -o 'fanotify: [0-9]* events read' $log | grep -o '[0-9]*' || echo 0)
    printf 'run=%d %-9s untar=%.2fs daemon_cpu=%.2fs events=%s events/s=%.0f\n' $r $mode \
      "$(echo "$t1 - $t0" | bc)" "$(echo "($c1 - $c0) / $TCK" | bc -l)" "$ev" "$(echo "$ev / ($t1 - $t0)" | bc -l)"
  done
done
