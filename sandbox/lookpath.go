package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// errNotExecutable marks a command that exists but is not an executable file.
var errNotExecutable = errors.New("not executable")

// LookPath finds name as PATH lookup would inside root ("" or "/" for the
// process's own root), following symlinks within root, and returns its
// path as seen from inside root. A name that exists but is not an
// executable file gives an error that wraps errNotExecutable.
func LookPath(root, name, pathEnv string) (string, error) {
	root = strings.TrimSuffix(root, "/")
	var cands []string
	if strings.Contains(name, "/") {
		cands = []string{path.Clean("/" + name)}
	} else {
		for _, dir := range filepath.SplitList(pathEnv) {
			if dir == "" {
				dir = "."
			}
			cands = append(cands, path.Join("/", dir, name))
		}
	}
	for _, c := range cands {
		host, err := ResolveIn(root, c)
		if err != nil {
			continue
		}
		fi, err := os.Stat(host)
		if err != nil {
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			if strings.Contains(name, "/") {
				return "", fmt.Errorf("COMMAND %s in ROOTFS is %w", name, errNotExecutable)
			}
			continue
		}
		return c, nil
	}
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("COMMAND %s not found in ROOTFS", name)
	}
	return "", fmt.Errorf("COMMAND %s not found in ROOTFS (searched PATH=%s)", name, pathEnv)
}

// ResolveIn resolves p inside root as a chrooted process would (absolute
// symlinks and ".." stay within root) and returns the host path.
func ResolveIn(root, p string) (string, error) {
	root = strings.TrimSuffix(root, "/")
	cur := "" // resolved so far, "" for root
	rest := strings.Split(p, "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur != "" {
				cur = path.Dir(cur)
				if cur == "/" {
					cur = ""
				}
			}
			continue
		}
		next := cur + "/" + c
		fi, err := os.Lstat(root + next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", unix.ELOOP
		}
		t, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(t, "/") {
			cur = ""
		}
		rest = append(strings.Split(t, "/"), rest...)
	}
	if root+cur == "" {
		return "/", nil
	}
	return root + cur, nil
}
