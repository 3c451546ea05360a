#!/usr/bin/env bash
# The /dev/fuse serving loops side by side on untar and create-small (memory
# upper, --fuse-uring off): each CONFIG is a set of environment variables the
# daemon reads (OVERLAYFS_FUSE_LOOP, OVERLAYFS_FUSE_POLL, GOMAXPROCS), run
# one after the other in every round, ROUNDS rounds, so that the machine's
# load falls on all alike. Prints, per workload and config, the median wall
# time, the median µs per FUSE request (wall time over the requests the
# daemon's ledger counted) and its ratio to the first config, and the load
# average at the end.
# BENCHFLAGS adds flags to every bench run (e.g. --quick: smaller trees).
# Usage (root): scripts/fuse-loop-ab.sh BIN [ROUNDS] [CONFIG...]
# e.g. scripts/fuse-loop-ab.sh /tmp/overlayfs 3 "OVERLAYFS_FUSE_LOOP=go-fuse" "OVERLAYFS_FUSE_POLL=0" ""
set -eu
BIN=$1; ROUNDS=${2:-3}; shift 2 || true
if [ $# -eq 0 ]; then
	set -- "OVERLAYFS_FUSE_LOOP=go-fuse" "OVERLAYFS_FUSE_LOOP=own OVERLAYFS_FUSE_POLL=0" "OVERLAYFS_FUSE_LOOP=own"
fi
W=$(mktemp -d /var/tmp/fuse-loop-ab.XXXXXX)
trap 'rm -rf "$W"' EXIT
i=0
for r in $(seq "$ROUNDS"); do
	c=0
	for cfg in "$@"; do
		env $cfg OVERLAYFS_FUSE_URING=off "$BIN" bench --media memory --workloads untar,create-small \
			--runs 1 ${BENCHFLAGS:-} --workdir "$W" --json "$W/r$r-c$c.json" >/dev/null 2>"$W/r$r-c$c.err" ||
			{ cat "$W/r$r-c$c.err" >&2; exit 1; }
		echo "round $r config $c ($cfg) done" >&2
		c=$((c+1))
	done
done
python3 - "$W" "$ROUNDS" "$@" <<'PY'
import json, statistics, sys
w, rounds, cfgs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = {}
for r in range(1, rounds+1):
    for c in range(len(cfgs)):
        d = json.load(open(f"{w}/r{r}-c{c}.json"))
        for cell in d["cells"]:
            for run in cell["runs"]:
                res.setdefault((cell["workload"], c), []).append((run["seconds"], run["seconds"]*1e6/run["fuse_requests"], run["fuse_requests"]))
for wl in ["untar", "create-small"]:
    print(f"== {wl} (median of {rounds})")
    base = None
    for c, cfg in enumerate(cfgs):
        v = res[(wl, c)]
        s = statistics.median(x[0] for x in v); us = statistics.median(x[1] for x in v)
        if base is None: base = us
        print(f"  {cfg or '(defaults)':55s} {s:7.2f} s  {us:6.1f} µs/req  x{base/us:4.2f}  reqs {int(statistics.median(x[2] for x in v))}  runs(s): {' '.join(f'{x[0]:.2f}' for x in v)}")
PY
echo "load average at the end: $(cat /proc/loadavg)"
