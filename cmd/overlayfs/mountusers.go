package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxUsers bounds how many of a busy mount's users an error lists.
const maxUsers = 5

// mountUsers lists the processes that use something below mnt, as fuser -m
// would find them: an open file, the working or root directory, a mapped
// file. Each entry reads "pid N (comm): what path". It finds the users it
// may look at (all of them as root) and at most maxUsers of them, plus a
// count of the rest. It only reads /proc: nothing below mnt is touched.
func mountUsers(mnt string) []string {
	under := func(p string) bool {
		p = strings.TrimSuffix(p, " (deleted)")
		return p == mnt || strings.HasPrefix(p, mnt+"/")
	}
	self := os.Getpid()
	var users []string
	more := 0
	add := func(pid int, what, path string) {
		if len(users) >= maxUsers {
			more++
			return
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		users = append(users, fmt.Sprintf("pid %d (%s): %s %s", pid, strings.TrimSpace(string(comm)), what, path))
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		for _, link := range []string{"cwd", "root"} {
			if p, err := os.Readlink(filepath.Join(dir, link)); err == nil && under(p) {
				add(pid, "has its "+link+" in", p)
			}
		}
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			if p, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && under(p) {
				add(pid, "has open (fd "+fd.Name()+")", p)
			}
		}
		if p := mappedUnder(filepath.Join(dir, "maps"), under); p != "" {
			add(pid, "has mapped", p)
		}
	}
	if more > 0 {
		users = append(users, fmt.Sprintf("and %d more", more))
	}
	return users
}

// mappedUnder returns the first file in a /proc/PID/maps that under
// accepts, or "".
func mappedUnder(maps string, under func(string) bool) string {
	f, err := os.Open(maps)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) == 6 {
			if p := strings.TrimSpace(fields[5]); strings.HasPrefix(p, "/") && under(p) {
				return p
			}
		}
	}
	return ""
}
