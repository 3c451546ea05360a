#!/usr/bin/env bash
# Cost of a stack of lower layers: a tree of 50 directories x 100 files
# spread over N layers (file i in layer i mod N, every directory in every
# layer, so every directory merges across all N), mounted fresh for each
# step by overlayfs, Linux overlayfs (lowerdir only) and fuse-overlayfs;
# times an lstat walk (find -printf %s), a readdir walk (find) and an open
# and read of every file (cat), and prints overlayfs's FUSE requests and
# gofer round trips per file for the lstat walk.
# Usage (root): scripts/layers-walk.sh [N...]   (OVL=path/to/overlayfs; default N: 1 10 50)
set -euo pipefail
OVL=${OVL:-overlayfs}
[ $# -gt 0 ] || set -- 1 10 50
DIRS=50 PER=100
FILES=$((DIRS * PER))
ms() { local s e; s=$(date +%s%N); "$@" > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
printf '%-7s %-15s %8s %8s %8s %10s %10s\n' layers overlay lstat_ms readdir_ms open_ms req/file rt/file
for n in "$@"; do
	T=$(mktemp -d /tmp/layers-walk.XXXXXX)
	dirs=()
	for l in $(seq 0 $((n - 1))); do
		for d in $(seq 1 $DIRS); do mkdir -p "$T/l$l/d$d"; done
		dirs+=("$T/l$l")
	done
	for i in $(seq 0 $((FILES - 1))); do
		echo "$i" > "$T/l$((i % n))/d$((i % DIRS + 1))/f$i"
	done
	spec=$(IFS=:; echo "${dirs[*]}")
	mkdir -p "$T/m" "$T/u" "$T/w"
	for kind in overlayfs kernel fuse-overlayfs; do
		row=()
		for step in lstat readdir open; do
			case $kind in
			overlayfs) "$OVL" mount "$spec" "$T/m" ;;
			kernel)
				# Linux overlayfs wants two layers without an upper: one
				# layer gets an empty one below it (only the root merges).
				k=$spec; [ "$n" -gt 1 ] || { mkdir -p "$T/empty"; k=$spec:$T/empty; }
				mount -t overlay overlay -o "ro,lowerdir=$k" "$T/m" ;;
			fuse-overlayfs) rm -rf "$T/u" "$T/w"; mkdir "$T/u" "$T/w"; fuse-overlayfs -o "lowerdir=$spec,upperdir=$T/u,workdir=$T/w" "$T/m" ;;
			esac
			case $step in
			lstat) row+=("$(ms find "$T/m" -printf '%s\n')") ;;
			readdir) row+=("$(ms find "$T/m")") ;;
			open) row+=("$(ms sh -c "cat $T/m/d*/f*")") ;;
			esac
			if [ "$kind" = overlayfs ] && [ "$step" = lstat ]; then
				st=$("$OVL" stats --json "$T/m")
				req=$(echo "$st" | sed -n 's/.*"fuse_requests": *\([0-9]*\).*/\1/p' | head -1)
				rt=$(echo "$st" | sed -n 's/.*"gofer_round_trips": *\([0-9]*\).*/\1/p' | head -1)
			fi
			if [ "$kind" = overlayfs ]; then "$OVL" umount "$T/m"; else umount "$T/m"; fi
		done
		if [ "$kind" = overlayfs ]; then
			printf '%-7s %-15s %8s %8s %8s %10s %10s\n' "$n" "$kind" "${row[@]}" "$(awk "BEGIN{printf \"%.2f\", $req/$FILES}")" "$(awk "BEGIN{printf \"%.2f\", $rt/$FILES}")"
		else
			printf '%-7s %-15s %8s %8s %8s %10s %10s\n' "$n" "$kind" "${row[@]}" - -
		fi
	done
	rm -rf "$T"
done
