#!/usr/bin/env bash
# Wall time of `dpkg -i` of a hundred Debian packages in a chroot on an
# overlaid Debian bookworm rootfs: Linux overlayfs (kernel, tmpfs upper),
# fuse-overlayfs (tmpfs upper) and ours on the default /dev/fuse path with
# --overlay2 root:memory (memfd), root:memory,backing=file (a file per upper
# file, FUSE passthrough) and root:dir= on a tmpfs (filestore file).
#
# Prepared once and cached in $DPKG_BENCH_CACHE (default
# /var/tmp/overlayfs-dpkg-bench; needs debootstrap and the mirror
# deb.debian.org):
#   rootfs/  debootstrap --variant=minbase bookworm, never changed afterwards;
#   debs/    100 .deb files that `dpkg -i` installs together in rootfs with
#            no network: the closure of a list of everyday tools, resolved by
#            apt-get in a throw-away overlay of rootfs, no package that ships
#            a system service (an init script or a systemd system unit), and
#            checked by one trial install before it is kept.
# Each round mounts every kind once, in turn, on a fresh overlay with rootfs
# as the lower, binds /proc, /dev and debs/ (read-only, at /debs) into it and
# times `chroot MNT dpkg -i /debs/*.deb` alone (dpkg's own defaults, fsyncs
# included; output to a log under the work dir, shown if dpkg fails, which
# stops the run). After each kind it checks that all 100 packages are
# installed, then unmounts and checks that nothing is left mounted and that
# rootfs is unchanged (a checksum of find -printf of names, types, modes,
# owners, sizes, mtimes and ctimes, taken once before the first round).
# Prints every round, then medians with ratios against the kernel and
# fuse-overlayfs, the CPU time of the processes serving the mount (ours:
# daemon and gofer; fuse-overlayfs; the kernel's own is not counted), and
# for ours the FUSE requests per package and the most frequent opcodes (from
# `overlayfs stats --json`).
# Usage (root): scripts/dpkg-bench.sh [ROUNDS]   (default 3)
#   OVL=path/to/overlayfs  KINDS="kernel fuse-overlayfs memory memory-file dir"
#   (a kind of ours may carry extra mount flags, each after a '+':
#   KINDS="memory memory+--fuse-poll=0" compares the two)
#   DPKG_BENCH_CACHE=dir   (delete it to prepare afresh)
set -euo pipefail
OVL=${OVL:-overlayfs}
ROUNDS=${1:-3}
case $ROUNDS in "" | *[!0-9]* | 0) echo "usage: $0 [ROUNDS >= 1]" >&2; exit 2 ;; esac
CACHE=${DPKG_BENCH_CACHE:-/var/tmp/overlayfs-dpkg-bench}
KINDS=${KINDS:-"kernel fuse-overlayfs memory memory-file dir"}
MIRROR=http://deb.debian.org/debian
NDEBS=100
ROOT=$CACHE/rootfs
DEBS=$CACHE/debs

# Packages whose closures make up the set, tried in this order; one is
# taken when its closure (with those taken before) stays within NDEBS
# packages and holds nothing excluded. Command-line tools and libraries:
# maintainer scripts that run ldconfig, update-alternatives, debconf,
# adduser and the like, never a service.
CANDIDATES="git curl wget perl make jq vim-tiny nano less file tree bc ed patch
xz-utils bzip2 zstd lz4 unzip zip cpio pigz lsof psmisc strace gawk time pv
socat netcat-openbsd sqlite3 openssl ca-certificates libxml2-utils xxd
bsdextrautils dos2unix m4 bison flex pkgconf autoconf automake libtool
libjson-perl liburi-perl libwww-perl libyaml-perl libtext-csv-perl
libfile-which-perl libtry-tiny-perl libmodule-runtime-perl
libclass-method-modifiers-perl librole-tiny-perl libsub-quote-perl
libdata-dump-perl libterm-readkey-perl libtimedate-perl liblist-moreutils-perl
libjson-xs-perl libcommon-sense-perl libtypes-serialiser-perl libio-string-perl
libsub-name-perl libdevel-globaldestruction-perl libipc-run-perl
libnumber-compare-perl libtext-glob-perl libfile-find-rule-perl
libregexp-common-perl libpath-tiny-perl libcapture-tiny-perl
libexporter-tiny-perl libfile-slurp-perl libmath-base85-perl
libtext-unidecode-perl libstring-shellquote-perl libclone-perl"
# Never in the set: services and what would start or manage them.
EXCLUDE="systemd systemd-sysv dbus cron anacron rsyslog openssh-server
man-db exim4-base exim4-daemon-light postfix ssl-cert"

T=$(mktemp -d /tmp/dpkg-bench.XXXXXX)
M=$T/m    # the mount point of the overlay being measured
UP=$T/up  # a tmpfs: upper and work directories or our filestore
# Unmount (deepest first) every mount under the work dir, then remove it.
cleanup() {
	local m
	for m in $(awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do
		umount "$m" 2>/dev/null || "$OVL" umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT
die() {
	echo "dpkg-bench: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root"
for c in chroot jq mountpoint; do command -v "$c" > /dev/null || die "needs $c"; done
mkdir -p "$M" "$UP" "$CACHE"

# mnt_kernel DIR mounts Linux overlayfs of ROOT on DIR with a fresh tmpfs
# upper (used for preparation as well as measured).
mnt_kernel() {
	mount -t tmpfs tmpfs "$UP"
	mkdir "$UP/u" "$UP/w"
	mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$UP/u,workdir=$UP/w" "$1"
}
# mnt mounts kind $1 on $M: a name, or for ours a name followed by extra
# mount flags, each after a '+' (memory+--fuse-poll=0).
mnt() {
	local extra=()
	[ "$1" = "${1%%+*}" ] || IFS=+ read -ra extra <<< "${1#*+}"
	case ${1%%+*} in
	kernel) mnt_kernel "$M" ;;
	fuse-overlayfs)
		mount -t tmpfs tmpfs "$UP"
		mkdir "$UP/u" "$UP/w"
		fuse-overlayfs -o "lowerdir=$ROOT,upperdir=$UP/u,workdir=$UP/w" "$M" 2> "$T/fuse-overlayfs.log"
		;;
	memory) "$OVL" mount --fuse-uring=off "${extra[@]}" --overlay2 root:memory "$ROOT" "$M" ;;
	memory-file) "$OVL" mount --fuse-uring=off "${extra[@]}" --overlay2 root:memory,backing=file "$ROOT" "$M" ;;
	dir)
		mount -t tmpfs tmpfs "$UP"
		"$OVL" mount --fuse-uring=off "${extra[@]}" --overlay2 "root:dir=$UP" "$ROOT" "$M"
		;;
	*) die "unknown kind $1 (kinds: kernel fuse-overlayfs memory memory-file dir)" ;;
	esac
}
# binds puts /proc, /dev and (read-only, at /debs) the directory $2, if
# given, into the overlay on $1.
binds() {
	mount -t proc proc "$1/proc"
	mount --bind /dev "$1/dev"
	[ -n "${2:-}" ] || return 0
	mkdir -p "$1/debs"
	mount --bind "$2" "$1/debs"
	mount -o remount,bind,ro "$1/debs"
}
# unmnt takes down everything mounted on and under $M and the tmpfs.
unmnt() {
	local m
	for m in $(awk -v t="$M/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m"; done
	case ${1%%+*} in
	memory | memory-file | dir) "$OVL" umount "$M" ;;
	*) umount "$M" ;;
	esac
	if mountpoint -q "$UP"; then umount "$UP"; fi
	if grep -q " $T/" /proc/mounts; then die "after $1: still mounted: $(grep " $T/" /proc/mounts)"; fi
}
in_chroot() { chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "${@:2}"; }
# closure prints the packages apt-get would install for the names given.
closure() { in_chroot "$P" apt-get -s -q install --no-install-recommends "$@" 2> /dev/null | awk '/^Inst /{print $2}'; }

# prepare_rootfs makes ROOT with debootstrap (into a temporary directory,
# renamed when complete).
prepare_rootfs() {
	[ -d "$ROOT/usr" ] && return
	command -v debootstrap > /dev/null || die "needs debootstrap (apt-get install -y debootstrap)"
	echo "preparing $ROOT: debootstrap --variant=minbase bookworm"
	rm -rf "$ROOT.tmp"
	debootstrap --variant=minbase bookworm "$ROOT.tmp" "$MIRROR" > "$T/debootstrap.log" 2>&1 ||
		die "debootstrap failed: $(tail -5 "$T/debootstrap.log")"
	mv "$ROOT.tmp" "$ROOT"
}

# predeps_in_base says whether every group of alternatives in the
# Pre-Depends field $1 names a package installed in ROOT.
predeps_in_base() {
	local group alt ok
	while read -r group; do
		[ -n "$group" ] || continue
		ok=1
		for alt in $(echo "$group" | sed 's/([^)]*)//g; s/:[a-z0-9]*//g; s/|/ /g'); do
			grep -qx "$alt" "$T/base" && ok=0
		done
		[ $ok = 0 ] || return 1
	done < <(echo "$1" | tr ',' '\n')
}

# prepare_debs picks and downloads the set in a kernel overlay of ROOT (so
# ROOT keeps debootstrap's state), checks that no package ships a service,
# installs it once on a second overlay, and renames it into place.
prepare_debs() {
	[ -d "$DEBS" ] && return
	echo "preparing $DEBS: $NDEBS packages"
	P=$T/prep
	mkdir -p "$P"
	mnt_kernel "$P"
	binds "$P"
	in_chroot "$P" dpkg-query -W -f '${Package}\n${Provides}\n' | tr ',' '\n' | sed 's/([^)]*)//; s/ //g' | grep . | sort -u > "$T/base"
	in_chroot "$P" apt-get -q update > "$T/apt.log" 2>&1 || die "apt-get update in the chroot failed: $(tail -3 "$T/apt.log")"
	local excluded=" $(echo $EXCLUDE) " taken=() n=0 c pkgs bad tries
	for tries in 1 2 3; do
		taken=() n=0
		for c in $CANDIDATES; do
			pkgs=$(closure "${taken[@]}" "$c") || continue
			[ -n "$pkgs" ] || continue
			bad=0
			for p in $pkgs; do case $excluded in *" ${p%%:*} "*) bad=1 ;; esac; done
			[ $bad = 0 ] && [ "$(echo "$pkgs" | wc -l)" -le $NDEBS ] || continue
			taken+=("$c")
			n=$(echo "$pkgs" | wc -l)
			[ "$n" -lt $NDEBS ] || break
		done
		[ "$n" = $NDEBS ] || die "the candidates make $n packages, not $NDEBS: add candidates"
		rm -rf "$P/tmp/debs"
		mkdir -p "$P/tmp/debs"
		# shellcheck disable=SC2046
		(cd "$P/tmp/debs" && in_chroot "$P" sh -c 'cd /tmp/debs && apt-get -q download "$@"' sh $(closure "${taken[@]}")) > "$T/apt.log" 2>&1 ||
			die "apt-get download failed: $(tail -3 "$T/apt.log")"
		# A package that ships a system service, or that pre-depends on one
		# outside the base (dpkg -i takes its arguments in order and would
		# refuse it), is excluded with all that needs it, and the set picked
		# again.
		bad=""
		for f in "$P"/tmp/debs/*.deb; do
			if dpkg-deb -c "$f" | awk '{print $6}' | grep -Eq '^\./(etc/init\.d/.|(usr/)?lib/systemd/system/.)' ||
				! predeps_in_base "$(dpkg-deb -f "$f" Pre-Depends)"; then
				bad+=" $(dpkg-deb -f "$f" Package)"
			fi
		done
		[ -z "$bad" ] && break
		echo "excluded (a service, or a pre-dependency outside the base):$bad"
		excluded+="$bad "
	done
	[ -z "$bad" ] || die "could not find $NDEBS packages without services"
	rm -rf "$DEBS.tmp"
	mkdir "$DEBS.tmp"
	cp "$P"/tmp/debs/*.deb "$DEBS.tmp/"
	printf '%s\n' "${taken[@]}" > "$DEBS.tmp/.candidates"
	for m in $(awk -v t="$P" '$2 == t || index($2, t "/") == 1 {print $2}' /proc/mounts | sort -r); do umount "$m"; done
	umount "$UP"
	echo "trial install of the set"
	mnt_kernel "$P"
	binds "$P" "$DEBS.tmp"
	in_chroot "$P" sh -c 'dpkg -i /debs/*.deb' > "$T/trial.log" 2>&1 || die "trial dpkg -i failed: $(grep -iE 'error|depend' "$T/trial.log" | head -20)"
	for m in $(awk -v t="$P" '$2 == t || index($2, t "/") == 1 {print $2}' /proc/mounts | sort -r); do umount "$m"; done
	umount "$UP"
	mv "$DEBS.tmp" "$DEBS"
}

prepare_rootfs
prepare_debs
NPKG=$(find "$DEBS" -name '*.deb' | wc -l)
[ "$NPKG" = $NDEBS ] || die "$DEBS holds $NPKG .deb files, not $NDEBS (delete it to prepare afresh)"
# The package names, to check that each kind installed them all.
PKGS=$(for f in "$DEBS"/*.deb; do dpkg-deb -f "$f" Package; done)
lower_sum() { find "$ROOT" -printf '%P %y %m %U %G %s %T@ %C@ %l\n' | sort | sha256sum | cut -d' ' -f1; }
SUM0=$(lower_sum)
# Warm the page cache with the lower and the debs, alike for every kind.
tar -cf - -C "$ROOT" . | cat > /dev/null
cat "$DEBS"/*.deb > /dev/null

# cpu is the CPU time (ms) used so far by the processes serving the mount.
cpu() {
	local pids=() p t=0
	case ${1%%+*} in
	memory | memory-file | dir) p=$(pgrep -f -- "-- $ROOT $M\$" | head -1); pids=("$p" $(pgrep -P "$p")) ;;
	fuse-overlayfs) pids=($(pgrep -f -- "lowerdir=$ROOT,upperdir")) ;;
	*) echo 0; return ;;
	esac
	for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo $((t * 1000 / $(getconf CLK_TCK)))
}

echo "lower: $ROOT (debootstrap --variant=minbase bookworm, $(find "$ROOT" | wc -l) entries)"
echo "debs: $NPKG packages, $(du -cb "$DEBS"/*.deb | tail -1 | cut -f1 | numfmt --to=iec) in $DEBS ($(cat "$DEBS/.candidates" 2> /dev/null | wc -l) picked, the rest their dependencies)"
ENTRIES=$(for f in "$DEBS"/*.deb; do dpkg-deb -c "$f"; done | awk '{n++} /^-/ {r++} END {print n " entries, " r " regular files"}')
echo "the debs hold $ENTRIES"
echo "kinds: $KINDS; $ROUNDS rounds; $("$OVL" version | head -1) (--fuse-uring=off); $(fuse-overlayfs --version 2>&1 | grep '^fuse-overlayfs:' | sed 's/: / /'); Linux $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-22s %9s %9s %9s\n' round kind dpkg_ms cpu_ms req/pkg
declare -A res
for r in $(seq 1 "$ROUNDS"); do
	for kind in $KINDS; do
		mnt "$kind"
		binds "$M" "$DEBS"
		c0=$(cpu "$kind")
		s=$(date +%s%N)
		in_chroot "$M" sh -c 'dpkg -i /debs/*.deb' > "$T/dpkg.log" 2>&1 ||
			die "round $r, $kind: dpkg -i failed: $(tail -20 "$T/dpkg.log")"
		e=$(date +%s%N)
		ms=$(((e - s) / 1000000)) c=$(($(cpu "$kind") - c0))
		# shellcheck disable=SC2086
		ok=$(in_chroot "$M" dpkg-query -W -f '${db:Status-Abbrev}\n' $PKGS | grep -c '^ii') || true
		[ "$ok" = "$NPKG" ] || die "round $r, $kind: $ok of $NPKG packages installed"
		req=-
		case ${kind%%+*} in memory | memory-file | dir)
			"$OVL" stats --json "$M" > "$T/stats.json"
			req=$(jq -r --argjson n "$NPKG" '.fuse_requests / $n | floor' "$T/stats.json")
			res[$kind.ops]+="$(jq -r '.fuse_requests_by_op | to_entries[] | "\(.key) \(.value)"' "$T/stats.json")"$'\n'
			;;
		esac
		unmnt "$kind"
		[ "$(lower_sum)" = "$SUM0" ] || die "round $r, $kind: the lower rootfs changed"
		res[$kind.ms]+="$ms " res[$kind.cpu]+="$c " res[$kind.req]+="$req "
		printf '%-6s %-22s %9s %9s %9s\n' "$r" "$kind" "$ms" "$c" "$req"
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
declare -A med
for kind in $KINDS; do med[$kind]=$(echo "${res[$kind.ms]}" | median); done
ratio() { [ -n "${med[$2]:-}" ] && awk -v a="${med[$1]}" -v b="${med[$2]}" 'BEGIN{printf "%.2fx", b / a}' || echo -; }
echo "medians over $ROUNDS rounds (wall ms of dpkg -i; cpu ms of the serving processes; speed ratios, >1 = faster); load now: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %9s %9s %10s %15s %9s\n' kind dpkg_ms cpu_ms vs_kernel vs_fuse-overlay req/pkg
for kind in $KINDS; do
	printf '%-22s %9s %9s %10s %15s %9s\n' "$kind" "${med[$kind]}" "$(echo "${res[$kind.cpu]}" | median)" \
		"$(ratio "$kind" kernel)" "$(ratio "$kind" fuse-overlayfs)" "$(echo "${res[$kind.req]}" | median)"
done
for kind in $KINDS; do
	[ -n "${res[$kind.ops]:-}" ] || continue
	echo "$kind: FUSE requests per package by opcode, mean over $ROUNDS rounds, largest first:"
	echo "${res[$kind.ops]}" | awk -v n="$((NPKG * ROUNDS))" 'NF == 2 {s[$1] += $2; t += $2} END {for (o in s) printf "%s %.1f\n", o, s[o] / n; printf "TOTAL %.1f\n", t / n}' |
		sort -k2 -nr | awk '{printf "  %-12s %8s\n", $1, $2}' | head -12
done
