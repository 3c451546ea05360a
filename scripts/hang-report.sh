#!/usr/bin/env bash
# Prints what a hung FUSE mount leaves to look at, for a CI log: every FUSE
# connection's count of waiting requests, and for every overlayfs daemon
# still running its threads' kernel stacks and, after SIGQUIT (Go's
# goroutine dump, written to the daemon's stderr), the end of its log.
# Run as root after a test run failed or timed out. Changes nothing but the
# daemons it asks to dump (SIGQUIT ends them).
set -u
echo "== FUSE connections (waiting requests)"
for c in /sys/fs/fuse/connections/*; do
  [ -e "$c/waiting" ] && echo "$(basename "$c"): $(cat "$c/waiting")"
done
echo "== FUSE mounts"
grep ' fuse' /proc/self/mounts || true
for pid in $(pgrep -f 'overlayfs (mount|run)' || true); do
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
  echo "== daemon $pid: $cmdline"
  for t in /proc/"$pid"/task/*; do
    printf '%s %s: %s\n' "$(basename "$t")" "$(cat "$t/comm" 2>/dev/null)" \
      "$(head -4 "$t/stack" 2>/dev/null | awk '{print $2}' | paste -sd' ')"
  done | sort -k3 | uniq -c -f2
  log=$(tr '\0' '\n' <"/proc/$pid/cmdline" | awk 'prev=="--log"{print; exit} {prev=$0}')
  kill -QUIT "$pid" 2>/dev/null
  sleep 1
  if [ -n "$log" ] && [ -f "$log" ]; then
    echo "-- end of $log"
    tail -c 20000 "$log"
  fi
done
