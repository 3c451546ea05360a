// Package treehash takes digests of directory trees, to check that a tree
// an overlay must never modify (its lower) is unchanged.
package treehash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Snapshot maps every path below a root ("." for the root itself) to a
// digest of everything a change could touch: type, mode, owner, size,
// mtime, device number, link count, contents (SHA-256), symlink target and
// xattrs. Access times are left out: reading changes them.
type Snapshot map[string]string

// Take walks root and digests every entry. It never follows symlinks.
func Take(root string) (Snapshot, error) {
	snap := Snapshot{}
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		d, err := digest(p)
		if err != nil {
			return err
		}
		snap[rel] = d
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("digest %s: %w", root, err)
	}
	return snap, nil
}

// digest describes one entry.
func digest(p string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%o uid=%d gid=%d size=%d mtime=%d.%d rdev=%d nlink=%d",
		st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Rdev, st.Nlink)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", p, err)
		}
		fmt.Fprintf(&b, " sha=%s", hex.EncodeToString(h.Sum(nil)))
	case unix.S_IFLNK:
		tgt, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, " target=%q", tgt)
	}
	fmt.Fprintf(&b, " xattrs=%s", xattrs(p))
	return b.String(), nil
}

// xattrs lists p's extended attributes, sorted, with hex values.
func xattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return "{}"
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var b bytes.Buffer
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s=%x;", name, v[:m])
	}
	return b.String()
}

// Diff lists, sorted, every path whose digest differs between s and other:
// "removed P", "added P", or "changed P: OLD -> NEW".
func (s Snapshot) Diff(other Snapshot) []string { return s.diff(other, true) }

// DiffPaths is Diff without the digests: "changed P".
func (s Snapshot) DiffPaths(other Snapshot) []string { return s.diff(other, false) }

func (s Snapshot) diff(other Snapshot, detail bool) []string {
	var out []string
	for k, v := range s {
		w, ok := other[k]
		switch {
		case !ok:
			out = append(out, "removed "+k)
		case v != w && detail:
			out = append(out, fmt.Sprintf("changed %s: %s -> %s", k, v, w))
		case v != w:
			out = append(out, "changed "+k)
		}
	}
	for k := range other {
		if _, ok := s[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	sort.Strings(out)
	return out
}
