#!/usr/bin/env bash
# Cost of reading a lower tree with --directfs=true against --directfs=false
# (every access through the gofer), with fuse-overlayfs and Linux overlayfs
# for reference. The lower is a copy of SRC (default /usr/local/go/src);
# each step runs on a fresh mount:
#   lstat: lstat of every path by name, no listing (what `git status` does);
#   grep:  grep -r over the tree (list, open and read every file).
# Kinds alternate within each round, so load on a shared machine hits them
# alike; prints every round's wall times, the CPU time of the processes
# serving the mount (overlayfs's daemon and gofer, fuse-overlayfs; the
# kernel's is not counted), overlayfs's gofer round trips per path, and the
# medians.
# Usage (root): scripts/directfs-ab.sh [ROUNDS]   (OVL=path/to/overlayfs, SRC=dir)
set -euo pipefail
OVL=${OVL:-overlayfs}
SRC=${SRC:-/usr/local/go/src}
ROUNDS=${1:-3}
T=$(mktemp -d /tmp/directfs-ab.XXXXXX)
cleanup() {
	mountpoint -q "$T/m" && { umount "$T/m" 2>/dev/null || "$OVL" umount "$T/m" 2>/dev/null || true; }
	rm -rf "$T"
}
trap cleanup EXIT
cp -a "$SRC" "$T/lower"
mkdir -p "$T/m" "$T/empty"
(cd "$T/lower" && find . -mindepth 1 | sed 's|^\./||') > "$T/paths"
N=$(wc -l < "$T/paths")
KINDS="directfs gofer fuse-overlayfs kernel"

ms() { local s e; s=$(date +%s%N); "$@" > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
lstat_all() { (cd "$T/m" && perl -e 'while (<STDIN>) { chomp; lstat($_) or die "lstat $_: $!\n" }' < "$T/paths"); }
grep_all() { grep -r -l --binary-files=text 'no line has this string 7f3a' "$T/m" || true; }
mnt() {
	case $1 in
	directfs) "$OVL" mount --directfs=true "$T/lower" "$T/m" ;;
	gofer) "$OVL" mount --directfs=false "$T/lower" "$T/m" ;;
	fuse-overlayfs) rm -rf "$T/u" "$T/w"; mkdir "$T/u" "$T/w"; fuse-overlayfs -o "lowerdir=$T/lower,upperdir=$T/u,workdir=$T/w" "$T/m" 2>/dev/null ;;
	kernel) mount -t overlay overlay -o "ro,lowerdir=$T/lower:$T/empty" "$T/m" ;;
	esac
}
unmnt() { case $1 in directfs | gofer) "$OVL" umount "$T/m" ;; *) umount "$T/m" ;; esac; }
# cpu is the CPU time (ms) used so far by the processes serving the mount.
cpu() {
	local pids=() p t=0
	case $1 in
	directfs | gofer) p=$(pgrep -f -- "-- $T/lower $T/m" | head -1); pids=("$p" $(pgrep -P "$p")) ;;
	fuse-overlayfs) pids=($(pgrep -f -- "lowerdir=$T/lower,upperdir")) ;;
	*) echo 0; return ;;
	esac
	for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo $((t * 1000 / $(getconf CLK_TCK)))
}
rt() { "$OVL" stats --json "$T/m" | sed -n 's/.*"gofer_round_trips": *\([0-9]*\).*/\1/p' | head -1; }

echo "lower: copy of $SRC, $N paths; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-15s %9s %9s %10s %10s %11s %11s\n' round kind lstat_ms grep_ms lstat_cpu grep_cpu lstat_rt/p grep_rt/p
declare -A res
for r in $(seq 1 "$ROUNDS"); do
	for kind in $KINDS; do
		row=()
		for step in lstat grep; do
			mnt "$kind"
			c0=$(cpu "$kind")
			row+=("$(ms "${step}_all")")
			row+=($(($(cpu "$kind") - c0)))
			case $kind in directfs | gofer) row+=("$(awk "BEGIN{printf \"%.3f\", $(rt)/$N}")") ;; *) row+=(-) ;; esac
			unmnt "$kind"
		done
		res[$kind.lstat]+="${row[0]} " res[$kind.grep]+="${row[3]} " res[$kind.lstatcpu]+="${row[1]} " res[$kind.grepcpu]+="${row[4]} "
		printf '%-6s %-15s %9s %9s %10s %10s %11s %11s\n' "$r" "$kind" "${row[0]}" "${row[3]}" "${row[1]}" "${row[4]}" "${row[2]}" "${row[5]}"
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "medians over $ROUNDS rounds (ms, wall; cpu of the serving processes); load now: $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in $KINDS; do
	printf '%-15s lstat %6s  grep %6s  cpu: lstat %6s  grep %6s\n' "$kind" "$(echo "${res[$kind.lstat]}" | median)" "$(echo "${res[$kind.grep]}" | median)" \
		"$(echo "${res[$kind.lstatcpu]}" | median)" "$(echo "${res[$kind.grepcpu]}" | median)"
done
