#!/usr/bin/env bash
# Mount time and memory of a stack of lower layers: for each N, builds N
# layer directories of 20 files each, times `overlayfs mount L1:...:LN`,
# lists the mount (ls -R) and prints the daemon's and gofer's VmRSS.
# Usage (root): scripts/layers-mount-cost.sh [N...]   (OVL=path/to/overlayfs; default N: 1 10 50)
set -euo pipefail
OVL=${OVL:-overlayfs}
[ $# -gt 0 ] || set -- 1 10 50
for n in "$@"; do
	T=$(mktemp -d /tmp/layers-cost.XXXXXX)
	dirs=()
	for i in $(seq 1 "$n"); do
		mkdir -p "$T/l$i/d$i"
		for j in $(seq 1 20); do echo "$i" > "$T/l$i/d$i/f$j"; done
		dirs+=("$T/l$i")
	done
	mkdir "$T/m"
	spec=$(IFS=:; echo "${dirs[*]}")
	s=$(date +%s%N)
	"$OVL" mount "$spec" "$T/m"
	e=$(date +%s%N)
	ls -R "$T/m" > /dev/null
	rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
	d=$(pgrep -f "mount .*$T/m" | head -1)
	g=$(pgrep -f "gofer --root $T/" | head -1)
	echo "layers=$n mount_ms=$(( (e - s) / 1000000 )) daemon_rss_kB=$(rss "$d") gofer_rss_kB=$(rss "$g") gofers=$(pgrep -fc "gofer --root $T/")"
	"$OVL" umount "$T/m"
	rm -rf "$T"
done
