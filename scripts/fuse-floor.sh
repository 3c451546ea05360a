#!/usr/bin/env bash
# A comparison: Linux overlayfs (tmpfs upper), fuse-overlayfs (tmpfs
# upper) and overlayfs (memory and dir= media), interleaved, RUNS times:
# awk creating 20,000 4 KiB files, untar of the Go source tree, dd of 1 GiB.
# Usage (root): scripts/fuse-floor.sh [RUNS]   (OVL=path/to/overlayfs)
set -u
OVL=${OVL:-overlayfs}
RUNS=${1:-3}
W=$(mktemp -d /var/tmp/fuse-floor.XXXXXX)
trap 'umount -l $W/*/mnt $W/*/up 2>/dev/null; rm -rf $W' EXIT
TAR=$W/go-src.tar
tar cf $TAR -C "$(go env GOROOT)" src
mkd() { rm -rf $W/$1; mkdir -p $W/$1/lower $W/$1/mnt $W/$1/up; }
setup() {
  case $1 in
  kernel) mkd k; mount -t tmpfs tmpfs $W/k/up; mkdir $W/k/up/u $W/k/up/w
          mount -t overlay overlay -o lowerdir=$W/k/lower,upperdir=$W/k/up/u,workdir=$W/k/up/w $W/k/mnt; echo $W/k/mnt;;
  fuse-overlayfs) mkd f; mount -t tmpfs tmpfs $W/f/up; mkdir $W/f/up/u $W/f/up/w
          fuse-overlayfs -o lowerdir=$W/f/lower,upperdir=$W/f/up/u,workdir=$W/f/up/w $W/f/mnt 2>/dev/null; echo $W/f/mnt;;
  memory) mkd m; $OVL mount --overlay2 root:memory $W/m/lower $W/m/mnt; echo $W/m/mnt;;
  dir) mkd d; $OVL mount --overlay2 root:dir=/var/tmp $W/d/lower $W/d/mnt; echo $W/d/mnt;;
  esac
}
teardown() {
  case $1 in
  kernel) umount $W/k/mnt; umount $W/k/up;;
  fuse-overlayfs) umount $W/f/mnt; umount $W/f/up;;
  memory) $OVL umount $W/m/mnt;;
  dir) $OVL umount $W/d/mnt;;
  esac
}
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1; local e=$(date +%s.%N); echo "$e - $s" | bc; }
for r in $(seq $RUNS); do
  for k in kernel fuse-overlayfs memory dir; do
    m=$(setup $k); mkdir $m/d
    c=$(t bash -c "cd $m/d && awk 'BEGIN{for(i=0;i<20000;i++){f=sprintf(\"f%d\",i); printf \"%4096s\", \"\" > f; close(f)}}'")
    u=$(t tar xf $TAR -C $m)
    w=$(t dd if=/dev/zero of=$m/big bs=1M count=1024)
    echo "run=$r $k create20k=${c}s untar=${u}s write1g=${w}s"
    teardown $k
  done
done
