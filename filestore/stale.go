package filestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RemoveStale removes the self filestores in lowerRoot whose owner process
// is gone (the OwnerXattr pid no longer runs, or runs a process started at a
// different time) and returns their paths. Files without a readable owner
// tag are left alone. Pids are those of the caller's pid namespace. The
// root's atime and mtime are set back after each removal (see Open).
func RemoveStale(lowerRoot string) ([]string, error) {
	// The times before the listing, which moves the atime.
	var root unix.Stat_t
	haveTimes := unix.Stat(lowerRoot, &root) == nil
	ents, err := os.ReadDir(lowerRoot)
	if err != nil {
		return nil, fmt.Errorf("filestore: list %s: %w", lowerRoot, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !IsSelfName(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(lowerRoot, e.Name())
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(path, OwnerXattr, buf)
		if err != nil {
			continue
		}
		if ownerAlive(string(buf[:n])) {
			continue
		}
		if err := unix.Unlink(path); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("filestore: remove stale %s: %w", path, err))
			}
			continue
		}
		if haveTimes {
			// The file's owner had put the root's times back after
			// creating it; do the same after removing it.
			setTimes(lowerRoot, [2]unix.Timespec{root.Atim, root.Mtim})
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}

// ownerTag returns the OwnerXattr value for pid.
func ownerTag(pid int) (string, error) {
	start, _, err := startTime(pid)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(pid) + " " + start, nil
}

// ownerAlive reports whether the process named by an OwnerXattr value still
// runs. A malformed tag counts as alive, so nothing is removed on a guess.
func ownerAlive(tag string) bool {
	pidStr, start, ok := strings.Cut(tag, " ")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 || start == "" {
		return true
	}
	now, state, err := startTime(pid)
	if err != nil {
		return false // no such process
	}
	// A killed owner whose parent never reaps it stays a zombie (common
	// without an init in containers): it is dead all the same.
	return now == start && state != "Z" && state != "X"
}

// startTime returns field 22 of /proc/<pid>/stat (start time in ticks) and
// field 3 (the state letter).
func startTime(pid int) (start, state string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", "", err
	}
	// The command name (field 2) may hold spaces; fields resume after ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", "", fmt.Errorf("filestore: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return "", "", fmt.Errorf("filestore: malformed /proc/%d/stat", pid)
	}
	return f[19], f[0], nil
}
