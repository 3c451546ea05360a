package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// IDRange is a range of host ids: Start, Start+1, … Start+Count-1.
type IDRange struct {
	Start, Count uint32
}

// SubordinateIDs returns the caller's subordinate uids and gids, as
// /etc/subuid and /etc/subgid grant them (the first line naming the
// caller's user name or uid), if both exist and newuidmap and newgidmap
// (package uidmap) are there to map them. Without them a user namespace
// of an unprivileged caller maps one uid and one gid: the caller's.
func SubordinateIDs() (uids, gids IDRange, ok bool) {
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return uids, gids, false
		}
	}
	names := []string{strconv.Itoa(os.Getuid())}
	if u, err := user.LookupId(names[0]); err == nil {
		names = append(names, u.Username)
	}
	uids, okU := subordinate("/etc/subuid", names)
	gnames := []string{strconv.Itoa(os.Getgid())}
	gnames = append(gnames, names[1:]...) // subgid is keyed by user too
	gids, okG := subordinate("/etc/subgid", gnames)
	return uids, gids, okU && okG
}

func subordinate(file string, names []string) (IDRange, bool) {
	f, err := os.Open(file)
	if err != nil {
		return IDRange{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 {
			continue
		}
		for _, n := range names {
			if fields[0] != n {
				continue
			}
			start, err1 := strconv.ParseUint(fields[1], 10, 32)
			count, err2 := strconv.ParseUint(fields[2], 10, 32)
			if err1 == nil && err2 == nil && count > 0 {
				return IDRange{Start: uint32(start), Count: uint32(count)}, true
			}
		}
	}
	return IDRange{}, false
}

// MapIDs writes the id maps of pid's new user namespace with newuidmap and
// newgidmap: 0 is the caller, 1 to Count are the subordinate ids.
func MapIDs(pid int, uids, gids IDRange) error {
	for _, m := range []struct {
		tool string
		self int
		r    IDRange
	}{{"newuidmap", os.Getuid(), uids}, {"newgidmap", os.Getgid(), gids}} {
		args := []string{strconv.Itoa(pid), "0", strconv.Itoa(m.self), "1", "1", fmt.Sprint(m.r.Start), fmt.Sprint(m.r.Count)}
		out, err := exec.Command(m.tool, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", m.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
