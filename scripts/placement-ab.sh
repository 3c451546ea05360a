#!/usr/bin/env bash
# Thread placement A/B for a root:memory mount: the daemon's threads pinned
# (taskset on every thread after mounting) or not, the caller pinned or not:
#   free: nothing pinned; d0: daemon on CPU 0; d0c0: daemon and caller on
#   CPU 0; d1c0: daemon on CPU 1, caller on CPU 0.
# Workloads, each on the same fresh mount of a copy of SRC: create (awk,
# 5,000 4 KiB files), lstat of every path of SRC by name, untar of
# $GOROOT/src/go, dd re-read of a 256 MiB upper file with the mount's page
# cache dropped. Placements alternate within each round; prints every round
# and the medians (ms).
# Usage (root, 2+ CPUs): scripts/placement-ab.sh   (OVL=overlayfs, SRC=dir, ROUNDS=3)
set -euo pipefail
OVL=${OVL:-overlayfs}
SRC=${SRC:-/usr/local/go/src}
ROUNDS=${ROUNDS:-3}
W=$(mktemp -d /tmp/placement-ab.XXXXXX)
T=$W; L=$W/lower; mkdir -p $T/m
cleanup() { mountpoint -q $T/m && "$OVL" umount $T/m; rm -rf "$W"; }
trap cleanup EXIT
cp -a "$SRC" $L
(cd $L && find . -mindepth 1 | sed 's|^\./||') > $W/paths
tar cf $W/go.tar -C "$(go env GOROOT)/src" go
head -c 268435456 /dev/urandom > $W/src.bin
CFGS=${CFGS:-"free d0 d0c0 d1c0"}
ms() { echo $(( ($2-$1)/1000000 )); }
mountit() { "$OVL" mount ${MOPTS:-} --overlay2 root:memory $L $T/m || exit 1; pid=$(pgrep -f -- "-- $L $T/m" | head -1); case $1 in d0|d0c0) c=0;; d1c0) c=1;; *) c="";; esac; if [ -n "$c" ]; then for t in /proc/$pid/task/*; do taskset -pc $c ${t##*/} >/dev/null; done; fi; }
caller() { case $1 in d0c0|d1c0) echo "taskset -c 0";; *) echo "";; esac; }
declare -A res
for r in $(seq 1 $ROUNDS); do for cfg in $CFGS; do
  P=$(caller $cfg)
  mountit $cfg; mkdir $T/m/cr
  s=$(date +%s%N); $P awk -v n=5000 'BEGIN { s = sprintf("%4096s", ""); for (i = 0; i < n; i++) { f = sprintf("'$T'/m/cr/b%d", i); printf "%s", s > f; close(f) } }'; e=$(date +%s%N); c=$(ms $s $e)
  s=$(date +%s%N); (cd $T/m && $P perl -e 'while (<STDIN>) { chomp; lstat($_) or die "lstat $_: $!\n" }' < $W/paths); e=$(date +%s%N); l=$(ms $s $e)
  mkdir $T/m/x; s=$(date +%s%N); $P tar xf $W/go.tar -C $T/m/x; e=$(date +%s%N); u=$(ms $s $e)
  cp $W/src.bin $T/m/big; python3 -c "
import os;fd=os.open('$T/m/big',os.O_RDONLY);os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED);os.close(fd)"
  s=$(date +%s%N); $P dd if=$T/m/big of=/dev/null bs=4k status=none; e=$(date +%s%N); d=$(ms $s $e)
  "$OVL" umount $T/m
  printf "%-5s create %5s  lstat %5s  untar %5s  reread %5s  (ms; load %s)\n" $cfg $c $l $u $d "$(cut -d' ' -f1 /proc/loadavg)"
  res[$cfg.c]+="$c " res[$cfg.l]+="$l " res[$cfg.u]+="$u " res[$cfg.d]+="$d "
done; done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "medians:"
for cfg in $CFGS; do printf "%-5s create %5s  lstat %5s  untar %5s  reread %5s\n" $cfg $(echo ${res[$cfg.c]} | median) $(echo ${res[$cfg.l]} | median) $(echo ${res[$cfg.u]} | median) $(echo ${res[$cfg.d]} | median); done
