package main

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// raiseNoFile lifts RLIMIT_NOFILE as far as this process may: the gofer
// holds one host fd per file the daemon has looked up, so a walk of a large
// tree needs far more than the usual 1024 or 20000. As root the hard limit
// itself is raised to the kernel's nr_open.
func raiseNoFile() {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := lim.Max
	if os.Geteuid() == 0 {
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > want {
				want = n
			}
		}
	}
	if lim.Cur >= want {
		return
	}
	next := unix.Rlimit{Cur: want, Max: want}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &next) != nil {
		next = unix.Rlimit{Cur: lim.Max, Max: lim.Max}
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &next)
	}
}
